"""How a `VulnerabilityCase` history reads as an audit record.

The case writes its own record, its `CaseState` (domain/case.py): each status change with its actor
and reason, each notice, each message applied. It hands that state over in its history: as each
update's result, as its own result, as the input of its next run; a continued run starts with it.
The audit reads the last state the case wrote, and holds it to the rest of the history: its status
changes against the `CaseStatus` upserts, the notices against the notice activities that
completed, the disclosure against the embargo deadline, each applied message's signature against
the keyring the case loaded (Treasury's signed keyring, verified again here; one that does not
verify was not used by the case either, and shows as NOT BELIEVED). A run that ended without
handing its state over (open, terminated, failed, reset) is replayed with the case's own code to
read its state where the history ends (audit/replay.py); a history that code would not have
written fails that check. Without a replay (a history read directly), status changes after the
last state it wrote come from the upserts alone, and say so.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, RootModel, ValidationError, field_serializer

from api.reviews import reader_anchors
from audit.history import DecodedHistory, Event
from audit.replay import _runs, replayed
from audit.trail import AuditCheck, AuditEntry, Interpreter, register
from domain import attestation
from domain.attestation import Unverifiable
from domain.case import (
    CaseInput,
    CaseState,
    CaseTransition,
    ExploitationObserved,
    ExtensionRequest,
    FixReady,
    NoticeReceipt,
    PatchDeployed,
    Triage,
    Validation,
    triage_of,
    validation_of,
)
from domain.clearinghouse import (
    ATTESTED_KEYRING,
    CASE_WORKFLOW,
    CLEARINGHOUSE_ID,
    DISTRIBUTE_PATCH,
    EXPLOITATION_OBSERVED,
    FIX_READY,
    LINK_REPORT,
    LOAD_PUBLIC_KEYS,
    NOTIFY_OPERATORS,
    NOTIFY_VENDOR,
    PATCH_DEPLOYED,
    PUBLISH_ADVISORY,
    REPORT_VULNERABILITY,
    REQUEST_EXTENSION,
    TRIAGE_CASE,
    VALIDATE_REPORT,
    VulnerabilityIntake,
)
from domain.policy import describe
from domain.signatures import signature_problem
from domain.vulnerability import TREASURY, party_sector

NOTICE_ACTIVITIES = (NOTIFY_VENDOR, NOTIFY_OPERATORS, DISTRIBUTE_PATCH, PUBLISH_ADVISORY)
MESSAGES = {FIX_READY: FixReady, PATCH_DEPLOYED: PatchDeployed, EXPLOITATION_OBSERVED: ExploitationObserved,
            REQUEST_EXTENSION: ExtensionRequest}  # fmt: skip
# A status is upserted in the workflow task after the event that caused it.
SAME_MOMENT = timedelta(seconds=5)
HANDED_OVER = ("WORKFLOW_EXECUTION_COMPLETED", "WORKFLOW_EXECUTION_CONTINUED_AS_NEW")
AFTER_RECORD = "(made after the last state the case wrote into this history: its reason is in the next one)"


class NoticeSent(BaseModel):
    kind: str
    recipient: str
    at: datetime
    run: str = "this run"
    already_sent: bool = False  # the outbox found it sent by an earlier attempt: not sent twice


class CaseRecord(BaseModel):
    case_id: str
    reporter: str  # the opening report's (verified) sender
    found_by: str = ""  # who found it, when relayed (an agency)
    reviews: list[str] = Field(default_factory=list)  # the model reviews whose findings opened or joined it
    vendor: str = ""
    status: str | None = None  # the last status this history shows
    state: CaseState | None = None  # the case's own record: the last state it wrote into this history
    read_from: str = ""  # where in the history that state is
    status_changes: list[CaseTransition] = Field(default_factory=list)
    notices: list[NoticeSent] = Field(default_factory=list)
    embargo_deadline: datetime | None = None
    disclosed_at: datetime | None = None
    continued_from: str | None = None

    @field_serializer("state")
    def _without_signatures(self, state: CaseState | None) -> dict[str, Any] | None:
        """The state as the case wrote it, less the messages' base64 signatures (re-verified by a check)."""
        unsigned = {"signature": True}
        exclude = {"fix": unsigned, "exploitation": {"__all__": unsigned}, "extensions": {"__all__": unsigned}}
        return state.model_dump(mode="json", exclude=exclude) if state else None


