"""How a `ModelReview` history reads as an audit trail.

Transitions come from the review's `ReviewStage` upserts (timed by the workflow clock that
made them); who caused each one and why comes from the event that did (the NSA's update, a
timer firing, the last conclusion, the lab's withdrawal). Verdicts, the briefing and grants
come from activity results; the determination, findings, conclusions and the withdrawal
from accepted updates, with the sender named in the message and the client it came from.
When the review has finished, its own transition log (the workflow's result) is checked
against the history.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter

from audit.history import Event
from audit.trail import AuditCheck, AuditEntry, AuditTrail, Interpreter, register
from domain.agencies import STANDARDS_BODIES, Agency
from domain.attestation import TrustAnchors, Unverifiable, verify
from domain.clearinghouse import FORWARD_VULNERABILITY
from domain.policy import STATUTORY_WINDOW_CAP, describe
from domain.review import (
    ADMIT_DISCLOSURE,
    BRIEF_NSA,
    CHECK_STANDARD,
    CONCLUDE_REVIEW,
    GRANT_ACCESS,
    LOAD_REVIEW_KEYS,
    RECORD_DETERMINATION,
    SUBMIT_FINDING,
    VET_PARTNER,
    WITHDRAW,
    WORKFLOW_TYPE,
)
from domain.search_attributes import DETERMINED_BY_DEFAULT
from domain.status import Outcome, Stage
from domain.vulnerability import REVIEW_OFFICE, TREASURY, lab_party

# A release (or a determination taking effect) happens in the workflow task after its cause.
SAME_MOMENT = timedelta(seconds=5)
# Event times are kept to the nanosecond, the workflow's clock to the microsecond.
CLOCK_ROUNDING = timedelta(seconds=1)
_DURATION = TypeAdapter(timedelta)
_DATETIME = TypeAdapter(datetime)
_AGENCY_QUEUES = {a.task_queue: a.value for a in Agency}
CLASSIFIED_NOTE = (
    "This trail reproduces the history's content, including classified parts (standards "
    "rationales, the NSA's rationale, findings): handle it as the history itself. The public "
    "figures are in `frontier-review report`."
)


class TransitionRecord(BaseModel):
    stage: Stage
    at: datetime
    actor: str
    reason: str
    event_id: int


class VerdictRecord(BaseModel):
    agency: str
    verdict: str
    rationale: str
    standard_version: str = ""
    at: datetime
    event_id: int


class MessageRecord(BaseModel):
    """An applied update: who sent it (the message's sender), from where (client identity), when."""

    update: str
    sender: str
    update_id: str
    sent_from: str
    at: datetime
    event_id: int


class DeterminationRecord(BaseModel):
    covered: bool
    agencies: list[str]
    rationale: str
    by: str  # nsa, or "policy" when the NSA was silent past its deadline
    at: datetime
    by_default: bool
    message: MessageRecord | None = None


class FindingRecord(BaseModel):
    agency: str
    kind: str
    severity: str
    summary: str
    message: MessageRecord


class ForwardRecord(BaseModel):
    """A vulnerability finding's way to Treasury's clearinghouse."""

    finding_id: str
    agency: str
    status: str  # forwarding, undelivered (held past the policy's forward timeout), delivered, refused
    case_id: str | None = None
    reason: str = ""
    at: datetime | None = None


class ConclusionRecord(BaseModel):
    agency: str
    summary: str
    message: MessageRecord


class WithdrawalRecord(BaseModel):
    reason: str
    message: MessageRecord


class PartnerRecord(BaseModel):
    partner_id: str
    name: str
    vetted: bool | None = None
    granted: bool = False
    reason: str = ""
    grant_id: str | None = None
    granted_at: datetime | None = None
    at: datetime | None = None


class UnverifiedRecord(BaseModel):
    """An activity result the review did not believe (not signed by the party that should produce it)."""

    activity_id: str
    party: str
    identity: str  # who completed it, as Temporal recorded it
    reason: str
    at: datetime
    event_id: int


class ReviewRecord(BaseModel):
    review_id: str
    lab: str
    model_name: str
    model_version: str
    checkpoint_sha256: str
    policy_version: str
    disclosed_at: datetime
    stage: Stage | None = None
    outcome: Outcome | None = None
    covered: bool | None = None
    determination_deadline: datetime | None = None
    window_deadline: datetime | None = None
    participating_agencies: list[str] = Field(default_factory=list)
    determined_by: str | None = None  # the DeterminedBy search attribute: nsa or policy-default
    transitions: list[TransitionRecord] = Field(default_factory=list)
    verdicts: list[VerdictRecord] = Field(default_factory=list)
    nsa_briefed_at: datetime | None = None
    determination: DeterminationRecord | None = None
    findings: list[FindingRecord] = Field(default_factory=list)
    forwards: list[ForwardRecord] = Field(default_factory=list)
    conclusions: list[ConclusionRecord] = Field(default_factory=list)
    withdrawal: WithdrawalRecord | None = None
    partners: list[PartnerRecord] = Field(default_factory=list)
    unverified: list[UnverifiedRecord] = Field(default_factory=list)
    closed_at: datetime | None = None
    cases: list[str] = Field(default_factory=list)  # the clearinghouse cases its findings opened or joined


@register
class ModelReviewInterpreter(Interpreter):
    workflow_type = WORKFLOW_TYPE
    notes = (*Interpreter.notes, CLASSIFIED_NOTE)

    def prepare(self, history) -> None:
        started = history.events[0]
        review = started.values[0] if started.values and isinstance(started.values[0], dict) else {}
        disclosure = review.get("disclosure", {})
        # The policy the review ran under is the review office's (the admission's), read below; the
        # start input's is never used (reviews started before admission carried theirs there).
        self.policy: dict[str, Any] = review.get("policy") or {}
        for e in history.events:
            if e.type == "ACTIVITY_TASK_COMPLETED" and e.name == ADMIT_DISCLOSURE and e.values:
                admitted = e.values[0].get("result") if isinstance(e.values[0], dict) else None
                if isinstance(admitted, dict) and isinstance(admitted.get("policy"), dict):
                    self.policy = admitted["policy"]
        self.rec = ReviewRecord(
            review_id=review.get("review_id", history.workflow_id),
            lab=disclosure.get("lab", "?"),
            model_name=disclosure.get("model_name", "?"),
            model_version=disclosure.get("model_version", "?"),
            checkpoint_sha256=disclosure.get("checkpoint_sha256", ""),
            policy_version=self.policy.get("version", "?"),
            disclosed_at=started.at,
            partners=[
                PartnerRecord(partner_id=p.get("partner_id", "?"), name=p.get("name", ""))
                for p in disclosure.get("partners", [])
            ],
        )
        self.result: dict[str, Any] | None = None
        self.stage_texts: dict[int, list[TransitionRecord]] = {}
        self.message_texts: dict[int, str] = {}
        self.timer_purpose: dict[str, str] = {}
        self.fired: set[str] = set()
        self.anchors = _trust_anchors()
        self.believed: dict[int, dict[str, Any]] = {}  # event id -> the activity result, as believed
        # The runs an activity result may have been signed for: the original, and each run a reset made.
        first = history.events[0].attributes if history.events else None
        self.runs = {getattr(first, "original_execution_run_id", "") or history.run_id, history.run_id}
        for e in history.events:
            if e.type == "WORKFLOW_TASK_FAILED" and e.attributes.new_run_id:
                self.runs.add(e.attributes.new_run_id)
        self._forward_by_activity: dict[str, str] = {}  # forward activity id -> finding id
        self._stage: Stage | None = None
        self._last_conclusion: MessageRecord | None = None
        for e in history.events:
            reader = self._readers.get(e.type)
            if reader:
                reader(self, e)
        stage = self._stage
        self.rec.stage = stage
        self._silent_bodies()
        if self.rec.outcome is None:
            self.rec.outcome = self._inferred_outcome()
        if self.rec.determination is None and "determination" in self.fired:
            self._default_determination()
        closed = history.closed
        self.rec.closed_at = closed.at if closed else None
        self.rec.cases = sorted({f.case_id for f in self.rec.forwards if f.case_id})

    def _silent_bodies(self) -> None:
        """A body whose every answer was unverifiable was recorded by the review as silent."""
        for body in STANDARDS_BODIES:
            tried = [u for u in self.rec.unverified if u.party == body.value]
            if tried and not any(v.agency == body.value for v in self.rec.verdicts):
                self.rec.verdicts.append(
                    VerdictRecord(
                        agency=body.value,
                        verdict="no_response",
                        rationale=f"no verifiable answer: {tried[-1].reason}",
                        at=tried[-1].at,
                        event_id=tried[-1].event_id,
                    )
                )

    # -- one reader per event type, in history order

    def _read_upsert(self, e: Event) -> None:
        attrs = e.search_attributes
        for name, field in (("WindowDeadline", "window_deadline"), ("Covered", "covered"),
                            ("DeterminedBy", "determined_by")):  # fmt: skip
            if name in attrs:
                setattr(self.rec, field, attrs[name])
        if "Outcome" in attrs:
            self.rec.outcome = Outcome(attrs["Outcome"])
        stage = self._stage
        if "ReviewStage" in attrs and attrs["ReviewStage"] != (stage.value if stage else None):
            self._stage = Stage(attrs["ReviewStage"])
            if self._stage != Stage.DISCLOSED and not self.rec.transitions:
                # The start request set DISCLOSED and the review writes no upsert for it:
                # it enters DISCLOSED and STANDARDS_CHECK in the same workflow task.
                self._stage_changed(self._transition(Stage.DISCLOSED, e, self._last_conclusion), e)
            self._stage_changed(self._transition(self._stage, e, self._last_conclusion), e)

    def _read_scheduled(self, e: Event) -> None:
        if e.name == FORWARD_VULNERABILITY:
            self._forward_scheduled(e)
        elif e.name == BRIEF_NSA and e.values and isinstance(e.values[0], dict):
            deadline = e.values[0].get("determination_deadline")
            if deadline:
                self.rec.determination_deadline = _DATETIME.validate_python(deadline)

    def _read_timer(self, e: Event) -> None:
        purpose = {Stage.AWAITING_DETERMINATION: "determination", Stage.UNDER_REVIEW: "window"}.get(self._stage)
        if purpose:
            self.timer_purpose[e.ref] = purpose

    def _read_fired(self, e: Event) -> None:
        self.fired.add(self.timer_purpose.get(e.ref, e.ref))

    def _read_update(self, e: Event) -> None:
        conclusion = self._message(e)
        if conclusion is not None:
            self._last_conclusion = conclusion

    def _read_result(self, e: Event) -> None:
        if e.values and isinstance(e.values[0], dict):
            self.result = e.values[0]

    _readers = {
        "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES": _read_upsert,
        "ACTIVITY_TASK_SCHEDULED": _read_scheduled,
        "ACTIVITY_TASK_COMPLETED": lambda self, e: self._activity_result(e),
        "ACTIVITY_TASK_FAILED": lambda self, e: self._activity_result(e),
        "ACTIVITY_TASK_TIMED_OUT": lambda self, e: self._activity_result(e),
        "TIMER_STARTED": _read_timer,
        "TIMER_FIRED": _read_fired,
        "WORKFLOW_EXECUTION_UPDATE_ACCEPTED": _read_update,
        "WORKFLOW_EXECUTION_COMPLETED": _read_result,
    }

    # -- reading the history

    def _message(self, e: Event) -> MessageRecord | None:
        body = e.values[0] if e.values and isinstance(e.values[0], dict) else {}
        message = MessageRecord(
            update=e.name,
            sender=str(body.get("sender", "?")),
            update_id=e.ref,
            sent_from=e.identity,
            at=e.at,
            event_id=e.id,
        )
        if e.name == RECORD_DETERMINATION:
            agencies = [str(a) for a in body.get("agencies", [])]
            self.rec.determination = DeterminationRecord(
                covered=bool(body.get("covered")),
                agencies=agencies,
                rationale=str(body.get("rationale", "")),
                by=message.sender,
                at=e.at,
                by_default=False,
                message=message,
            )
            self.rec.participating_agencies = agencies if body.get("covered") else []
            verdict = "covered" if body.get("covered") else "not covered"
            with_whom = f", with {', '.join(agencies)}" if agencies else ""
            self.message_texts[e.id] = f"determination: {verdict}{with_whom}; rationale: {body.get('rationale', '')}"
        elif e.name == SUBMIT_FINDING:
            self.rec.findings.append(
                FindingRecord(
                    agency=message.sender,
                    kind=str(body.get("kind", "")),
                    severity=str(body.get("severity", "")),
                    summary=str(body.get("summary", "")),
                    message=message,
                )
            )
            self.message_texts[e.id] = f"finding ({body.get('kind')}, {body.get('severity')}): {body.get('summary')}"
        elif e.name == CONCLUDE_REVIEW:
            self.rec.conclusions.append(
                ConclusionRecord(agency=message.sender, summary=str(body.get("summary", "")), message=message)
            )
            self.message_texts[e.id] = "concludes its review" + (f": {body['summary']}" if body.get("summary") else "")
            return message
        elif e.name == WITHDRAW:
            self.rec.withdrawal = WithdrawalRecord(reason=str(body.get("reason", "")), message=message)
            self.message_texts[e.id] = f"the lab withdraws: {body.get('reason', '')}"
        return None

    def _believed(self, e: Event, scheduled: Event | None, party: str) -> dict[str, Any] | None:
        """An activity's result as the review believed it: signed by `party` (verified here against
        this installation's trust anchors when it has them), or None, recorded as unverified."""
        raw = e.values[0] if e.values else None
        activity_id = scheduled.ref if scheduled else ""
        if self.anchors is None:  # a reader without the anchors: take the signed envelope's content
            value = raw.get("result") if isinstance(raw, dict) and "signature" in raw else raw
            self.believed[e.id] = value if isinstance(value, dict) else {}
            return self.believed[e.id]
        problem = ""
        for run_id in self.runs:
            try:
                value = verify(
                    raw, party=party, workflow_id=self.history.workflow_id, run_id=run_id, activity_id=activity_id,
                    anchors=self.anchors,
                )  # fmt: skip
                self.believed[e.id] = value if isinstance(value, dict) else {"value": value}
                return self.believed[e.id]
            except Unverifiable as err:
                problem = str(err)
        self.rec.unverified.append(
            UnverifiedRecord(
                activity_id=activity_id, party=party, identity=e.identity, reason=problem, at=e.at, event_id=e.id
            )
        )
        return None

    def _activity_result(self, e: Event) -> None:
        scheduled = self.history.event(e.attributes.scheduled_event_id)
        party = {
            CHECK_STANDARD: _AGENCY_QUEUES.get(scheduled.attributes.task_queue.name, "") if scheduled else "",
            BRIEF_NSA: Agency.NSA.value,
            VET_PARTNER: REVIEW_OFFICE,
            GRANT_ACCESS: REVIEW_OFFICE,
            LOAD_REVIEW_KEYS: REVIEW_OFFICE,
            FORWARD_VULNERABILITY: TREASURY,
        }.get(e.name)
        value: dict[str, Any] = {}
        if e.type == "ACTIVITY_TASK_COMPLETED" and party is not None:
            believed = self._believed(e, scheduled, party)
            if believed is None:
                return
            value = believed
        if e.name == CHECK_STANDARD:
            queue = scheduled.attributes.task_queue.name if scheduled else ""
            agency = _AGENCY_QUEUES.get(queue, queue)
            if e.type == "ACTIVITY_TASK_COMPLETED":
                self.rec.verdicts.append(
                    VerdictRecord(
                        agency=str(value.get("agency", agency)),
                        verdict=str(value.get("verdict", "?")),
                        rationale=str(value.get("rationale", "")),
                        standard_version=str(value.get("standard_version", "")),
                        at=e.at,
                        event_id=e.id,
                    )
                )
            else:
                # Silence is recorded as "no response", never as a block (what the workflow did too).
                self.rec.verdicts.append(
                    VerdictRecord(
                        agency=agency, verdict="no_response", rationale=e.failure or "", at=e.at, event_id=e.id
                    )
                )
        elif e.name == BRIEF_NSA and e.type == "ACTIVITY_TASK_COMPLETED":
            self.rec.nsa_briefed_at = e.at
        elif e.name == FORWARD_VULNERABILITY:
            self._forward_result(e, value)
        elif e.name == VET_PARTNER and e.type == "ACTIVITY_TASK_COMPLETED":
            partner = self._partner(str(value.get("partner_id", "?")))
            partner.vetted = bool(value.get("approved"))
            partner.reason = str(value.get("reason", ""))
            partner.at = e.at
        elif e.name == GRANT_ACCESS and e.type == "ACTIVITY_TASK_COMPLETED":
            partner = self._partner(str(value.get("partner_id", "?")))
            partner.granted = True
            partner.grant_id = value.get("grant_id")
            partner.granted_at = _DATETIME.validate_python(value["granted_at"]) if value.get("granted_at") else None
            partner.at = e.at

    def _forward_scheduled(self, e: Event) -> None:
        request = e.values[0] if e.values and isinstance(e.values[0], dict) else {}
        finding = request.get("finding") or {}
        fid = str(finding.get("message_id", e.ref))
        self._forward_by_activity[e.ref] = fid
        existing = next((f for f in self.rec.forwards if f.finding_id == fid), None)
        if existing is None:
            self.rec.forwards.append(
                ForwardRecord(finding_id=fid, agency=str(finding.get("sender", "?")), status="forwarding", at=e.at)
            )

    def _forward_result(self, e: Event, value: dict[str, Any]) -> None:
        fid = self._forward_by_activity.get(e.ref, e.ref)
        forward = next((f for f in self.rec.forwards if f.finding_id == fid), None)
        if forward is None:
            return
        forward.at = e.at
        if e.type == "ACTIVITY_TASK_COMPLETED":
            forward.status, forward.case_id, forward.reason = "delivered", value.get("case_id"), ""
        elif e.type == "ACTIVITY_TASK_TIMED_OUT":
            # The workflow holds it and schedules it again with no deadline (or, before that
            # change, dropped it: the check below fails either way until it is delivered).
            forward.status, forward.reason = "undelivered", e.failure or "timed out"
        else:
            forward.status, forward.reason = "refused", e.failure or ""

    def _partner(self, partner_id: str) -> PartnerRecord:
        for p in self.rec.partners:
            if p.partner_id == partner_id:
                return p
        p = PartnerRecord(partner_id=partner_id, name="")
        self.rec.partners.append(p)
        return p

    def _stage_changed(self, t: TransitionRecord, e: Event) -> None:
        self.rec.transitions.append(t)
        self.stage_texts.setdefault(e.id, []).append(t)

    def _transition(self, stage: Stage, e: Event, last_conclusion: MessageRecord | None) -> TransitionRecord:
        rec = self.rec
        actor, reason = "review", ""
        if stage == Stage.DISCLOSED:
            actor = lab_party(rec.lab)
            reason = f"{rec.lab} disclosed {rec.model_name} {rec.model_version} under policy {rec.policy_version}"
        elif stage == Stage.STANDARDS_CHECK:
            reason = "the five standards bodies judge the disclosure"
        elif stage == Stage.AWAITING_DETERMINATION:
            kinds = ("concern", "insufficient_information", "no_concern", "no_response")
            counts = {v: sum(1 for x in rec.verdicts if x.verdict == v) for v in kinds}
            shown = ", ".join(f"{n} {v.replace('_', ' ')}" for v, n in counts.items() if n)
            deadline = e.workflow_time + self._policy_duration("determination_deadline", timedelta(0))
            reason = f"standards check done ({shown}); the NSA is briefed and decides by {_iso(deadline)}"
        elif stage == Stage.UNDER_REVIEW:
            if rec.determination is None:
                self._default_determination()
            d = rec.determination
            assert d is not None
            actor = d.by
            window = describe(self._policy_duration("review_window", timedelta(0)))
            closes = f", closes {_iso(rec.window_deadline)}" if rec.window_deadline else ""
            by = f" by the policy's default {self._why_default()}" if d.by_default else ""
            reason = f"covered{by}; review window of {window} with {', '.join(d.agencies)}{closes}"
        elif stage == Stage.RELEASING:
            outcome = rec.outcome or self._inferred_outcome(releasing=True)
            if outcome == Outcome.NOT_COVERED:
                d = rec.determination
                by = f"the policy's default {self._why_default()}" if d is None or d.by_default else d.by
                reason = f"NOT_COVERED ({by}): release to trusted partners"
            elif outcome == Outcome.CONCLUDED_EARLY:
                last = f" (last: {last_conclusion.sender})" if last_conclusion else ""
                reason = f"CONCLUDED_EARLY: every participating agency concluded{last}; release to trusted partners"
            elif outcome == Outcome.WINDOW_ELAPSED:
                concluded = {c.agency for c in rec.conclusions}
                pending = [a for a in rec.participating_agencies if a not in concluded]
                still = f"; {', '.join(pending)} had not concluded" if pending else ""
                reason = f"WINDOW_ELAPSED: the review window closed at {_iso(rec.window_deadline)}{still}"
            else:
                reason = "release to trusted partners"
        elif stage == Stage.RELEASED:
            granted = sum(1 for p in rec.partners if p.granted)
            reason = f"access granted to {granted} of {len(rec.partners)} partners"
        elif stage == Stage.WITHDRAWN:
            actor = rec.withdrawal.message.sender if rec.withdrawal and rec.withdrawal.message else lab_party(rec.lab)
            reason = rec.withdrawal.reason if rec.withdrawal else "withdrawn"
        return TransitionRecord(stage=stage, at=e.workflow_time, actor=actor, reason=reason, event_id=e.id)

    def _silence(self) -> str:
        """Silence is the NSA's only if it was briefed: a briefing its worker never took is not."""
        return "the NSA was silent" if self.rec.nsa_briefed_at else "the briefing never reached the NSA"

    def _why_default(self) -> str:
        return "on the NSA's silence" if self.rec.nsa_briefed_at else "(the briefing never reached the NSA)"

    def _default_determination(self) -> None:
        covered = self.policy.get("on_nsa_silence") == "covered"
        agencies = [str(a) for a in self.policy.get("default_participants", [])] if covered else []
        at = self.rec.determination_deadline or self.rec.disclosed_at
        self.rec.determination = DeterminationRecord(
            covered=covered,
            agencies=agencies,
            rationale=f"no determination by the deadline; {self._silence()}; policy {self.rec.policy_version} default "
            "applies",
            by="policy",
            at=at,
            by_default=True,
        )
        self.rec.participating_agencies = agencies

    def _inferred_outcome(self, releasing: bool = False) -> Outcome | None:
        """For histories written before the `Outcome` search attribute existed."""
        stages = {t.stage for t in self.rec.transitions}
        if Stage.WITHDRAWN in stages:
            return Outcome.WITHDRAWN
        if Stage.RELEASING not in stages and not releasing:
            return None
        if self.rec.covered is False:
            return Outcome.NOT_COVERED
        return Outcome.WINDOW_ELAPSED if "window" in self.fired else Outcome.CONCLUDED_EARLY

    def _policy_duration(self, name: str, default: timedelta) -> timedelta:
        value = self.policy.get(name)
        try:
            return _DURATION.validate_python(value) if value is not None else default
        except ValueError:
            return default

    # -- the trail

    def record(self) -> ReviewRecord:
        return self.rec

    def actor_of_queue(self, task_queue: str) -> str:
        return _AGENCY_QUEUES.get(task_queue, task_queue)

    def entries(self, event: Event) -> list[AuditEntry]:
        if event.id in self.stage_texts:
            return [
                self._entry(event, "stage", t.actor, f"→ {t.stage.value}: {t.reason}", at=t.at)
                for t in self.stage_texts[event.id]
            ]
        if event.type == "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES":
            return []  # the stage lines above carry what matters; the rest is in the record
        if event.id in self.message_texts:
            return [
                self._entry(
                    event,
                    "message",
                    self.message_actor(event),
                    self.message_texts[event.id],
                    update=event.name,
                    update_id=event.ref,
                    sent_from=event.identity,
                )
            ]
        if event.type == "WORKFLOW_EXECUTION_STARTED":
            r = self.rec
            return [
                self._entry(
                    event,
                    "workflow",
                    "lab",
                    f"{r.lab} discloses {r.model_name} {r.model_version} (checkpoint {r.checkpoint_sha256[:12]}…, "
                    f"{len(r.partners)} trusted partners); review {r.review_id} starts under policy {r.policy_version}",
                    started_by=event.identity,
                )
            ]
        if event.type == "WORKFLOW_EXECUTION_COMPLETED":
            outcome = f" ({self.rec.outcome.value})" if self.rec.outcome else ""
            stage = self.rec.stage.value if self.rec.stage else "?"
            return [self._entry(event, "workflow", "review", f"review closed at {stage}{outcome}")]
        return super().entries(event)

    def describe_result(self, event: Event, scheduled: Event | None) -> str:
        refused = next((u for u in self.rec.unverified if u.event_id == event.id), None)
        if refused is not None:
            return f"NOT BELIEVED, completed by {refused.identity or 'unknown'}: {refused.reason}"
        value = self.believed.get(event.id, {})
        if event.name == CHECK_STANDARD:
            return f"{value.get('verdict')}: {value.get('rationale')} (standard {value.get('standard_version')})"
        if event.name == BRIEF_NSA:
            return "briefing delivered"
        if event.name == VET_PARTNER:
            return (
                f"{value.get('partner_id')} {'approved' if value.get('approved') else 'refused'}: {value.get('reason')}"
            )
        if event.name == GRANT_ACCESS:
            again = " (already granted: the first grant stands)" if value.get("already_granted") else ""
            return f"{value.get('partner_id')} granted, grant {value.get('grant_id')}{again}"
        return super().describe_result(event, scheduled)

    def checks(self, record: BaseModel | None) -> list[AuditCheck]:
        """Each rule the record is held to, in the order of the lifecycle; a rule that does not apply
        to this review (no window, no release yet) says nothing."""
        rules = (
            self._standards_answered, self._determination_checks, self._participants_only, self._window_kept,
            self._release_not_held, self._findings_delivered, self._grants_once, self._own_log_matches,
        )  # fmt: skip
        return [check for rule in rules for check in rule()]

    def _standards_answered(self) -> list[AuditCheck]:
        rec = self.rec
        if Stage.AWAITING_DETERMINATION not in {t.stage for t in rec.transitions}:
            return []
        answered = {v.agency for v in rec.verdicts}
        missing = [a.value for a in STANDARDS_BODIES if a.value not in answered]
        return [
            AuditCheck(
                name="every standards body answered or was recorded as silent",
                ok=not missing,
                detail=f"{len(rec.verdicts)} verdicts" if not missing else f"missing: {', '.join(missing)}",
            )
        ]

    def _determination_checks(self) -> list[AuditCheck]:
        rec, d = self.rec, self.rec.determination
        if d is None:
            return []
        name = "the determination came from the NSA by its deadline"
        if d.by_default:
            # A default is not the NSA's decision: this check fails for it, and says so; a second
            # check holds the default to its own rule (it applied only once the deadline had passed).
            fired = "determination" in self.fired
            checks = [
                AuditCheck(
                    name=name,
                    ok=False,
                    detail=f"no: {self._silence()}; the policy's default "
                    f"({'covered' if d.covered else 'not covered'}) applied instead",
                ),
                AuditCheck(
                    name="the policy's default applied only when the NSA's deadline had passed",
                    ok=rec.determination_deadline is None or fired,
                    detail=f"deadline {_iso(rec.determination_deadline)}; the deadline timer "
                    + ("fired" if fired else "never fired"),
                ),
            ]
        else:
            in_time = rec.determination_deadline is None or d.at <= rec.determination_deadline
            checks = [
                AuditCheck(
                    name=name,
                    ok=d.by == Agency.NSA.value and in_time,
                    detail=f"by {d.by} at {_iso(d.at)}, deadline {_iso(rec.determination_deadline)}",
                )
            ]
        if rec.determined_by is not None:
            said = "policy" if rec.determined_by == DETERMINED_BY_DEFAULT else rec.determined_by
            checks.append(
                AuditCheck(
                    name="the DeterminedBy search attribute names who decided",
                    ok=said == d.by,
                    detail=f"DeterminedBy={rec.determined_by}; the history shows {d.by}",
                )
            )
        return checks

    def _participants_only(self) -> list[AuditCheck]:
        rec = self.rec
        if not (rec.participating_agencies or rec.findings or rec.conclusions):
            return []
        outsiders = sorted(
            {m.agency for m in [*rec.findings, *rec.conclusions] if m.agency not in rec.participating_agencies}
        )
        return [
            AuditCheck(
                name="findings and conclusions came only from participating agencies",
                ok=not outsiders,
                detail="participants: " + ", ".join(rec.participating_agencies)
                if not outsiders
                else f"from non-participants: {', '.join(outsiders)}",
            )
        ]

    def _window_kept(self) -> list[AuditCheck]:
        rec = self.rec
        under = next((t for t in rec.transitions if t.stage == Stage.UNDER_REVIEW), None)
        if under is None or rec.window_deadline is None:
            return []
        length = rec.window_deadline - under.at
        allowed = min(self._policy_duration("review_window", STATUTORY_WINDOW_CAP), STATUTORY_WINDOW_CAP)
        return [
            AuditCheck(
                name="the review window kept to the policy and the order's 30-day cap",
                ok=length <= allowed + CLOCK_ROUNDING,
                detail=f"window of {describe(length)} (policy {describe(allowed)})",
            )
        ]

    def _release_not_held(self) -> list[AuditCheck]:
        rec, d = self.rec, self.rec.determination
        releasing = next((t for t in rec.transitions if t.stage == Stage.RELEASING), None)
        if releasing is None:
            return []
        if rec.window_deadline is not None:
            limit, what = rec.window_deadline, "the window deadline"
        elif d is not None:
            limit, what = d.at, "the determination (not covered) took effect"
        else:
            return []
        return [
            AuditCheck(
                name="the release was not held past what the policy allows",
                ok=releasing.at - limit <= SAME_MOMENT,
                detail=f"release began {_iso(releasing.at)}; {what} {_iso(limit)}",
            )
        ]

    def _findings_delivered(self) -> list[AuditCheck]:
        rec = self.rec
        vulnerabilities = [f for f in rec.findings if f.kind == "vulnerability"]
        if not vulnerabilities:
            return []
        by_id = {f.finding_id: f for f in rec.forwards}
        missing = [f for f in vulnerabilities if getattr(by_id.get(f.message.update_id), "status", "") != "delivered"]

        def why(f: FindingRecord) -> str:
            forward = by_id.get(f.message.update_id)
            return f"{f.agency}'s {f.message.update_id}: " + (
                f"{forward.status} ({forward.reason})" if forward else "never forwarded"
            )

        return [
            AuditCheck(
                name="every vulnerability finding reached Treasury's clearinghouse",
                ok=not missing,
                detail=f"{len(vulnerabilities)} delivered" if not missing else "; ".join(map(why, missing)),
            )
        ]

    def _grants_once(self) -> list[AuditCheck]:
        partners = self.rec.partners
        granted = [p.partner_id for p in partners if p.granted]
        grants = [e for e in self.history.events if e.type == "ACTIVITY_TASK_COMPLETED" and e.name == GRANT_ACCESS]
        return [
            AuditCheck(
                name="each partner was granted access at most once",
                ok=len(grants) == len(set(granted)),
                detail=f"{len(granted)} grants, {sum(1 for p in partners if p.vetted is False)} refused at vetting",
            )
        ]

    def _own_log_matches(self) -> list[AuditCheck]:
        if self.result is None:
            return []
        logged = [
            (str(t.get("stage")), _DATETIME.validate_python(t["at"]))
            for t in self.result.get("transitions", [])
            if t.get("at")
        ]
        rebuilt = [(t.stage.value, t.at) for t in self.rec.transitions]
        same = len(logged) == len(rebuilt) and all(
            a[0] == b[0] and abs(a[1] - b[1]) <= timedelta(seconds=1) for a, b in zip(logged, rebuilt, strict=True)
        )
        return [
            AuditCheck(
                name="the review's own transition log matches its history",
                ok=same,
                detail=f"{len(rebuilt)} transitions" if same else f"history {rebuilt} vs result {logged}",
            )
        ]

    def markdown(self, trail: AuditTrail) -> list[str]:
        r = trail.record
        if not isinstance(r, ReviewRecord):
            return []
        out = [
            "## Review",
            "",
            "| | |",
            "| --- | --- |",
            f"| review | `{r.review_id}` |",
            f"| model | {r.lab} {r.model_name} {r.model_version} |",
            f"| checkpoint | `{r.checkpoint_sha256}` |",
            f"| policy | {r.policy_version} |",
            f"| stage | **{r.stage.value if r.stage else '?'}** |",
            f"| outcome | {r.outcome.value if r.outcome else '(open)'} |",
            f"| covered | {_yes_no(r.covered)} |",
            f"| disclosed | {_iso(r.disclosed_at)} |",
            f"| determination due | {_iso(r.determination_deadline)} |",
            f"| window closes | {_iso(r.window_deadline)} |",
            f"| closed | {_iso(r.closed_at)} |",
            "",
            "## Transitions",
            "",
            "| at | stage | actor | reason |",
            "| --- | --- | --- | --- |",
            *(f"| {_iso(t.at)} | {t.stage.value} | {t.actor} | {_cell(t.reason)} |" for t in r.transitions),
            "",
            "## Standards verdicts",
            "",
        ]
        if r.verdicts:
            out += ["| agency | verdict | standard | at | rationale |", "| --- | --- | --- | --- | --- |"]
            out += [
                f"| {v.agency} | {v.verdict} | {v.standard_version} | {_iso(v.at)} | {_cell(v.rationale)} |"
                for v in r.verdicts
            ]
        else:
            out.append("None recorded yet.")
        out += ["", "## Determination", ""]
        d = r.determination
        if d is None:
            out.append("None yet." if r.stage != Stage.WITHDRAWN else "None: the lab withdrew first.")
        else:
            out += [
                f"- **{'covered' if d.covered else 'not covered'}**"
                + (f", participating: {', '.join(d.agencies)}" if d.agencies else ""),
                f"- by **{d.by}**"
                + (f" (policy default: {self._silence()})" if d.by_default else "")
                + f", {_iso(d.at)}",
                f"- rationale: {_cell(d.rationale)}",
            ]
            if d.message:
                out.append(f"- update `{d.message.update_id}` from client `{d.message.sent_from}`")
        out += ["", "## Findings", ""]
        if r.findings:
            out += ["| at | agency | kind | severity | summary |", "| --- | --- | --- | --- | --- |"]
            out += [
                f"| {_iso(f.message.at)} | {f.agency} | {f.kind} | {f.severity} | {_cell(f.summary)} |"
                for f in r.findings
            ]
        else:
            out.append("None.")
        if r.forwards:
            out += ["", "## Vulnerability findings to Treasury's clearinghouse", ""]
            out += [f"Cases: {', '.join(f'`{c}`' for c in r.cases)} (`frontier-review audit CASE-ID`).", ""]
            out += ["| finding | agency | status | case | at | note |", "| --- | --- | --- | --- | --- | --- |"]
            out += [
                f"| {f.finding_id} | {f.agency} | {f.status} | {f.case_id or ''} | {_iso(f.at)} | {_cell(f.reason)} |"
                for f in r.forwards
            ]
        out += ["", "## Conclusions", ""]
        if r.conclusions:
            out += ["| at | agency | summary |", "| --- | --- | --- |"]
            out += [f"| {_iso(c.message.at)} | {c.agency} | {_cell(c.summary)} |" for c in r.conclusions]
        else:
            out.append("None.")
        if r.withdrawal:
            w = r.withdrawal
            out += ["", "## Withdrawal", "", f"- {_iso(w.message.at)} by {w.message.sender}: {_cell(w.reason)}"]
        out += ["", "## Release to trusted partners", ""]
        out += ["| partner | vetted | granted | grant | at | reason |", "| --- | --- | --- | --- | --- | --- |"]
        out += [
            f"| {p.partner_id} ({_cell(p.name)}) | {_yes_no(p.vetted)} | {_yes_no(p.granted)} | {p.grant_id or ''} "
            f"| {_iso(p.granted_at or p.at)} | {_cell(p.reason)} |"
            for p in r.partners
        ]
        return out


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "—"


def _yes_no(value: bool | None) -> str:
    return "—" if value is None else ("yes" if value else "no")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _trust_anchors() -> TrustAnchors | None:
    """This installation's trust anchors, if this reader has them (a watcher may not)."""
    from infra.keys import KeyDirectory, KeyProblem

    try:
        return KeyDirectory().trust_anchors()
    except KeyProblem:
        return None
