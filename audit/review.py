"""How a `ModelReview` history reads as an audit trail: the review's own record, read back and
re-verified against the history, never rebuilt.

The record is the review's `ReviewState` (domain/status.py), which the workflow alone writes, every
stage change with its actor, reason and cause. A run that completed carries it as its result. Any
other run (open, terminated, failed, reset) is replayed with the workflow code (the SDK's Replayer:
no server, no worker) and the state read where its history ends: the code that wrote the record
reads it back, and a history that code would not have written fails the replay.

Then the record is held to the events:
- every applied message is an accepted update in the history, from the sender it names, and its
  signature verifies against the keyring the review held at that moment (the review office's
  signed keyrings, `load_review_keys` results in the history);
- every stage change is at its `ReviewStage` upsert, and its cause is in the history before it (the
  message's update, the timer that fired, the activities whose results it acted on);
- and the rules of the order and the policy (deadlines, the window's cap, grants once, ...).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    Replayer,
    UnsandboxedWorkflowRunner,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from audit.history import DecodedHistory, Event
from audit.trail import AuditCheck, AuditEntry, AuditTrail, Interpreter, register
from domain import attestation
from domain.agencies import STANDARDS_BODIES, Agency
from domain.attestation import TrustAnchors, Unverifiable
from domain.messages import Conclusion, Determination, Message, ReviewFinding, Withdrawal
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
from domain.signatures import PublicKeyring, signature_problem
from domain.status import ReviewState, Stage, Transition
from domain.vulnerability import REVIEW_OFFICE

# A release (or a determination taking effect) happens in the workflow task after its cause.
SAME_MOMENT = timedelta(seconds=5)
# Event times are kept to the nanosecond, the workflow's clock to the microsecond.
CLOCK_ROUNDING = timedelta(seconds=1)
_DURATION = TypeAdapter(timedelta)
_AGENCY_QUEUES = {a.task_queue: a.value for a in Agency}
MESSAGES: dict[str, type[Message]] = {
    RECORD_DETERMINATION: Determination, SUBMIT_FINDING: ReviewFinding, CONCLUDE_REVIEW: Conclusion,
    WITHDRAW: Withdrawal,
}  # fmt: skip
# The timer whose firing a clock's stage change needs: the NSA's deadline (a default), else the window.
_TIMERS = {"policy": "NSA determination deadline", "clock": "review window"}
CLASSIFIED_NOTE = (
    "This trail reproduces the history's content, including classified parts (standards "
    "rationales, the NSA's rationale, findings): handle it as the history itself. The public "
    "figures are in `frontier-review report`."
)
RECORD_NOTE = (
    "The record is the review's own (its result, or its state where the history ends, replayed with "
    "the workflow code); the checks hold it to the history's events."
)


class MessageRecord(BaseModel):
    """An applied message as the history has it: who sent it (the message's sender), from which
    client (the identity Temporal recorded), and whether its signature verifies now."""

    update: str
    message_id: str
    sender: str
    sent_from: str
    at: datetime
    event_id: int
    signature: str  # "verified", or why not


class ReviewRecord(ReviewState):
    """The review's state as it wrote it, and what the audit read beside it in the history."""

    read_from: str = ""  # result, or replay (or why neither could be read)
    messages: list[MessageRecord] = Field(default_factory=list)
    unverified_by: dict[str, str] = Field(default_factory=dict)  # activity id -> who completed it
    closed_at: datetime | None = None


# ---------------------------------------------------------------- reading the record


class _Capture(Interceptor):
    """Keeps the workflow instance a replay runs, to read its state where the history ends."""

    def __init__(self) -> None:
        self.instances: dict[str, Any] = {}

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        instances = self.instances

        class Inbound(WorkflowInboundInterceptor):
            async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
                instances[workflow.info().run_id] = workflow.instance()
                return await super().execute_workflow(input)

        return Inbound


async def read_state(history: DecodedHistory) -> tuple[ReviewState | None, str]:
    """The review's record: the result of a completed run, else its state replayed."""
    closed = history.closed
    if closed is not None and closed.type == "WORKFLOW_EXECUTION_COMPLETED" and closed.values:
        try:
            return ReviewState.model_validate(closed.values[0]), "result"
        except ValidationError:
            pass
    from infra.connection import data_converter
    from workflows.review import ModelReview

    if not attestation.pinned():  # the replay believes activity results as the worker did
        anchors = _trust_anchors()
        if anchors:
            attestation.pin(anchors)
    capture = _Capture()
    replayer = Replayer(
        workflows=[ModelReview], data_converter=data_converter(), interceptors=[capture],
        workflow_runner=UnsandboxedWorkflowRunner(),
    )  # fmt: skip
    raw = WorkflowHistory(history.workflow_id, [e.raw for e in history.events])
    result = await replayer.replay_workflow(raw, raise_on_replay_failure=False)
    instance = capture.instances.get(history.run_id) or next(iter(capture.instances.values()), None)
    if result.replay_failure is not None or instance is None:
        return None, f"replay failed: {result.replay_failure}"
    return instance.status(), "replay"


def _keyrings(history: DecodedHistory, anchors: TrustAnchors | None, runs: set[str]) -> list[tuple[int, PublicKeyring]]:
    """The keyrings the review held, each from the event that loaded it (the review office's signed
    result; verified again here when this reader has the trust anchors)."""
    found: list[tuple[int, PublicKeyring]] = []
    for e in history.events:
        if e.type != "ACTIVITY_TASK_COMPLETED" or e.name != LOAD_REVIEW_KEYS or not e.values:
            continue
        keyring = _believed(e.values[0], e.ref, history.workflow_id, runs, anchors, REVIEW_OFFICE)
        if isinstance(keyring, dict):
            found.append((e.id, keyring))
    return found


def _believed(raw: Any, activity_id: str, workflow_id: str, runs: set[str], anchors: TrustAnchors | None, party: str):
    if anchors is None:  # a reader without the anchors: the signed envelope's content, as recorded
        return raw.get("result") if isinstance(raw, dict) else None
    for run_id in runs:
        try:
            return attestation.verify(
                raw, party=party, workflow_id=workflow_id, run_id=run_id, activity_id=activity_id, anchors=anchors
            )
        except Unverifiable:
            continue
    return None


# ---------------------------------------------------------------- the interpreter


@register
class ModelReviewInterpreter(Interpreter):
    workflow_type = WORKFLOW_TYPE
    notes = (*Interpreter.notes, CLASSIFIED_NOTE, RECORD_NOTE)

    async def load(self, history: DecodedHistory) -> None:
        self.state, self.read_from = await read_state(history)

    def prepare(self, history: DecodedHistory) -> None:
        state, read_from = getattr(self, "state", None), getattr(self, "read_from", "not read")
        started = history.events[0]
        review = started.values[0] if started.values and isinstance(started.values[0], dict) else {}
        if state is None:  # no record could be read: only the disclosure's names
            d = review.get("disclosure", {})
            state = ReviewState(
                review_id=history.workflow_id, lab=d.get("lab", "?"), model_name=d.get("model_name", "?"),
                model_version=d.get("model_version", "?"), disclosed_at=started.at,
            )  # fmt: skip
        self.policy = next(
            (e.values[0].get("result", {}).get("policy") or {} for e in history.events
             if e.type == "ACTIVITY_TASK_COMPLETED" and e.name == ADMIT_DISCLOSURE and e.values
             and isinstance(e.values[0], dict)), {},
        )  # fmt: skip
        first = started.attributes
        runs = {getattr(first, "original_execution_run_id", "") or history.run_id, history.run_id}
        runs |= {e.attributes.new_run_id for e in history.events if e.type == "WORKFLOW_TASK_FAILED"} - {""}
        self.keyrings = _keyrings(history, _trust_anchors(), runs)
        self.updates = {e.ref: e for e in history.events if e.type == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED"}
        unverified = {u.activity_id for u in state.unverified_results}
        self.rec = ReviewRecord(
            **state.model_dump(exclude=set(ReviewRecord.model_computed_fields)),
            read_from=read_from,
            messages=[self._message(e) for e in self.updates.values() if e.name in MESSAGES],
            unverified_by={
                e.ref: e.identity for e in history.events if e.type == "ACTIVITY_TASK_COMPLETED" and e.ref in unverified
            },  # fmt: skip
            closed_at=history.closed.at if history.closed else None,
        )
        self.stage_events = self._stage_events(history)

    def _message(self, e: Event) -> MessageRecord:
        body = e.values[0] if e.values and isinstance(e.values[0], dict) else {}
        keyring = next((k for event_id, k in reversed(self.keyrings) if event_id < e.id), None)
        try:
            message = MESSAGES[e.name].model_validate(body)
            problem = "no keyring loaded before it" if keyring is None else signature_problem(
                keyring, self.history.workflow_id, e.name, message, target="review"
            )  # fmt: skip
        except ValidationError:
            problem = "not a valid message"
        return MessageRecord(
            update=e.name, message_id=e.ref, sender=str(body.get("sender", "?")), sent_from=e.identity, at=e.at,
            event_id=e.id, signature=problem or "verified",
        )  # fmt: skip

    def _stage_events(self, history: DecodedHistory) -> dict[int, list[Transition]]:
        """Each transition at the `ReviewStage` upsert that published it (DISCLOSED, set by the start
        request, goes with the next stage's)."""
        upserts = [e for e in history.events if "ReviewStage" in e.search_attributes]
        placed: dict[int, list[Transition]] = {}
        waiting: list[Transition] = []
        for t in self.rec.transitions:
            waiting.append(t)
            event = next((e for e in upserts if e.search_attributes["ReviewStage"] == t.stage.value), None)
            if event is not None and t.stage != Stage.DISCLOSED:
                upserts = upserts[upserts.index(event) + 1 :]
                placed.setdefault(event.id, []).extend(waiting)
                waiting = []
        self.unpublished = [t for t in waiting if t.stage != Stage.DISCLOSED or len(self.rec.transitions) > 1]
        return placed

    # -- the trail

    def record(self) -> ReviewRecord:
        return self.rec

    def actor_of_queue(self, task_queue: str) -> str:
        return _AGENCY_QUEUES.get(task_queue, task_queue)

    def entries(self, event: Event) -> list[AuditEntry]:
        if event.id in self.stage_events:
            return [
                self._entry(event, "stage", t.actor, f"→ {t.stage.value}: {t.reason}", at=t.at)
                for t in self.stage_events[event.id]
            ]
        if event.type == "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES":
            return []  # the stage lines above carry what matters; the rest is in the record
        if event.type == "WORKFLOW_EXECUTION_STARTED":
            r = self.rec
            text = f"{r.lab} discloses {r.model_name} {r.model_version}; review {r.review_id} starts"
            return [self._entry(event, "workflow", "lab", text, started_by=event.identity)]
        if event.type == "WORKFLOW_EXECUTION_COMPLETED":
            outcome = f" ({self.rec.outcome.value})" if self.rec.outcome else ""
            return [self._entry(event, "workflow", "review", f"review closed at {self.rec.stage.value}{outcome}")]
        return super().entries(event)

    def describe_message(self, event: Event) -> str:
        body = event.values[0] if event.values and isinstance(event.values[0], dict) else {}
        if event.name == RECORD_DETERMINATION:
            agencies = ", ".join(body.get("agencies", []))
            verdict = "covered" if body.get("covered") else "not covered"
            with_whom = f", with {agencies}" if agencies else ""
            return f"determination: {verdict}{with_whom}; rationale: {body.get('rationale')}"
        if event.name == SUBMIT_FINDING:
            return f"finding ({body.get('kind')}, {body.get('severity')}): {body.get('summary')}"
        if event.name == CONCLUDE_REVIEW:
            return "concludes its review" + (f": {body['summary']}" if body.get("summary") else "")
        if event.name == WITHDRAW:
            return f"the lab withdraws: {body.get('reason', '')}"
        return super().describe_message(event)

    def describe_result(self, event: Event, scheduled: Event | None) -> str:
        refused = next((u for u in self.rec.unverified_results if u.activity_id == event.ref), None)
        if refused is not None:
            return f"NOT BELIEVED, completed by {self.rec.unverified_by.get(event.ref) or 'unknown'}: {refused.reason}"
        raw = event.values[0] if event.values else None
        v = raw.get("result") if isinstance(raw, dict) and "signature" in raw else raw
        v = v if isinstance(v, dict) else {}
        texts = {
            CHECK_STANDARD: lambda: f"{v.get('verdict')}: {v.get('rationale')} (standard {v.get('standard_version')})",
            BRIEF_NSA: lambda: "briefing delivered",
            VET_PARTNER: lambda: (
                f"{v.get('partner_id')} {'approved' if v.get('approved') else 'refused'}: {v.get('reason')}"
            ),
            GRANT_ACCESS: lambda: (
                f"{v.get('partner_id')} granted, grant {v.get('grant_id')}"
                + (" (already granted: the first grant stands)" if v.get("already_granted") else "")
            ),
        }
        text = texts.get(event.name)
        return text() if text else super().describe_result(event, scheduled)

    # -- the checks, in the order of the lifecycle; a rule that does not apply says nothing

    def checks(self, record: BaseModel | None) -> list[AuditCheck]:
        rules = (
            self._record_read, self._messages_verified, self._causes_found, self._standards_answered,
            self._determination_checks, self._participants_only, self._window_kept, self._release_not_held,
            self._findings_delivered, self._grants_once, self._own_log_matches,
        )  # fmt: skip
        return [check for rule in rules for check in rule()]

    def _record_read(self) -> list[AuditCheck]:
        ok = self.rec.read_from in ("result", "replay")
        return [AuditCheck(name="the review's own record was read", ok=ok, detail=self.rec.read_from)]

    def _messages_verified(self) -> list[AuditCheck]:
        applied = {m.message_id: m for m in self.rec.applied}
        seen = {m.message_id: m for m in self.rec.messages}
        problems = [f"{m.message_id}: not in the history" for m in applied.values() if m.message_id not in seen]
        problems += [f"{m.message_id}: applied off the record" for m in seen.values() if m.message_id not in applied]
        problems += [f"{m.message_id} ({m.sender}): {m.signature}" for m in seen.values() if m.signature != "verified"]
        problems += [
            f"{m.message_id}: the record says {applied[m.message_id].sender}, the message {m.sender}"
            for m in seen.values() if m.message_id in applied and applied[m.message_id].sender != m.sender
        ]  # fmt: skip
        detail = f"{len(seen)} messages, each signed by its sender's key in the review's keyring then"
        return [
            AuditCheck(
                name="every applied message is in the history, signed with the key the review held for its sender",
                ok=not problems, detail="; ".join(problems) or detail,
            )
        ]  # fmt: skip

    def _cause(self, t: Transition) -> str | None:
        """Why the history does not show this stage change's cause, or None if it does."""
        before = [e for e in self.history.events if e.at <= t.at + SAME_MOMENT]
        if t.message_id is not None:
            return None if t.message_id in self.updates and self.updates[t.message_id] in before else "no such update"
        if t.clock is not None:
            timer = _TIMERS.get(t.actor, "")
            fired = [e for e in before if e.type == "TIMER_FIRED" and self._timer(e).startswith(timer)]
            return None if fired else f"no {timer} timer fired"
        completed = [e for e in before if e.type == "ACTIVITY_TASK_COMPLETED"]
        if t.stage in (Stage.DISCLOSED, Stage.STANDARDS_CHECK):
            admitted = any(e.name == ADMIT_DISCLOSURE for e in completed)
            return None if admitted else "the review office never admitted it"
        if t.stage == Stage.AWAITING_DETERMINATION:
            answered = {self._agency_of(e) for e in completed if e.name == CHECK_STANDARD}
            unheard = [v.agency.value for v in self.rec.standards if v.verdict != "no_response"]
            missing = sorted(set(unheard) - answered)
            return f"no completed check from {', '.join(missing)}" if missing else None
        if t.stage == Stage.RELEASED:
            grants = sum(1 for e in completed if e.name == GRANT_ACCESS and e.ref not in self.rec.unverified_by)
            return None if grants >= len(self.rec.partners_granted) else f"{grants} grants in the history"
        return None

    def _agency_of(self, completed: Event) -> str:
        scheduled = self.history.event(completed.attributes.scheduled_event_id)
        return self.actor_of_queue(scheduled.attributes.task_queue.name) if scheduled else ""

    def _timer(self, fired: Event) -> str:
        started = self.history.event(fired.attributes.started_event_id)
        return (started.summary if started else None) or ""

    def _causes_found(self) -> list[AuditCheck]:
        missing = [f"{t.stage.value} ({t.actor}): {why}" for t in self.rec.transitions if (why := self._cause(t))]
        if self.unpublished:
            missing.append("never published: " + ", ".join(t.stage.value for t in self.unpublished))
        detail = "; ".join(missing) or f"{len(self.rec.transitions)} stage changes, each with its cause"
        return [AuditCheck(name="every stage change has its cause in the history", ok=not missing, detail=detail)]

    def _standards_answered(self) -> list[AuditCheck]:
        rec = self.rec
        if Stage.AWAITING_DETERMINATION not in {t.stage for t in rec.transitions}:
            return []
        missing = [a.value for a in STANDARDS_BODIES if a not in {v.agency for v in rec.standards}]
        detail = f"missing: {', '.join(missing)}" if missing else f"{len(rec.standards)} verdicts"
        return [
            AuditCheck(name="every standards body answered or was recorded as silent", ok=not missing, detail=detail)
        ]

    def _determined_at(self) -> datetime | None:
        d = self.rec.determination
        applied = next((m for m in self.rec.applied if d and m.message_id == d.message_id), None)
        return applied.at if applied else None

    def _determination_checks(self) -> list[AuditCheck]:
        rec, d = self.rec, self.rec.determination
        if d is None:
            return []
        name = "the determination came from the NSA by its deadline"
        deadline = rec.determination_deadline
        if rec.determination_by_default:
            # A default is not the NSA's decision: this check fails for it, and says so; a second
            # check holds the default to its own rule (it applied only once the deadline had passed).
            fired = any(e.type == "TIMER_FIRED" and self._timer(e) == _TIMERS["policy"] for e in self.history.events)
            checks = [
                AuditCheck(name=name, ok=False, detail=f"no: {self._silence()}; the policy's default "
                           f"({'covered' if d.covered else 'not covered'}) applied instead"),
                AuditCheck(name="the policy's default applied only when the NSA's deadline had passed", ok=fired,
                           detail=f"deadline {_iso(deadline)}; the deadline timer {'' if fired else 'never '}fired"),
            ]  # fmt: skip
        else:
            at = self._determined_at()
            ok = d.sender == Agency.NSA.value and at is not None and (deadline is None or at <= deadline)
            checks = [AuditCheck(name=name, ok=ok, detail=f"by {d.sender} at {_iso(at)}, deadline {_iso(deadline)}")]
        said = next((e.search_attributes["DeterminedBy"] for e in reversed(self.history.events)
                     if "DeterminedBy" in e.search_attributes), None)  # fmt: skip
        if said is not None:
            by = "policy" if said == DETERMINED_BY_DEFAULT else said
            checks.append(
                AuditCheck(name="the DeterminedBy search attribute names who decided", ok=by == d.sender,
                           detail=f"DeterminedBy={said}; the record shows {d.sender}")
            )  # fmt: skip
        return checks

    def _silence(self) -> str:
        """Silence is the NSA's only if it was briefed: a briefing its worker never took is not."""
        return "the NSA was silent" if self.rec.nsa_briefed else "the briefing never reached the NSA"

    def _participants_only(self) -> list[AuditCheck]:
        rec = self.rec
        if not (rec.participating_agencies or rec.findings or rec.conclusions):
            return []
        outsiders = sorted({m.sender for m in [*rec.findings, *rec.conclusions]} - set(rec.participating_agencies))
        detail = f"from non-participants: {', '.join(outsiders)}" if outsiders else "participants: " + ", ".join(
            rec.participating_agencies
        )  # fmt: skip
        return [AuditCheck(name="findings and conclusions came only from participating agencies", ok=not outsiders,
                           detail=detail)]  # fmt: skip

    def _window_kept(self) -> list[AuditCheck]:
        rec = self.rec
        under = next((t for t in rec.transitions if t.stage == Stage.UNDER_REVIEW), None)
        if under is None or rec.window_deadline is None:
            return []
        length = rec.window_deadline - under.at
        try:
            allowed = min(_DURATION.validate_python(self.policy.get("review_window")), STATUTORY_WINDOW_CAP)
        except ValueError:
            allowed = STATUTORY_WINDOW_CAP
        return [
            AuditCheck(name="the review window kept to the policy and the order's 30-day cap",
                       ok=length <= allowed + CLOCK_ROUNDING,
                       detail=f"window of {describe(length)} (policy {describe(allowed)})")
        ]  # fmt: skip

    def _release_not_held(self) -> list[AuditCheck]:
        rec = self.rec
        releasing = next((t for t in rec.transitions if t.stage == Stage.RELEASING), None)
        if releasing is None or rec.determination is None:
            return []
        if rec.window_deadline is not None:
            limit, what = rec.window_deadline, "the window deadline"
        else:
            limit = self._determined_at() or rec.determination_deadline or releasing.at
            what = "the determination (not covered) took effect"
        return [
            AuditCheck(name="the release was not held past what the policy allows",
                       ok=releasing.at - limit <= SAME_MOMENT,
                       detail=f"release began {_iso(releasing.at)}; {what} {_iso(limit)}")
        ]  # fmt: skip

    def _findings_delivered(self) -> list[AuditCheck]:
        rec = self.rec
        vulnerabilities = [f for f in rec.findings if f.kind == "vulnerability"]
        if not vulnerabilities:
            return []
        forwards = {f.finding_id: f for f in rec.forwards}
        missing = [
            f"{f.sender}'s {f.message_id}: " + (f"{fw.status} ({fw.reason})" if (fw := forwards.get(f.message_id))
                                                 else "never forwarded")
            for f in vulnerabilities if getattr(forwards.get(f.message_id), "status", "") != "delivered"
        ]  # fmt: skip
        return [
            AuditCheck(name="every vulnerability finding reached Treasury's clearinghouse", ok=not missing,
                       detail="; ".join(missing) or f"{len(vulnerabilities)} delivered: cases {', '.join(rec.cases)}")
        ]  # fmt: skip

    def _grants_once(self) -> list[AuditCheck]:
        granted = self.rec.partners_granted
        grants = [e for e in self.history.events if e.type == "ACTIVITY_TASK_COMPLETED" and e.name == GRANT_ACCESS]
        believed = [e for e in grants if e.ref not in self.rec.unverified_by]
        return [
            AuditCheck(name="each partner was granted access at most once",
                       ok=len(believed) == len(set(granted)) == len(granted),
                       detail=f"{len(granted)} grants, {len(self.rec.partners_skipped)} not granted")
        ]  # fmt: skip

    def _own_log_matches(self) -> list[AuditCheck]:
        rebuilt = [(t.stage.value, e.workflow_time) for e_id, ts in self.stage_events.items()
                   if (e := self.history.event(e_id)) for t in ts if t.stage != Stage.DISCLOSED]  # fmt: skip
        logged = [(t.stage.value, t.at) for t in self.rec.transitions if t.stage != Stage.DISCLOSED]
        same = len(logged) == len(rebuilt) and all(
            a[0] == b[0] and abs(a[1] - b[1]) <= CLOCK_ROUNDING for a, b in zip(logged, rebuilt, strict=True)
        )
        detail = f"{len(self.rec.transitions)} transitions" if same else f"history {rebuilt} vs record {logged}"
        return [AuditCheck(name="the review's own transition log matches its history", ok=same, detail=detail)]

    def markdown(self, trail: AuditTrail) -> list[str]:
        r = trail.record
        if not isinstance(r, ReviewRecord):
            return []
        d = r.determination
        return [
            *_table("Review", ["", ""], [
                ["review", f"`{r.review_id}`"], ["model", f"{r.lab} {r.model_name} {r.model_version}"],
                ["policy", r.policy_version], ["stage", f"**{r.stage.value}**"],
                ["outcome", r.outcome.value if r.outcome else "(open)"], ["covered", _yes_no(r.covered)],
                ["disclosed", _iso(r.disclosed_at)], ["determination due", _iso(r.determination_deadline)],
                ["window closes", _iso(r.window_deadline)], ["closed", _iso(r.closed_at)],
                ["record read from", r.read_from], ["cases", ", ".join(f"`{c}`" for c in r.cases)],
            ]),
            *_table("Transitions", ["at", "stage", "actor", "reason"],
                    [[_iso(t.at), t.stage.value, t.actor, t.reason] for t in r.transitions]),
            *_table("Standards verdicts", ["agency", "verdict", "standard", "rationale"],
                    [[v.agency.value, v.verdict.value, v.standard_version, v.rationale] for v in r.standards]),
            *_table("Determination", ["covered", "participating", "by", "rationale"],
                    [[_yes_no(d.covered), ", ".join(d.agencies), d.sender, d.rationale]] if d else []),
            *_table("Messages applied", ["at", "update", "sender", "from client", "signature"],
                    [[_iso(m.at), m.update, m.sender, m.sent_from, m.signature] for m in r.messages]),
            *_table("Findings", ["agency", "kind", "severity", "summary"],
                    [[f.sender, f.kind.value, f.severity.value, f.summary] for f in r.findings]),
            *_table("Findings to Treasury's clearinghouse", ["finding", "agency", "status", "case", "note"],
                    [[f.finding_id, f.agency, f.status, f.case_id or "", f.reason] for f in r.forwards]),
            *_table("Conclusions", ["agency", "summary"], [[c.sender, c.summary] for c in r.conclusions]),
            *_table("Release to trusted partners", ["partner", "granted", "grant", "reason"],
                    [[p.partner_id, _yes_no(p.granted), p.grant_id or "", p.reason] for p in r.releases]),
            *_table("Key reloads", ["at", "asked for", "changed", "note"],
                    [[_iso(k.at), k.asked_for, _yes_no(k.changed), k.reason] for k in r.key_refreshes]),
        ]  # fmt: skip


def _table(title: str, headers: list[str], rows: list[list[Any]]) -> list[str]:
    head = [f"## {title}", ""]
    if not rows:
        return [*head, "None.", ""]
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    return [*head, *lines, *("| " + " | ".join(_cell(str(c)) for c in row) + " |" for row in rows), ""]


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