class PublicKeys(RootModel[dict[str, str]]):
    pass


class TreasuryKeys(BaseModel):
    party: str
    result: dict[str, str]


def _model(cls: type[BaseModel], value: Any) -> Any:
    try:
        return cls.model_validate(value)
    except ValidationError:
        return None


def patched(history: DecodedHistory, patch_id: str) -> bool:
    """Whether this run recorded the `workflow.patched` marker `patch_id` (the SDK writes it as plain JSON)."""
    for e in history.events:
        details = e.raw.marker_recorded_event_attributes.details if e.type == "MARKER_RECORDED" else {}
        if "patch-data" in details:
            for payload in details["patch-data"].payloads:
                with suppress(ValueError):
                    if json.loads(payload.data).get("id") == patch_id:
                        return True
    return False


def _first(event: Event) -> Any:
    return event.values[0] if event.values else None


@register
class CaseInterpreter(Interpreter):
    workflow_type = CASE_WORKFLOW
    replayed: CaseState | None = None
    replay_problem: str | None = None  # None: not replayed (the run handed its state over when it ended)

    async def load(self, history: DecodedHistory) -> None:
        """A run that ended without handing its state over (open, terminated, failed, reset): its state
        where the history ends, replayed with the case's own code (audit/replay.py)."""
        if history.closed is None or history.closed.type not in HANDED_OVER:
            from workflows.vulnerability_case import VulnerabilityCase

            if not attestation.pinned() and (anchors := reader_anchors()):
                attestation.pin(anchors)  # the replay believes Treasury's keyring as the case's worker did
            case, self.replay_problem = await replayed(history, VulnerabilityCase)
            self.replayed = case.state if case is not None else None

    def prepare(self, history: DecodedHistory) -> None:
        started = history.events[0]
        case = _model(CaseInput, _first(started))
        intake: VulnerabilityIntake | None = case.intake if case else None
        self.intake, self.report = intake, intake.report if intake else None
        self.assessed: list[Event] = []  # Treasury's validation and triage, as completed
        self.rec = CaseRecord(
            case_id=case.case_id if case else history.workflow_id,
            reporter=intake.sender if intake else "",
            found_by=intake.found_by if intake else "",
            vendor=intake.report.vendor if intake else "",
        )
        # A carried state counts only when it names the run this one continues (as the case itself
        # checks): anyone can start a case with a state of their own.
        continued = started.attributes.continued_execution_run_id
        if case and case.carried and continued and case.carried_from == continued:
            self.rec.continued_from, self.rec.state, self.rec.read_from = continued, case.carried, "its start input"
        self.carried = self.rec.state
        self.upserted: list[tuple[str, Event]] = []
        self.deadlines: list[tuple[datetime, datetime]] = []  # (when upserted, deadline)
        self.deployed: list[tuple[datetime, str]] = []  # (when accepted, sender)
        self.keyring: dict[str, str] = {}
        self.first_keyring: dict[str, str] | None = None  # the one the case checked its report with
        self.unverified: list[str] = []
        self.not_believed: dict[int, str] = {}  # keyring loads not signed by Treasury: event id -> why
        self.attested_keys = patched(history, ATTESTED_KEYRING)
        for e in history.events:
            reader = self._readers.get(e.type)
            if reader:
                reader(self, e)
        if self.replayed is not None:
            self.rec.state, self.rec.read_from = self.replayed, "its state where the history ends (replayed)"
        self._close_record(history)

    # -- one reader per event type the record needs

    def _upsert(self, e: Event) -> None:
        attrs = e.search_attributes
        if "CaseStatus" in attrs:
            self.upserted.append((str(attrs["CaseStatus"]), e))
        if attrs.get("EmbargoDeadline"):
            self.deadlines.append((e.workflow_time, attrs["EmbargoDeadline"]))

    def _local_completed(self, e: Event) -> None:
        if e.completes_activity:  # Treasury's desk answering as a local activity (not a patch marker)
            self._completed(e)

    def _completed(self, e: Event) -> None:
        if e.name in (VALIDATE_REPORT, TRIAGE_CASE):
            self.assessed.append(e)
        if e.name == LOAD_PUBLIC_KEYS:
            keyring = self._keyring(e)
            if keyring is not None:
                self.keyring = keyring
                if self.first_keyring is None:
                    self.first_keyring = keyring
        receipt = _model(NoticeReceipt, _first(e)) if e.name in NOTICE_ACTIVITIES else None
        if receipt is not None:
            self.rec.notices.append(
                NoticeSent(
                    kind=receipt.kind.value, recipient=receipt.recipient, at=e.at, already_sent=receipt.already_sent
                )
            )
            if e.name == PUBLISH_ADVISORY:
                self.rec.disclosed_at = e.at

    def _keyring(self, e: Event) -> dict[str, str] | None:
        """The keyring a load brought, if the case would have used it: the first version's plain one
        (believed as it came, as that version did), or Treasury's signed one, verified again here
        against this reader's trust anchors (without any, as recorded)."""
        raw = _first(e)
        if not isinstance(raw, dict):
            return None
        if not self.attested_keys:
            return {str(k): str(v) for k, v in raw.items()}
        anchors = attestation.pinned() or reader_anchors()
        keyring: Any = raw.get("result")
        if anchors:
            first, *others = sorted(_runs(self.history)) or [""]
            try:
                keyring = attestation.verify(raw, party=TREASURY, workflow_id=self.history.workflow_id, run_id=first,
                                             other_runs=others, activity_id=e.ref, anchors=anchors)  # fmt: skip
            except Unverifiable as problem:
                keyring, self.not_believed[e.id] = None, str(problem)
        if not isinstance(keyring, dict):
            return None
        return {str(k): str(v) for k, v in keyring.items()}

    def _accepted(self, e: Event) -> None:
        """A case message: its signature re-verified against the keyring the case had loaded."""
        message = _model(MESSAGES[e.name], _first(e)) if e.name in MESSAGES else None
        if message is None:
            return
        problem = signature_problem(self.keyring, self.history.workflow_id, e.name, message, target="case")
        if problem:
            self.unverified.append(f"event {e.id} ({e.name}): {problem}")
        if e.name == PATCH_DEPLOYED:
            self.deployed.append((e.at, message.sender))

    def _state(self, e: Event) -> None:
        """The case's own record, wherever it handed it over."""
        value = _first(e)
        if e.type == "WORKFLOW_EXECUTION_CONTINUED_AS_NEW":
            case = _model(CaseInput, value)
            state, where = (case.carried if case else None), "the input of its next run"
        else:
            state = _model(CaseState, value)
            where = f"the result of its {e.name} update" if e.name else "its result"
        if state is not None:
            self.rec.state, self.rec.read_from = state, f"{where} (event {e.id})"

    _readers = {
        "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES": _upsert,
        "ACTIVITY_TASK_COMPLETED": _completed,
        "MARKER_RECORDED": _local_completed,
        "WORKFLOW_EXECUTION_UPDATE_ACCEPTED": _accepted,
        "WORKFLOW_EXECUTION_UPDATE_COMPLETED": _state,
        "WORKFLOW_EXECUTION_COMPLETED": _state,
        "WORKFLOW_EXECUTION_CONTINUED_AS_NEW": _state,
    }

    def _close_record(self, history: DecodedHistory) -> None:
        rec, state, carried = self.rec, self.rec.state, self.carried
        recorded = state.transitions if state else []
        rec.status = self.upserted[-1][0] if self.upserted else (recorded[-1].status.value if recorded else None)
        rec.reviews = state.reviews if state else []
        # This run's status changes as the case recorded them, then those it made after its last record.
        self.this_run = recorded[len(carried.transitions) if carried else 0 :]
        later = [
            CaseTransition.model_validate({"status": s, "at": e.workflow_time, "actor": "case", "reason": AFTER_RECORD})
            for s, e in self.upserted[len(self.this_run) :]
        ]
        rec.status_changes = [*recorded, *later]
        self._earlier_runs()

    def _earlier_runs(self) -> None:
        """What the runs before this one recorded (the state it was started with), and the deadline."""
        rec, state, carried = self.rec, self.rec.state, self.carried
        earlier = [n for n in (carried.notices if carried else []) if n.delivered]
        rec.notices[:0] = [
            NoticeSent(kind=n.kind, recipient=n.recipient, at=n.at, run="an earlier run") for n in earlier
        ]
        before = [d for at, d in self.deadlines if rec.disclosed_at is None or at <= rec.disclosed_at]
        rec.embargo_deadline = before[-1] if before else (state.embargo_deadline if state else None)

    # -- the trail

    def record(self) -> CaseRecord:
        return self.rec

    def entries(self, event: Event) -> list[AuditEntry]:
        if event.type == "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES" and "CaseStatus" in event.search_attributes:
            index = next(i for i, (_, e) in enumerate(self.upserted) if e is event)
            said = self.this_run[index] if index < len(self.this_run) else None
            why = f": {said.reason}" if said else f" {AFTER_RECORD}"
            text = f"→ {event.search_attributes['CaseStatus']}{why}"
            return [self._entry(event, "stage", said.actor if said else "case", text, at=event.workflow_time)]
        if event.type == "WORKFLOW_EXECUTION_STARTED":
            r = self.rec
            via = f" (relayed by {r.found_by} from {', '.join(r.reviews)})" if r.reviews else ""
            text = f"case {r.case_id} opened on {r.reporter or '?'}'s report{via}; vendor {r.vendor}"
            return [self._entry(event, "workflow", r.reporter or "?", text, started_by=event.identity)]
        return super().entries(event)

    def describe_message(self, event: Event) -> str:
        """What a message said, in words: never its signature, never a raw record."""
        return _in_words(event) or super().describe_message(event)

    def describe_result(self, event: Event, scheduled: Event | None) -> str:
        if event.id in self.not_believed:
            return f"NOT BELIEVED, completed by {event.identity or 'unknown'}: {self.not_believed[event.id]}"
        return _in_words(event) or super().describe_result(event, scheduled)

    # -- the checks

    def checks(self, record: BaseModel | None) -> list[AuditCheck]:
        rules = (
            self._replays, self._reporter, self._reasons, self._notices_once, self._embargo, self._signatures,
            self._assessed,
        )  # fmt: skip
        return [check for rule in rules if (check := rule())]

    def _replays(self) -> AuditCheck | None:
        if self.replay_problem is None:
            return None
        ok = not self.replay_problem
        detail = "its state where the history ends is the case's own" if ok else self.replay_problem
        return AuditCheck(name="the history replays with the case's own code", ok=ok, detail=detail)

    def _reporter(self) -> AuditCheck:
        r, state = self.rec, self.rec.state
        named = bool(r.reporter) and (not state or not state.reports or state.reports[0].sender == r.reporter)
        detail = (r.reporter or "nobody") + (f", found by {r.found_by}" if r.found_by else "")
        detail += f"; from {', '.join(r.reviews)}" if r.reviews else ""
        return AuditCheck(name="the case names who reported it", ok=named, detail=detail)

    def _reasons(self) -> AuditCheck | None:
        state = self.rec.state
        name = "every status change has its actor and reason, and the case's record matches its history"
        if state is None:
            closed = self.history.closed is not None
            detail = "the case wrote no state into this history" + (" before it ended" if closed else " yet (open run)")
            return AuditCheck(name=name, ok=not closed, detail=detail)
        unexplained = [t.status.value for t in state.transitions if not (t.reason and t.actor)]
        recorded, upserted = [t.status.value for t in self.this_run], [s for s, _ in self.upserted]
        ok = not unexplained and upserted[: len(recorded)] == recorded
        detail = f"{len(state.transitions)} changes, read from {self.rec.read_from}"
        if not ok:
            detail = f"no actor or reason: {unexplained}; recorded {recorded} vs history {upserted}"
        return AuditCheck(name=name, ok=ok, detail=detail)

    def _notices_once(self) -> AuditCheck:
        sent = Counter((n.kind, n.recipient) for n in self.rec.notices if not n.already_sent)
        twice = [f"{k} to {r} ({n} times)" for (k, r), n in sent.items() if n > 1]
        return AuditCheck(
            name="each notice was sent exactly once",
            ok=not twice,
            detail=f"{sum(sent.values())} notices" if not twice else "more than once: " + "; ".join(twice),
        )

    def _embargo(self) -> AuditCheck | None:
        r = self.rec
        if r.disclosed_at is None or r.embargo_deadline is None:
            return None
        early = r.embargo_deadline - r.disclosed_at > SAME_MOMENT
        deployed = self._deployed_before(r.disclosed_at)
        detail = f"disclosed {_iso(r.disclosed_at)}, embargo until {_iso(r.embargo_deadline)}"
        if early:
            detail += f"; early, deployed by: {', '.join(deployed) or 'nobody'}"
        return AuditCheck(
            name="the embargo was kept (disclosed at its end, or earlier only once the patch was deployed everywhere)",
            ok=not early or self._everywhere(deployed),
            detail=detail,
        )

    def _deployed_before(self, when: datetime) -> list[str]:
        """Who reported the patch deployed before `when`: earlier runs (as carried), then this one's messages."""
        earlier = self.carried.deployed_by if self.carried else []
        return [*earlier, *(sender for at, sender in self.deployed if at <= when)]

    def _everywhere(self, deployed: list[str]) -> bool:
        sectors = [party_sector(p) for p in deployed]
        affected = set(self.rec.state.sectors) if self.rec.state else set()
        return None in sectors or (bool(affected) and affected <= set(sectors))

    def _signatures(self) -> AuditCheck | None:
        if not self.keyring and not self.unverified:
            return None
        refused = f"; keyrings not signed by Treasury (not used): {len(self.not_believed)}" if self.not_believed else ""
        return AuditCheck(
            name="every message the case applied is signed by its sender (re-verified with the keyring it loaded)",
            ok=not self.unverified,
            detail=("; ".join(self.unverified) or f"{len(self.keyring)} parties' keys in the history") + refused,
        )

    def _assessed(self) -> AuditCheck | None:
        """Validation and triage are unsigned results (local activities since `case-local-activities`),
        so someone holding the payload key could alter them in an exported history; both are pure
        functions of the report that opened the case, so they are recomputed here. That report is
        believed only with its reporter's signature (as the case checked it, with the keyring it
        loaded first): else the report itself could be doctored, its results to match."""
        if self.report is None or not (self.assessed or (self.rec.state and self.rec.state.triage)):
            return None
        name = "the validation and triage are what the case's report scores (recomputed here)"
        assert self.intake is not None
        signed = signature_problem(
            self.first_keyring or {}, CLEARINGHOUSE_ID, REPORT_VULNERABILITY, self.intake, target="clearinghouse"
        )
        # A continued run's report was checked by the run that opened the case, with that run's
        # keyring: its reporter's key may be gone since (a partner suspended), which is no fault.
        gone = bool(self.rec.continued_from) and self.intake.sender not in (self.first_keyring or {})
        if signed and not gone:
            return AuditCheck(
                name=name, ok=False, detail=f"the report in its start input is not its reporter's: {signed}"
            )
        try:
            validation, triages = validation_of(self.report), self._triages()
        except ValueError as e:
            return AuditCheck(name=name, ok=False, detail=f"the case's report does not score: {e}")
        wrong = [
            f"event {e.id} ({e.name})"
            for e in self.assessed
            if not (
                _model(Validation, _first(e)) == validation
                if e.name == VALIDATE_REPORT
                else _model(Triage, _first(e)) in triages
            )
        ]
        state = self.rec.state
        if state is not None and state.triage is not None and state.triage not in triages:
            wrong.append(f"the case's record ({self.rec.read_from})")
        triage = triages[0]
        detail = f"CVSS {triage.cvss_version} {triage.base_score} ({triage.severity.value})"
        if gone:
            detail += f"; {self.intake.sender} has no key in this run's keyring (the run that opened the case checked)"
        return AuditCheck(name=name, ok=not wrong, detail=detail if not wrong else "differs: " + "; ".join(wrong))

    def _triages(self) -> list[Triage]:
        """What the desk may have made of the case: it triages the case as it stands, so a duplicate
        linked before the triage (its sectors, its exploitation) counts. The score and severity are
        the report's alone; the priority and critical sectors range over the sectors the case took,
        in the order it took them, and its exploitation."""
        assert self.report is not None
        state, first = self.rec.state, list(self.report.sectors)
        sectors = [*first, *(x for x in (state.sectors if state else []) if x not in first)]
        exploited = dict.fromkeys([self.report.exploited, bool(state and state.exploited)])
        return [
            triage_of(self.report.model_copy(update={"sectors": sectors[:k], "exploited": x}))
            for k in range(len(first), len(sectors) + 1)
            for x in exploited
        ]


