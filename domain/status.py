"""Where a review stands: its one state model, the receipts of the messages it applies, and the
allow-list of what its lab may see.

`ReviewState` is written by the review workflow alone (workflows/review.py), every stage change
on its `run()` path with the actor and the reason. The same model is the `status` query's answer,
the workflow's result, what the Web UI's current details are made from, and the record that
`audit` reads back and re-verifies against the history (audit/review.py). What is derived from it
(who is pending, which partners were granted, the clearinghouse cases) is computed here, once.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from domain.agencies import STANDARDS_BODIES, Agency
from domain.attestation import UnverifiedResult
from domain.messages import Conclusion, Determination, ReviewFinding, StandardsVerdict, Withdrawal
from domain.persisted import PERSISTED, PERSISTED_STATE


class Stage(StrEnum):
    DISCLOSED = "DISCLOSED"
    STANDARDS_CHECK = "STANDARDS_CHECK"
    AWAITING_DETERMINATION = "AWAITING_DETERMINATION"
    UNDER_REVIEW = "UNDER_REVIEW"
    RELEASING = "RELEASING"
    RELEASED = "RELEASED"
    WITHDRAWN = "WITHDRAWN"


class Outcome(StrEnum):
    NOT_COVERED = "NOT_COVERED"
    CONCLUDED_EARLY = "CONCLUDED_EARLY"
    WINDOW_ELAPSED = "WINDOW_ELAPSED"
    WITHDRAWN = "WITHDRAWN"


# The actor of a stage change that a timer caused (a policy clock ran out).
CLOCK = "clock"


class Transition(BaseModel):
    """One line of the record: every stage change has a time, an actor and a reason, and what
    caused it, so that the audit can find the cause in the history."""

    model_config = PERSISTED

    stage: Stage
    at: datetime
    actor: str  # the verified sender of the message that caused it, `clock`, `policy` or `review`
    reason: str
    # The applied message that caused it (its message id, which is its update id in the history).
    message_id: str | None = None
    # The policy clock whose timer ran out (determination_deadline, review_window, max_hold).
    clock: str | None = None


class AppliedMessage(BaseModel):
    """A message the review applied (its signature verified against the keyring it held then)."""

    model_config = PERSISTED

    update: str
    message_id: str
    sender: str
    at: datetime
    stage: Stage  # the stage it was applied at


class PartnerRelease(BaseModel):
    model_config = PERSISTED

    partner_id: str
    granted: bool
    reason: str
    grant_id: str | None = None


class Forward(BaseModel):
    """A vulnerability finding's way to Treasury's clearinghouse."""

    model_config = PERSISTED_STATE

    finding_id: str
    agency: str
    status: Literal["forwarding", "held", "delivered", "refused"] = "forwarding"
    case_id: str | None = None
    reason: str = "on its way to the clearinghouse"


class KeyRefresh(BaseModel):
    """A reload of the parties' public keys asked for while the review ran (`refresh_keys`)."""

    model_config = PERSISTED

    at: datetime
    asked_for: str  # the party the asker named (anyone may ask: nothing is believed but the office's keys)
    activity_id: str
    changed: bool  # whether the reloaded keyring differs from the one held before
    reason: str = ""  # why the keys held were kept (no verifiable answer from the review office)


class RunRecord(BaseModel):
    """An earlier run of the same review id (a refile follows a withdrawal or a run that ended
    without an outcome), as visibility knows it: read by the API or CLI, never by the workflow."""

    model_config = PERSISTED

    run_id: str
    status: str  # the Temporal status: COMPLETED, TERMINATED, FAILED, CANCELED, TIMED_OUT, RUNNING
    stage: str | None = None  # the last stage it published (not where it stands when it was cut short)
    outcome: str | None = None
    started_at: datetime | None = None
    closed_at: datetime | None = None


