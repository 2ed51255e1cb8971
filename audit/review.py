"""How a `ModelReview` history reads as an audit trail: the review's own record, read back and
re-verified against the history, never rebuilt.

The record is the review's `ReviewState` (domain/status.py), written by the workflow alone: a run
that completed carries it as its result; any other run (open, terminated, failed, reset) is replayed
with the workflow code (audit/replay.py) and its state read where the history ends. The record is
then held to the events: each applied message is an accepted update from the sender it names,
signed with the key the review held then (the review office's signed keyrings, `load_review_keys`
results in the history); each stage change is at its `ReviewStage` upsert, with its cause before it
(the message's update, the timer that fired, the activity results it acted on); and the rules of
the order and the policy hold (deadlines, the window's cap, grants once, ...).
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing, suppress
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from api.reviews import reader_anchors
from audit.history import RESET_CAUSE, DecodedHistory, Event
from audit.markdown import entries_table, fields_table
from audit.replay import replayed
from audit.trail import AuditCheck, AuditEntry, AuditTrail, Interpreter, register
from domain import attestation
from domain import review as r
from domain.agencies import STANDARDS_BODIES, Agency
from domain.attestation import TrustAnchors, Unverifiable
from domain.messages import Conclusion, Determination, Message, ReviewFinding, Withdrawal
from domain.policy import STATUTORY_WINDOW_CAP, describe
from domain.review import LedgerGrant
from domain.search_attributes import DETERMINED_BY_DEFAULT
from domain.signatures import PublicKeyring, signature_problem
from domain.status import Forward, PartnerRelease, ReviewState, Stage, Transition
from domain.vulnerability import REVIEW_OFFICE

# A release (or a determination taking effect) happens in the workflow task after its cause.
SAME_MOMENT = timedelta(seconds=5)
# Event times are kept to the nanosecond, the workflow's clock to the microsecond.
CLOCK_ROUNDING = timedelta(seconds=1)
_DURATION = TypeAdapter(timedelta)
_AGENCY_QUEUES = {a.task_queue: a.value for a in Agency}
MESSAGES: dict[str, type[Message]] = {
    r.RECORD_DETERMINATION: Determination, r.SUBMIT_FINDING: ReviewFinding, r.CONCLUDE_REVIEW: Conclusion,
    r.WITHDRAW: Withdrawal,
}  # fmt: skip
# The timer whose firing a clock's stage change needs: the NSA's deadline (a default), else the window.
_TIMERS = {"policy": "NSA determination deadline", "clock": "review window"}
# The record's summary, first in the Markdown document.
SUMMARY = [
    "review_id", "lab", "model_name", "model_version", "policy_version", "stage", "outcome", "covered", "disclosed_at",
    "determination_deadline", "window_deadline", "closed_at", "read_from", "cases",
]  # fmt: skip
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
    # How the run ended when something outside the review ended it (TERMINATED, FAILED, ...): then
    # `stage` is only where it was cut short, and the trail shows this instead.
    ended: str | None = None


# ---------------------------------------------------------------- reading the record


def ledger_grants(review_id: str) -> list[LedgerGrant] | None:
    """The review office's grant ledger for this review, when this host holds it (the review office's
    FRONTIER_REVIEW_DATA_DIR, read-only): the grants outside the history, which a reset cannot erase.
    None when there is no ledger here to compare with."""
    path = Path(os.environ.get("FRONTIER_REVIEW_DATA_DIR", "var")) / "review.db"
    if not path.is_file():
        return None
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT partner_id, grant_id, granted_at, run_id FROM grants WHERE review_id = ?", (review_id,)
            ).fetchall()
    except sqlite3.Error:
        return None
    return [
        LedgerGrant(partner_id=partner, grant_id=grant, granted_at=datetime.fromisoformat(at), run_id=run)
        for partner, grant, at, run in rows
    ]


class ReadState(BaseModel):
    """The review's record as read: its state replayed with the workflow code (audit/replay.py), for
    every run, a completed one too (its result is only what the run says it returned: a result
    doctored in an export, re-sealed with the payload key, would otherwise be believed); and a
    completed run's result beside it, to be held to the replay."""

    state: ReviewState | None
    read_from: str
    result: ReviewState | None = None
    returned: ReviewState | None = None  # the replayed state the run returned (no query-time flags)


