"""How a `VulnerabilityCase` history reads as an audit record: who reported it (and from which
reviews), each status change with its reason, each notice, the embargo, and checks of them.

The case writes its own record (status changes with actor and reason, notices) into its result
when it closes, and into the next run's input when it continues as new. That record is *read*
here, and held to the history: its status changes against the `CaseStatus` upserts, its notices
against the notice activities that completed. While a run is open its record is not in the
history yet; the status changes then come from the upserts alone (no reasons), and say so.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter

from audit.history import DecodedHistory, Event
from audit.trail import AuditCheck, AuditEntry, AuditTrail, Interpreter, register
from domain.clearinghouse import (
    CASE_WORKFLOW,
    DISTRIBUTE_PATCH,
    EXPLOITATION_OBSERVED,
    LINK_REPORT,
    NOTIFY_OPERATORS,
    NOTIFY_VENDOR,
    PATCH_DEPLOYED,
    PUBLISH_ADVISORY,
)

NOTICE_ACTIVITIES = (NOTIFY_VENDOR, NOTIFY_OPERATORS, DISTRIBUTE_PATCH, PUBLISH_ADVISORY)
# The upsert of a status is made in the workflow task after the event that caused it.
SAME_MOMENT = timedelta(seconds=5)
_DATETIME = TypeAdapter(datetime)


class StatusChange(BaseModel):
    status: str
    at: datetime
    actor: str = "?"
    reason: str = ""  # empty while the run is open: the case records reasons when it closes or continues


class NoticeSent(BaseModel):
    kind: str
    recipient: str
    at: datetime
    activity_id: str
    already_sent: bool = False  # the outbox found it sent by an earlier attempt: not sent twice
    run: str = "this run"


class CaseRecord(BaseModel):
    case_id: str
    reporter: str  # who sent the report (the signed intake's sender)
    found_by: str = ""  # who found it, when relayed (an agency)
    reported_by_reviews: list[str] = Field(default_factory=list)  # the reviews whose findings opened or joined it
    vendor: str = ""
    status: str | None = None
    status_changes: list[StatusChange] = Field(default_factory=list)
    notices: list[NoticeSent] = Field(default_factory=list)
    embargo_deadline: datetime | None = None
    disclosed_at: datetime | None = None
    disclosure_reason: str = ""
    deployments: int = 0  # patch_deployed messages applied in this run
    exploitation_reports: int = 0
    recorded_by_the_case: bool = False  # the case's own record (result or continue-as-new) was in the history
    continued_from: str | None = None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@register
class CaseInterpreter(Interpreter):
    workflow_type = CASE_WORKFLOW

    def prepare(self, history: DecodedHistory) -> None:
        start = _dict(history.events[0].values[0] if history.events[0].values else None)
        intake = _dict(start.get("intake"))
        carried = _dict(start.get("carried"))
        self.rec = CaseRecord(
            case_id=str(start.get("case_id", history.workflow_id)),
            reporter=str(intake.get("sender", "")),
            found_by=str(intake.get("found_by", "")),
            vendor=str(_dict(intake.get("report")).get("vendor", "")),
            continued_from=start.get("carried_from"),
        )
        references = [str(intake.get("reference", ""))]
        references += [str(r.get("reference", "")) for r in carried.get("reports", []) if isinstance(r, dict)]
        self.own_log: list[dict[str, Any]] = list(carried.get("transitions", []))
        self.rec.notices = [
            NoticeSent(
                kind=str(n.get("kind")),
                recipient=str(n.get("recipient")),
                at=n.get("at"),
                activity_id="",
                run="an earlier run",
            )  # fmt: skip
            for n in carried.get("notices", [])
            if isinstance(n, dict) and n.get("delivered")
        ]
        self.upserted: list[StatusChange] = []
        for e in history.events:
            reader = self._readers.get(e.type)
            if reader:
                references += reader(self, e) or []
        self.rec.reported_by_reviews = sorted({r for r in references if r.startswith("review-")})
        self.rec.status = self.upserted[-1].status if self.upserted else None
        self._read_own_record(history)

    # -- one reader per event type; each returns the report references it found

    def _upsert(self, e: Event) -> None:
        attrs = e.search_attributes
        if "CaseStatus" in attrs:
            self.upserted.append(StatusChange(status=str(attrs["CaseStatus"]), at=e.workflow_time))
        if attrs.get("EmbargoDeadline"):
            self.rec.embargo_deadline = attrs["EmbargoDeadline"]

    def _completed(self, e: Event) -> None:
        if e.name not in NOTICE_ACTIVITIES:
            return
        receipt = _dict(e.values[0] if e.values else None)
        self.rec.notices.append(
            NoticeSent(
                kind=str(receipt.get("kind", "?")),
                recipient=str(receipt.get("recipient", "?")),
                at=e.at,
                activity_id=e.ref,
                already_sent=bool(receipt.get("already_sent")),
            )
        )
        if e.name == PUBLISH_ADVISORY:
            self.rec.disclosed_at = e.at

    def _update(self, e: Event) -> None:
        if e.name == PATCH_DEPLOYED:
            self.rec.deployments += 1
        elif e.name == EXPLOITATION_OBSERVED:
            self.rec.exploitation_reports += 1

    def _signal(self, e: Event) -> list[str]:
        if e.name != LINK_REPORT:
            return []
        return [str(_dict(e.values[0] if e.values else None).get("reference", ""))]

    def _closed(self, e: Event) -> list[str]:
        """The case's own record: its result, or the state it carries into its next run."""
        if e.type == "WORKFLOW_EXECUTION_CONTINUED_AS_NEW":
            return []  # its input is in the next run's history; this run's upserts stand
        record = _dict(e.values[0] if e.values else None)
        self.own_log = list(record.get("transitions", self.own_log))
        self.rec.recorded_by_the_case = bool(record)
        self.rec.disclosure_reason = str(record.get("disclosure_reason") or "")
        return [str(_dict(r).get("reference", "")) for r in record.get("reports", [])]

    _readers = {
        "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES": _upsert,
        "ACTIVITY_TASK_COMPLETED": _completed,
        "WORKFLOW_EXECUTION_UPDATE_ACCEPTED": _update,
        "WORKFLOW_EXECUTION_SIGNALED": _signal,
        "WORKFLOW_EXECUTION_COMPLETED": _closed,
    }

    def _read_own_record(self, history: DecodedHistory) -> None:
        if self.rec.recorded_by_the_case or (self.own_log and self.rec.continued_from):
            self.rec.status_changes = [
                StatusChange(
                    status=str(t.get("status")),
                    at=_DATETIME.validate_python(t["at"]),
                    actor=str(t.get("actor", "?")),
                    reason=str(t.get("reason", "")),
                )  # fmt: skip
                for t in map(_dict, self.own_log)
                if t.get("at")
            ]
            if self.rec.continued_from and not self.rec.recorded_by_the_case:
                self.rec.status_changes += [u for u in self.upserted if u.at > history.started_at - SAME_MOMENT]
        else:
            self.rec.status_changes = list(self.upserted)

    # -- the trail

    def record(self) -> CaseRecord:
        return self.rec

    def entries(self, event: Event) -> list[AuditEntry]:
        if event.type == "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES" and "CaseStatus" in event.search_attributes:
            status = event.search_attributes["CaseStatus"]
            said = next((c for c in self.rec.status_changes if c.status == status and c.reason), None)
            why = f": {said.reason}" if said else ""
            return [self._entry(event, "stage", said.actor if said else "case", f"→ {status}{why}",
                                at=event.workflow_time)]  # fmt: skip
        if event.type == "WORKFLOW_EXECUTION_STARTED":
            r = self.rec
            via = f" (relayed by {r.found_by} from {', '.join(r.reported_by_reviews)})" if r.reported_by_reviews else ""
            return [self._entry(event, "workflow", r.reporter or "?", f"case {r.case_id} opened on {r.reporter}'s "
                                f"report{via}; vendor {r.vendor}", started_by=event.identity)]  # fmt: skip
        return super().entries(event)

    def checks(self, record: BaseModel | None) -> list[AuditCheck]:
        return [check for check in (self._reporter(), self._reasons(), self._notices_once(), self._embargo()) if check]

    def _reporter(self) -> AuditCheck:
        r = self.rec
        return AuditCheck(
            name="the case names who reported it",
            ok=bool(r.reporter),
            detail=f"{r.reporter or 'nobody'}" + (f", found by {r.found_by}" if r.found_by else "")
            + (f"; from {', '.join(r.reported_by_reviews)}" if r.reported_by_reviews else ""),
        )  # fmt: skip

    def _reasons(self) -> AuditCheck | None:
        if not self.rec.recorded_by_the_case:
            return None  # an open run: its reasons are recorded when it closes (see the note)
        logged = [c.status for c in self.rec.status_changes]
        seen = [u.status for u in self.upserted]
        unexplained = [c.status for c in self.rec.status_changes if not c.reason]
        ok = not unexplained and logged[-len(seen) :] == seen if seen else not unexplained
        return AuditCheck(
            name="every status change has a reason, and the case's log matches its history",
            ok=ok,
            detail=f"{len(logged)} changes" if ok else f"no reason: {unexplained}; log {logged} vs history {seen}",
        )

    def _notices_once(self) -> AuditCheck:
        sent = Counter((n.kind, n.recipient) for n in self.rec.notices if not n.already_sent)
        twice = [f"{k} to {r}" for (k, r), n in sent.items() if n > 1]
        return AuditCheck(
            name="each notice was sent exactly once",
            ok=not twice,
            detail=f"{sum(sent.values())} notices" if not twice else "more than once: " + "; ".join(twice),
        )

    def _embargo(self) -> AuditCheck | None:
        r = self.rec
        if r.disclosed_at is None or r.embargo_deadline is None:
            return None
        early = r.embargo_deadline - r.disclosed_at
        on_time = early <= SAME_MOMENT
        deployed = r.deployments > 0 or "patch deployed" in r.disclosure_reason
        return AuditCheck(
            name="the embargo was kept (disclosed at its end, or earlier only once the patch was deployed)",
            ok=on_time or deployed,
            detail=f"disclosed {_iso(r.disclosed_at)}, embargo until {_iso(r.embargo_deadline)}"
            + ("" if on_time else f"; early, after {r.deployments} deployment report(s)"),
        )

    def markdown(self, trail: AuditTrail) -> list[str]:
        r = trail.record
        if not isinstance(r, CaseRecord):
            return []
        out = [
            "## Case", "", "| | |", "| --- | --- |",
            f"| case | `{r.case_id}` |",
            f"| reported by | {r.reporter}" + (f" (found by {r.found_by})" if r.found_by else "") + " |",
            f"| from reviews | {', '.join(f'`{x}`' for x in r.reported_by_reviews) or '—'} |",
            f"| vendor | {r.vendor} |", f"| status | **{r.status or '?'}** |",
            f"| embargo until | {_iso(r.embargo_deadline)} |", f"| disclosed | {_iso(r.disclosed_at)} |",
            "", "## Status changes", "", "| at | status | actor | reason |", "| --- | --- | --- | --- |",
            *(f"| {_iso(c.at)} | {c.status} | {c.actor} | {_cell(c.reason)} |" for c in r.status_changes),
            "", "## Notices", "", "| at | kind | recipient | run |", "| --- | --- | --- | --- |",
            *(f"| {_iso(n.at)} | {n.kind} | {n.recipient} | {n.run} |" for n in r.notices),
        ]  # fmt: skip
        if not r.recorded_by_the_case:
            out += ["", "The case is open: reasons for its status changes are in its record once it closes."]
        return out


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "—"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
