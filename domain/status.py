"""Where a review stands: stages, outcomes, the audit trail and the status query."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from domain.agencies import Agency
from domain.attestation import UnverifiedResult
from domain.messages import Determination, ReviewFinding, StandardsVerdict


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


class Transition(BaseModel):
    """One line of the audit trail: every stage change has a time, an actor and a reason."""

    stage: Stage
    at: datetime
    actor: str
    reason: str


class PartnerRelease(BaseModel):
    partner_id: str
    granted: bool
    reason: str
    grant_id: str | None = None


class RunRecord(BaseModel):
    """An earlier run of the same review id (a refile follows a withdrawal or a run that ended
    without an outcome), as visibility knows it: read by the API or CLI, never by the workflow."""

    run_id: str
    status: str  # the Temporal status: COMPLETED, TERMINATED, FAILED, CANCELED, TIMED_OUT, RUNNING
    stage: str | None = None  # the last stage it published (not where it stands when it was cut short)
    outcome: str | None = None
    started_at: datetime | None = None
    closed_at: datetime | None = None


class ReviewStatus(BaseModel):
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
    determination: Determination | None = None
    determination_by_default: bool = False
    # Whether the NSA's worker confirmed its briefing (None before it is briefed): a default on
    # a briefing that never arrived is not the NSA's silence.
    nsa_briefed: bool | None = None
    window_deadline: datetime | None = None
    participating_agencies: list[Agency] = Field(default_factory=list)
    pending_agencies: list[Agency] = Field(default_factory=list)
    standards: list[StandardsVerdict] = Field(default_factory=list)
    findings: list[ReviewFinding] = Field(default_factory=list)
    partners_granted: list[str] = Field(default_factory=list)
    partners_skipped: list[PartnerRelease] = Field(default_factory=list)
    transitions: list[Transition] = Field(default_factory=list)
    withdrawal_reason: str | None = None
    # Whether the review office admitted the review (the lab's signed filing, the office's policy):
    # None until it has answered; False: not a genuine review, it does nothing (`admission` says why).
    genuine: bool | None = None
    admission: str | None = None
    # Cancel requests received (and ignored: only the lab withdraws); whether the history was reset.
    cancel_requests: list[datetime] = Field(default_factory=list)
    history_reset: bool = False
    # The run the status was read from (set by the API, not the workflow): `audit ID --run-id RUN`.
    run_id: str | None = None
    # The earlier runs under the same id and how each ended, newest first (set by the API, not the workflow).
    earlier_runs: list[RunRecord] = Field(default_factory=list)
    # Vulnerability findings forwarded to Treasury's clearinghouse: finding message id -> case id.
    clearinghouse_cases: dict[str, str] = Field(default_factory=dict)
    # Activity results the review did not believe (not signed by the party that should have produced
    # them: a forgery completed by id, a rogue poller, a payload the codec refused).
    unverified_results: list[UnverifiedResult] = Field(default_factory=list)
    # Vulnerability findings not yet delivered (finding message id -> why): the review stays open,
    # after its release if need be, until each is delivered. And those the clearinghouse refused.
    clearinghouse_pending: dict[str, str] = Field(default_factory=dict)
    clearinghouse_refused: dict[str, str] = Field(default_factory=dict)