async def read_state(history: DecodedHistory) -> ReadState:
    result = None
    closed = history.closed
    if closed is not None and closed.type == "WORKFLOW_EXECUTION_COMPLETED" and closed.values:
        with suppress(ValidationError):
            result = ReviewState.model_validate(closed.values[0])
    from workflows.review import ModelReview

    if not attestation.pinned() and (anchors := reader_anchors()):
        attestation.pin(anchors)  # the replay believes activity results as the review's worker did
    review, problem = await replayed(history, ModelReview)
    if review is None:
        # Shown from the result when there is one, but never as read: the record check fails.
        return ReadState(state=result, read_from=f"{problem} (the result is shown, unconfirmed)" if result else problem)
    return ReadState(state=review.status(), read_from="replay", result=result, returned=review.state)


def _keyrings(history: DecodedHistory, anchors: TrustAnchors | None, runs: set[str]) -> list[tuple[int, PublicKeyring]]:
    """The keyrings the review held, each with the event that loaded it: the review office's signed
    result, verified again here (as recorded, for a reader without the trust anchors)."""
    loads = [e for e in history.events if e.completes_activity and e.name == r.LOAD_REVIEW_KEYS]
    found = [(e.id, _believed((e.values or [None])[0], e.ref, history.workflow_id, runs, anchors)) for e in loads]
    return [(event_id, keyring) for event_id, keyring in found if isinstance(keyring, dict)]


def _believed(raw: Any, activity_id: str, workflow_id: str, runs: set[str], anchors: TrustAnchors | None) -> Any:
    if anchors is None:
        return raw.get("result") if isinstance(raw, dict) else None
    first, *others = sorted(runs) or [""]
    with suppress(Unverifiable):
        return attestation.verify(raw, party=REVIEW_OFFICE, workflow_id=workflow_id, run_id=first,
                                  other_runs=others, activity_id=activity_id, anchors=anchors)  # fmt: skip
    return None


# ---------------------------------------------------------------- the interpreter


def _check(name: str, ok: bool, detail: str) -> list[AuditCheck]:
    return [AuditCheck(name=name, ok=ok, detail=detail)]


def _placeholder(history: DecodedHistory) -> ReviewState:
    """When no record could be read (every check then says so)."""
    return ReviewState(review_id=history.workflow_id, lab="?", model_name="?", model_version="?",
                       disclosed_at=history.started_at)  # fmt: skip


def _runs(history: DecodedHistory) -> set[str]:
    """The runs an activity result may have been signed for: the original, and each run a reset made."""
    first = history.events[0].attributes
    runs = {getattr(first, "original_execution_run_id", "") or history.run_id, history.run_id}
    return runs | {e.attributes.new_run_id for e in history.events if e.type == "WORKFLOW_TASK_FAILED"} - {""}


def _policy(history: DecodedHistory) -> dict[str, Any]:
    """The policy the review ran under: the review office's, in its admission."""
    admitted = [e.values[0].get("result") for e in history.events if e.completes_activity
                and e.name == r.ADMIT_DISCLOSURE and e.values and isinstance(e.values[0], dict)]  # fmt: skip
    return next((a["policy"] for a in admitted if isinstance(a, dict) and isinstance(a.get("policy"), dict)), {})