class ReviewState(BaseModel):
    model_config = PERSISTED_STATE

    review_id: str
    lab: str
    model_name: str
    model_version: str
    stage: Stage = Stage.DISCLOSED
    outcome: Outcome | None = None
    policy_version: str = "(not admitted)"
    disclosed_at: datetime
    # Whether the review office admitted the review (the lab's signed filing, the office's policy):
    # None until it has answered; False: not a genuine review, it does nothing (`admission` says why).
    genuine: bool | None = None
    admission: str | None = None
    determination_deadline: datetime | None = None
    # The NSA's determination, or the policy's default (sender `policy`) when it was silent.
    determination: Determination | None = None
    determination_by_default: bool = False
    # Whether the NSA's worker confirmed its briefing (None before it is briefed): a default on
    # a briefing that never arrived is not the NSA's silence.
    nsa_briefed: bool | None = None
    window_deadline: datetime | None = None
    participating_agencies: list[Agency] = Field(default_factory=list)
    standards: list[StandardsVerdict] = Field(default_factory=list)
    findings: list[ReviewFinding] = Field(default_factory=list)
    conclusions: list[Conclusion] = Field(default_factory=list)
    withdrawal: Withdrawal | None = None
    releases: list[PartnerRelease] = Field(default_factory=list)
    # Every stage change (time, actor, reason, cause) and every message applied, in order.
    transitions: list[Transition] = Field(default_factory=list)
    applied: list[AppliedMessage] = Field(default_factory=list)
    # Vulnerability findings on their way to (or at) Treasury's clearinghouse.
    forwards: list[Forward] = Field(default_factory=list)
    key_refreshes: list[KeyRefresh] = Field(default_factory=list)
    # Activity results the review did not believe (not signed by the party that should have produced
    # them: a forgery completed by id, a rogue poller, a payload the codec refused).
    unverified_results: list[UnverifiedResult] = Field(default_factory=list)
    # Cancel requests received (and ignored: only the lab withdraws); whether the history was reset.
    cancel_requests: list[datetime] = Field(default_factory=list)
    history_reset: bool = False
    # The clocks a lab can plan on (domain/clocks.py), as of the last stage change: the policy's
    # bound on the whole hold, the earliest and latest release under the policy, and the lab's date.
    hold_deadline: datetime | None = None
    earliest_release: datetime | None = None
    latest_release: datetime | None = None
    intended_release_date: date | None = None
    past_intended_release: str | None = Field(default=None, description="no, possibly or yes")
    # Once the hold is over (release began, or the lab withdrew): when, which clock ran out (a
    # policy field: determination_deadline, review_window, max_hold; none when someone decided),
    # and the delay imposed on the lab's date in whole seconds (0 when it let go before it).
    hold_ended_at: datetime | None = None
    clock_ran_out: str | None = None
    delay_seconds: int | None = None
    # Set by the API, never by the workflow: the run this was read from (`audit ID --run-id RUN`),
    # and the earlier runs under the same id and how each ended, newest first.
    run_id: str | None = None
    earlier_runs: list[RunRecord] = Field(default_factory=list)

    # -- what follows from the state (computed here once; readers never recompute it)

    @computed_field
    @property
    def covered(self) -> bool | None:
        return self.determination.covered if self.determination else None

    @computed_field
    @property
    def pending_agencies(self) -> list[Agency]:
        """Whose answer the review waits for at its stage."""
        if self.stage == Stage.STANDARDS_CHECK:
            answered = {v.agency for v in self.standards}
            return [a for a in STANDARDS_BODIES if a not in answered]
        if self.stage == Stage.AWAITING_DETERMINATION:
            return [Agency.NSA]
        if self.stage == Stage.UNDER_REVIEW:
            return self.pending_reviewers
        return []

    @property
    def pending_reviewers(self) -> list[Agency]:
        concluded = {c.sender for c in self.conclusions}
        return [a for a in self.participating_agencies if a.value not in concluded]

    @computed_field
    @property
    def partners_granted(self) -> list[str]:
        return [r.partner_id for r in self.releases if r.granted]

    @computed_field
    @property
    def partners_skipped(self) -> list[PartnerRelease]:
        return [r for r in self.releases if not r.granted]

    @computed_field
    @property
    def withdrawal_reason(self) -> str | None:
        return self.withdrawal.reason if self.withdrawal else None

    @computed_field
    @property
    def clearinghouse_cases(self) -> dict[str, str]:
        """Vulnerability findings delivered to the clearinghouse: finding message id -> case id."""
        return {f.finding_id: f.case_id for f in self.forwards if f.status == "delivered" and f.case_id}

    @computed_field
    @property
    def clearinghouse_pending(self) -> dict[str, str]:
        """Findings not yet delivered (-> why): the review stays open, after its release if need be."""
        return {f.finding_id: f.reason for f in self.forwards if f.status in ("forwarding", "held")}

    @computed_field
    @property
    def clearinghouse_refused(self) -> dict[str, str]:
        return {f.finding_id: f.reason for f in self.forwards if f.status == "refused"}

    @computed_field
    @property
    def cases(self) -> list[str]:
        """The clearinghouse cases this review's findings opened or joined (each case links back)."""
        return sorted({f.case_id for f in self.forwards if f.case_id})


# The name the API, the CLI and the tests have always used for the status query's answer.
ReviewStatus = ReviewState


class Receipt(BaseModel):
    """What an update returns: the message as applied and where the review stands after it,
    including the stage change it caused (the full state is the `status` query's, not this)."""

    model_config = PERSISTED

    review_id: str
    update: str
    message_id: str
    sender: str
    applied_at: datetime
    stage_before: Stage
    stage: Stage  # after the message (and after the stage change it caused, if any)
    outcome: Outcome | None = None
    pending_agencies: list[Agency] = Field(default_factory=list)
    # What follows that this receipt cannot show yet, said plainly (a finding's clearinghouse case).
    follows: str | None = None

    @property
    def moved(self) -> bool:
        return self.stage != self.stage_before


class LabView(BaseModel):
    """What a lab may know of its own review: where it stands and the clocks it can plan on,
    never an agency's verdict, finding or rationale."""

    model_config = ConfigDict(extra="ignore")

    review_id: str
    lab: str
    model_name: str
    model_version: str
    stage: Stage
    outcome: Outcome | None = None
    covered: bool | None = None
    policy_version: str
    disclosed_at: datetime
    determination_deadline: datetime | None = None
    window_deadline: datetime | None = None
    hold_deadline: datetime | None = None
    participating_agencies: list[Agency] = Field(default_factory=list)
    earliest_release: datetime | None = None
    latest_release: datetime | None = None
    intended_release_date: date | None = None
    past_intended_release: str | None = None
    clock_ran_out: str | None = None
    delay_seconds: int | None = None
    partners_granted: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, state: ReviewState) -> LabView:
        # Field by field from the state, by this class's own names: nothing new in the state
        # reaches a lab unless it is named here.
        return cls.model_validate({name: getattr(state, name) for name in cls.model_fields})