def _deployed(m: PatchDeployed) -> str:
    sector = party_sector(m.sender)
    return f"deployed by {sector.value + ' operators' if sector else 'everywhere'}" + (f": {m.note}" if m.note else "")


def _sent(r: NoticeReceipt) -> str:
    more = f" and {len(r.recipients)} registered operators" if r.recipients else ""
    return f"sent to {r.recipient}{more}" + (" (already sent: not again)" if r.already_sent else "")


# What each message and activity result of a case says, in words.
WORDS: dict[str, tuple[type[BaseModel], Callable[[Any], str]]] = {
    FIX_READY: (FixReady, lambda m: f"fixed in {', '.join(m.fixed_versions)}"),
    REQUEST_EXTENSION: (ExtensionRequest, lambda m: f"{describe(m.extension)} more: {m.reason}"),
    EXPLOITATION_OBSERVED: (ExploitationObserved, lambda m: m.evidence),
    PATCH_DEPLOYED: (PatchDeployed, _deployed),
    LINK_REPORT: (
        VulnerabilityIntake,
        lambda i: f"a report of it from {i.sender}" + (f" ({i.reference})" if i.reference else ""),
    ),
    VALIDATE_REPORT: (Validation, lambda v: f"{'valid' if v.valid else 'INVALID'}: {v.reason}"),
    TRIAGE_CASE: (Triage, lambda t: f"CVSS {t.cvss_version} {t.base_score} ({t.severity.value})"),
    LOAD_PUBLIC_KEYS: (PublicKeys, lambda k: f"{len(k.root)} parties' public keys"),
    # Signed by Treasury (since `attested-treasury-keyring`): the keyring is its `result`.
    f"{LOAD_PUBLIC_KEYS}:attested": (TreasuryKeys, lambda k: f"{len(k.result)} parties' keys, signed by treasury"),
    **dict.fromkeys(NOTICE_ACTIVITIES, (NoticeReceipt, _sent)),
}


def _in_words(event: Event) -> str | None:
    signed = event.name == LOAD_PUBLIC_KEYS and isinstance(_first(event), dict) and "signature" in _first(event)
    model, words = WORDS.get(f"{event.name}:attested" if signed else event.name, (None, None))
    value = _model(model, _first(event)) if model else None
    return words(value) if words and value is not None else None


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "—"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