@register
class ModelReviewInterpreter(Interpreter):
    workflow_type = r.WORKFLOW_TYPE
    notes = (*Interpreter.notes, CLASSIFIED_NOTE, RECORD_NOTE)

    async def load(self, history: DecodedHistory) -> None:
        self.read = await read_state(history)
        self.state, self.read_from = self.read.state, self.read.read_from
        self.ledger = ledger_grants(history.workflow_id)

    def prepare(self, history: DecodedHistory) -> None:
        state = getattr(self, "state", None) or _placeholder(history)
        self.policy = _policy(history)
        self.keyrings = _keyrings(history, reader_anchors(), _runs(history))
        self.updates = {e.ref: e for e in history.events if e.type == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED"}
        self.completed = [e for e in history.events if e.completes_activity]
        unverified = {u.activity_id for u in state.unverified_results}
        self.rec = ReviewRecord(
            **state.model_dump(exclude=set(ReviewRecord.model_computed_fields)),
            read_from=getattr(self, "read_from", "not read"),
            messages=[self._message(e) for e in self.updates.values() if e.name in MESSAGES],
            unverified_by={e.ref: e.identity for e in self.completed if e.ref in unverified},
            closed_at=history.closed.at if history.closed else None,
            ended=history.status if history.status not in ("RUNNING", "COMPLETED") else None,
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
            rec = self.rec
            text = f"{rec.lab} discloses {rec.model_name} {rec.model_version}; review {rec.review_id} starts"
            return [self._entry(event, "workflow", "lab", text, started_by=event.identity)]
        if event.type == "WORKFLOW_EXECUTION_COMPLETED":
            outcome = f" ({self.rec.outcome.value})" if self.rec.outcome else ""
            return [self._entry(event, "workflow", "review", f"review closed at {self.rec.stage.value}{outcome}")]
        return super().entries(event)

    def describe_message(self, event: Event) -> str:
        b = event.values[0] if event.values and isinstance(event.values[0], dict) else {}
        with_whom = f", with {', '.join(b['agencies'])}" if b.get("agencies") else ""
        verdict = "covered" if b.get("covered") else "not covered"
        texts = {
            r.RECORD_DETERMINATION: f"determination: {verdict}{with_whom}; rationale: {b.get('rationale')}",
            r.SUBMIT_FINDING: f"finding ({b.get('kind')}, {b.get('severity')}): {b.get('summary')}",
            r.CONCLUDE_REVIEW: "concludes its review" + (f": {b['summary']}" if b.get("summary") else ""),
            r.WITHDRAW: f"the lab withdraws: {b.get('reason', '')}",
        }
        return texts.get(event.name) or super().describe_message(event)

    def describe_result(self, event: Event, scheduled: Event | None) -> str:
        refused = next((u for u in self.rec.unverified_results if u.activity_id == event.ref), None)
        if refused is not None:
            return f"NOT BELIEVED, completed by {self.rec.unverified_by.get(event.ref) or 'unknown'}: {refused.reason}"
        raw = event.values[0] if event.values else None
        v = raw.get("result") if isinstance(raw, dict) and "signature" in raw else raw
        v = v if isinstance(v, dict) else {}
        again = " (already granted: the first grant stands)" if v.get("already_granted") else ""
        texts = {
            r.CHECK_STANDARD: f"{v.get('verdict')}: {v.get('rationale')} (standard {v.get('standard_version')})",
            r.BRIEF_NSA: "briefing delivered",
            r.VET_PARTNER: f"{v.get('partner_id')} {'approved' if v.get('approved') else 'refused'}: {v.get('reason')}",
            r.GRANT_ACCESS: f"{v.get('partner_id')} granted, grant {v.get('grant_id')}{again}",
        }
        return texts.get(event.name) or super().describe_result(event, scheduled)

    # -- the checks, in the order of the lifecycle; a rule that does not apply says nothing

    def checks(self, record: BaseModel | None) -> list[AuditCheck]:
        rules = (
            self._record_read, self._result_replays, self._ran_to_its_end, self._messages_verified, self._causes_found,
            self._standards_answered,
            self._determination_checks, self._participants_only, self._window_kept, self._release_not_held,
            self._findings_delivered, self._grants_once, self._ledger_agrees, self._own_log_matches,
        )  # fmt: skip
        return [check for rule in rules for check in rule()]

    def _record_read(self) -> list[AuditCheck]:
        read = self.rec.read_from
        return _check("the review's own record was read", read in ("result", "replay"), read)

    def _result_replays(self) -> list[AuditCheck]:
        """A completed run's result against the state its history replays to: the determination,
        findings, conclusions, verdicts and grants shown are the replayed ones, from the signed
        messages and attested results in the history; a result that says otherwise was not written
        by this code from these events."""
        read = getattr(self, "read", None)
        if read is None or read.result is None or read.returned is None:
            return []
        replayed, result = read.returned.model_dump(mode="json"), read.result.model_dump(mode="json")
        differ = [k for k in sorted(replayed.keys() | result.keys()) if replayed.get(k) != result.get(k)]
        detail = f"differs in: {', '.join(differ)} (the trail shows the replayed state)" if differ else "identical"
        return _check("the workflow's result is the state its history replays to", not differ, detail)

    def _ran_to_its_end(self) -> list[AuditCheck]:
        """A run terminated, failed or timed out, or one whose history was reset, did not run its own
        course: its record stops, or restarts, where someone outside the review cut it."""
        h = self.history
        resets = [e for e in h.events if e.type == "WORKFLOW_TASK_FAILED" and e.attributes.cause == RESET_CAUSE]
        problems = [f"history reset at event {e.id} ({e.attributes.failure.message or 'no reason'})" for e in resets]
        if self.rec.ended is not None:
            closed = h.closed
            how = f" by {closed.identity}" if closed is not None and closed.identity else ""
            problems.append(f"{self.rec.ended}{how}, cut short at {self.rec.stage.value}")
        if not problems and h.closed is None:
            return []  # open: the export check says whether that is the whole story
        detail = "; ".join(problems) or f"closed by the review itself at {self.rec.stage.value}"
        return _check("the run ran to its own end (not terminated, reset or failed from outside)", not problems, detail)

    def _messages_verified(self) -> list[AuditCheck]:
        applied = {m.message_id: m.sender for m in self.rec.applied}
        seen = {m.message_id: m for m in self.rec.messages}
        problems = [f"{i}: not in the history" for i in applied if i not in seen]
        for i, m in seen.items():
            why = "applied off the record" if i not in applied else m.signature if m.signature != "verified" else ""
            why = why or (f"the record says {applied[i]}, the message {m.sender}" if applied[i] != m.sender else "")
            problems += [f"{i} ({m.sender}): {why}"] if why else []
        detail = f"{len(seen)} messages, each signed by its sender's key in the review's keyring then"
        name = "every applied message is in the history, signed with the key the review held for its sender"
        return _check(name, not problems, "; ".join(problems) or detail)

    def _cause(self, t: Transition) -> str | None:
        """Why the history does not show this stage change's cause before it, or None if it does."""
        until = t.at + SAME_MOMENT
        if t.message_id is not None:
            update = self.updates.get(t.message_id)
            return None if update is not None and update.at <= until else f"no update {t.message_id} before it"
        if t.clock is not None:
            timer = _TIMERS.get(t.actor, "")
            fired = [e for e in self.history.events if e.type == "TIMER_FIRED" and e.at <= until]
            return None if any(self._timer(e).startswith(timer) for e in fired) else f"no {timer} timer fired"
        missing = self._results_missing(t.stage, [e for e in self.completed if e.at <= until])
        return f"no believed activity result for {', '.join(missing)}" if missing else None

    def _results_missing(self, stage: Stage, completed: list[Event]) -> list[str]:
        """The activity results a stage change by the review itself acted on, missing from the history."""
        done = [e for e in completed if e.ref not in self.rec.unverified_by]
        if stage in (Stage.DISCLOSED, Stage.STANDARDS_CHECK):
            return [] if any(e.name == r.ADMIT_DISCLOSURE for e in done) else ["the admission"]
        if stage == Stage.AWAITING_DETERMINATION:
            answered = {self._agency_of(e) for e in done if e.name == r.CHECK_STANDARD}
            return sorted({v.agency.value for v in self.rec.standards if v.verdict != "no_response"} - answered)
        if stage == Stage.RELEASED:
            return self.rec.partners_granted[sum(1 for e in done if e.name == r.GRANT_ACCESS) :]
        return []

    def _agency_of(self, completed: Event) -> str:
        scheduled = self.history.event(completed.attributes.scheduled_event_id)
        return self.actor_of_queue(scheduled.attributes.task_queue.name) if scheduled else ""

    def _timer(self, fired: Event) -> str:
        started = self.history.event(fired.attributes.started_event_id)
        return (started.summary if started else None) or ""

    def _causes_found(self) -> list[AuditCheck]:
        missing = [f"{t.stage.value} ({t.actor}): {why}" for t in self.rec.transitions if (why := self._cause(t))]
        missing += [f"{t.stage.value}: never published (no ReviewStage upsert)" for t in self.unpublished]
        detail = "; ".join(missing) or f"{len(self.rec.transitions)} stage changes, each with its cause"
        return _check("every stage change has its cause in the history", not missing, detail)

    def _standards_answered(self) -> list[AuditCheck]:
        rec = self.rec
        if Stage.AWAITING_DETERMINATION not in {t.stage for t in rec.transitions}:
            return []
        missing = [a.value for a in STANDARDS_BODIES if a not in {v.agency for v in rec.standards}]
        detail = f"missing: {', '.join(missing)}" if missing else f"{len(rec.standards)} verdicts"
        return _check("every standards body answered or was recorded as silent", not missing, detail)

    def _determined_at(self) -> datetime | None:
        d = self.rec.determination
        return next((m.at for m in self.rec.applied if d and m.message_id == d.message_id), None)

    def _determination_checks(self) -> list[AuditCheck]:
        rec, d = self.rec, self.rec.determination
        if d is None:
            return []
        name, deadline = "the determination came from the NSA by its deadline", rec.determination_deadline
        if rec.determination_by_default:
            # A default is not the NSA's decision: this check fails for it, and says so; a second
            # check holds the default to its own rule (it applied only once the deadline had passed).
            fired = any(e.type == "TIMER_FIRED" and self._timer(e) == _TIMERS["policy"] for e in self.history.events)
            default = "covered" if d.covered else "not covered"
            checks = _check(name, False, f"no: {self._silence()}; the policy's default ({default}) applied instead")
            checks += _check(
                "the policy's default applied only when the NSA's deadline had passed", fired,
                f"deadline {_iso(deadline)}; the deadline timer {'' if fired else 'never '}fired",
            )  # fmt: skip
        else:
            at = self._determined_at()
            ok = d.sender == Agency.NSA.value and at is not None and (deadline is None or at <= deadline)
            checks = _check(name, ok, f"by {d.sender} at {_iso(at)}, deadline {_iso(deadline)}")
        said = next((e.search_attributes["DeterminedBy"] for e in reversed(self.history.events)
                     if "DeterminedBy" in e.search_attributes), None)  # fmt: skip
        by = "policy" if said == DETERMINED_BY_DEFAULT else said
        detail = f"DeterminedBy={said}; the record shows {d.sender}"
        return checks + (_check("the DeterminedBy search attribute names who decided", by == d.sender, detail)
                         if said is not None else [])  # fmt: skip

    def _silence(self) -> str:
        """Silence is the NSA's only if it was briefed: a briefing its worker never took is not."""
        return "the NSA was silent" if self.rec.nsa_briefed else "the briefing never reached the NSA"

    def _participants_only(self) -> list[AuditCheck]:
        rec = self.rec
        if not (rec.participating_agencies or rec.findings or rec.conclusions):
            return []
        outsiders = sorted({m.sender for m in [*rec.findings, *rec.conclusions]} - set(rec.participating_agencies))
        detail = f"from non-participants: {', '.join(outsiders)}" if outsiders else "participants: " + ", ".join(
            rec.participating_agencies)  # fmt: skip
        return _check("findings and conclusions came only from participating agencies", not outsiders, detail)

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
        return _check(
            "the review window kept to the policy and the order's 30-day cap", length <= allowed + CLOCK_ROUNDING,
            f"window of {describe(length)} (policy {describe(allowed)})",
        )  # fmt: skip

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
        return _check(
            "the release was not held past what the policy allows", releasing.at - limit <= SAME_MOMENT,
            f"release began {_iso(releasing.at)}; {what} {_iso(limit)}",
        )  # fmt: skip

    def _findings_delivered(self) -> list[AuditCheck]:
        rec = self.rec
        vulnerabilities = [f.message_id for f in rec.findings if f.kind == "vulnerability"]
        if not vulnerabilities:
            return []
        forwards = {f.finding_id: f for f in rec.forwards}
        missing = [
            f"{i}: " + (f"{f.status} ({f.reason})" if (f := forwards.get(i)) else "never forwarded")
            for i in vulnerabilities if getattr(forwards.get(i), "status", "") != "delivered"
        ]  # fmt: skip
        detail = "; ".join(missing) or f"{len(vulnerabilities)} delivered: cases {', '.join(rec.cases)}"
        return _check("every vulnerability finding reached Treasury's clearinghouse", not missing, detail)

    def _grants_once(self) -> list[AuditCheck]:
        granted = self.rec.partners_granted
        grants = [e for e in self.completed if e.name == r.GRANT_ACCESS and e.ref not in self.rec.unverified_by]
        return _check(
            "each partner was granted access at most once", len(grants) == len(set(granted)) == len(granted),
            f"{len(granted)} grants, {len(self.rec.partners_skipped)} not granted",
        )  # fmt: skip

    def _ledger_agrees(self) -> list[AuditCheck]:
        """The ledger (outside the history) holds no grant by this run, or a run it was reset from,
        that the record does not show: a reset erases the events of a release, never its grants.
        Only where the ledger is (the review office's host)."""
        ledger = getattr(self, "ledger", None)
        if ledger is None:
            return []
        shown, runs = set(self.rec.partners_granted), _runs(self.history)
        ours = [g for g in ledger if g.run_id in runs]
        partners = [g.partner_id for g in ledger]
        problems = [f"{g.partner_id} (grant {g.grant_id}, run {g.run_id})" for g in ours if g.partner_id not in shown]
        problems += [f"{p} granted more than once" for p in sorted({p for p in partners if partners.count(p) > 1})]
        others = len(ledger) - len(ours)
        elsewhere = f"; {others} by other runs of this review" if others else ""
        detail = "; ".join(problems) or f"{len(ours)} grants by this run in the ledger, each in the record{elsewhere}"
        return _check("the ledger holds no grant for this review that the record does not show", not problems, detail)

    def _own_log_matches(self) -> list[AuditCheck]:
        published = [(t.stage.value, self.history.event(e).workflow_time) for e, ts in self.stage_events.items()
                     for t in ts if t.stage != Stage.DISCLOSED]  # fmt: skip
        logged = [(t.stage.value, t.at) for t in self.rec.transitions if t.stage != Stage.DISCLOSED]
        same = len(logged) == len(published) and all(
            a[0] == b[0] and abs(a[1] - b[1]) <= CLOCK_ROUNDING for a, b in zip(logged, published, strict=True)
        )
        detail = f"{len(self.rec.transitions)} transitions" if same else f"history {published} vs record {logged}"
        return _check("the review's own transition log matches its history", same, detail)

    def markdown(self, trail: AuditTrail) -> list[str]:
        rec = trail.record
        if not isinstance(rec, ReviewRecord):
            return []
        return [
            *fields_table("Review", _AsShown(rec), SUMMARY),
            *entries_table("Transitions", rec.transitions, ["at", "stage", "actor", "reason"]),
            *entries_table("Standards verdicts", rec.standards, ["agency", "verdict", "standard_version", "rationale"]),
            *entries_table("Determination", [d for d in [rec.determination] if d], ["covered", "agencies", "sender",
                                                                                   "rationale"]),
            *entries_table("Messages applied", rec.messages, ["at", "update", "sender", "sent_from", "signature"]),
            *entries_table("Findings", rec.findings, ["sender", "kind", "severity", "summary"]),
            *entries_table("Findings to Treasury's clearinghouse", rec.forwards, list(Forward.model_fields)),
            *entries_table("Conclusions", rec.conclusions, ["sender", "summary"]),
            *entries_table("Release to trusted partners", rec.releases, list(PartnerRelease.model_fields)),
            *entries_table("Key reloads", rec.key_refreshes, ["at", "asked_for", "changed", "reason"]),
        ]  # fmt: skip


class _AsShown:
    """The record as the Review table shows it: a run ended from outside shows how it ended as its
    stage (never the stage it was cut short at, as if it stood there)."""

    def __init__(self, rec: ReviewRecord) -> None:
        self._rec = rec

    def __getattr__(self, name: str) -> Any:
        if name == "stage" and self._rec.ended:
            return f"{self._rec.ended} (cut short at {self._rec.stage.value})"
        return getattr(self._rec, name)


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "—"
