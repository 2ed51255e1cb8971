"""The audit trail: what an auditor reads, rebuilt from a workflow's event history alone.

A trail has a timeline (one line per meaningful event: time, actor, what happened), the
workflow type's own record (for a review: transitions, verdicts, determination, findings,
conclusions, grants) and checks of the rules the record can be held to. `Interpreter`
turns a decoded history into a trail; it knows the events every workflow shares
(activities, timers, updates, signals, search attributes, the close) and a workflow type
refines it (`audit/review.py` for `ModelReview`; a clearinghouse case registers its own).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, SerializeAsAny

from api import server
from audit.history import UNDECODABLE, DecodedHistory, Event, event_type_name
from domain.status import RunRecord

REJECTED_UPDATES_NOTE = (
    "A message that the workflow rejected (wrong party, wrong stage, a replay of an applied "
    "message) never enters the event history: Temporal runs update validators before anything "
    "is written. This trail therefore shows every message that was applied, and no attempt "
    "that was refused; the sender of a refused message got the reason back at the time."
)


class AuditEntry(BaseModel):
    """One line of the timeline."""

    at: datetime
    event_id: int
    kind: str  # workflow, stage, activity, timer, message, visibility
    actor: str
    text: str
    details: dict[str, Any] = Field(default_factory=dict)


class AuditCheck(BaseModel):
    """A rule the history can be held to, and whether it held."""

    name: str
    ok: bool
    detail: str


class AuditTrail(BaseModel):
    workflow_id: str
    run_id: str
    workflow_type: str
    namespace: str
    source: str
    status: str  # RUNNING, COMPLETED, FAILED, TERMINATED, ...
    started_at: datetime
    closed_at: datetime | None
    events: int
    timeline: list[AuditEntry]
    record: SerializeAsAny[BaseModel] | None = None
    checks: list[AuditCheck] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    # Other runs under the same workflow id (a refiled review's earlier runs) and how each ended,
    # from visibility when the trail is read from the server; an exported history cannot know them.
    earlier_runs: list[RunRecord] = Field(default_factory=list)


class Interpreter:
    """Reads any workflow's history. Subclass per workflow type to name actors and build a record."""

    workflow_type = ""
    notes: tuple[str, ...] = (REJECTED_UPDATES_NOTE,)

    def interpret(self, history: DecodedHistory) -> AuditTrail:
        self.history = history
        self.prepare(history)
        timeline: list[AuditEntry] = []
        for event in history.events:
            timeline.extend(self.entries(event))
        record = self.record()
        checks = self.checks(record)
        undecodable = [e.id for e in history.events if e.undecodable]
        checks.append(
            AuditCheck(
                name="every payload decoded",
                ok=not undecodable,
                detail="all payloads decoded with the project's converter"
                if not undecodable
                else f"events {undecodable} could not be decoded (wrong key or converter?)",
            )
        )
        if history.closed is None:
            checks.append(_not_stuck(history))
        closed = history.closed
        return AuditTrail(
            workflow_id=history.workflow_id,
            run_id=history.run_id,
            workflow_type=history.workflow_type,
            namespace=history.namespace,
            source=history.source,
            status=history.status,
            started_at=history.started_at,
            closed_at=closed.at if closed else None,
            events=len(history.events),
            timeline=timeline,
            record=record,
            checks=checks,
            notes=list(self.notes),
        )

    # -- hooks for a workflow type

    def prepare(self, history: DecodedHistory) -> None:
        """Look ahead over the whole history before the timeline is written."""

    def record(self) -> BaseModel | None:
        return None

    def checks(self, record: BaseModel | None) -> list[AuditCheck]:
        return []

    def markdown(self, trail: AuditTrail) -> list[str]:
        """Sections of the Markdown document for this workflow type's record."""
        return []

    def actor_of_queue(self, task_queue: str) -> str:
        return task_queue

    def message_actor(self, event: Event) -> str:
        """Who sent an update or signal: the message's `sender` field when it has one."""
        first = event.values[0] if event.values else None
        if isinstance(first, dict) and first.get("sender"):
            return str(first["sender"])
        return event.identity or "unknown"

    def describe_message(self, event: Event) -> str:
        """An update's or signal's argument, in a line."""
        return _in_a_line(event.values[0] if event.values else None)

    def describe_result(self, event: Event, scheduled: Event | None) -> str:
        return _in_a_line(event.values[0] if event.values else None)

    def visibility_entry(self, event: Event) -> list[AuditEntry]:
        shown = ", ".join(f"{k}={_short(v)}" for k, v in event.search_attributes.items())
        return [self._entry(event, "visibility", "workflow", f"search attributes: {shown}", at=event.workflow_time)]

    def entries(self, event: Event) -> list[AuditEntry]:
        """The event's line (history.py reads each event type once, line included); the hooks above
        name the actors and describe the values of this workflow type."""
        if event.kind is None:
            return []
        if event.kind == "visibility":
            return self.visibility_entry(event)
        actor, text = event.actor, event.text
        if event.queue:
            actor = self.actor_of_queue(event.queue)
        if event.type in ("WORKFLOW_EXECUTION_UPDATE_ACCEPTED", "WORKFLOW_EXECUTION_SIGNALED"):
            actor, detail = self.message_actor(event), self.describe_message(event)
            text = f"{text}: {detail}"
        elif event.completes_activity and (detail := self.describe_result(event, event.origin)):
            text = f"{text}: {detail}"
        at = event.workflow_time if event.on_workflow_clock else event.at
        return [self._entry(event, event.kind, actor, text, at=at, **event.details)]

    @staticmethod
    def _entry(event: Event, kind: str, actor: str, text: str, *, at: datetime | None = None, **details: Any):
        return AuditEntry(
            at=at or event.at, event_id=event.id, kind=kind, actor=actor, text=text, details=_clean(details)
        )


# Never on a timeline: base64 signatures, ids that say nothing to a reader.
UNSHOWN = ("sender", "message_id", "signature", "run_id")


def _in_a_line(value: Any) -> str:
    """A value's plain fields (never a signature, never a nested record: those are the record's)."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items() if k not in UNSHOWN and _plain(v))
    return "" if value is None else _short(value)


def _plain(value: Any) -> bool:
    """A value a line can show as is (not a nested record: those are the record's business)."""
    if isinstance(value, list):
        return all(not isinstance(v, dict | list) for v in value)
    return not isinstance(value, dict)


def _clean(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in details.items() if v not in (None, "", [], {})}


def _short(value: Any, limit: int = 160) -> str:
    if value == UNDECODABLE:
        return value
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


INTERPRETERS: dict[str, type[Interpreter]] = {}


def register(interpreter: type[Interpreter]) -> type[Interpreter]:
    """Make `interpreter` the reader of its workflow type's histories (a class decorator)."""
    INTERPRETERS[interpreter.workflow_type] = interpreter
    return interpreter


def interpreter_for(workflow_type: str) -> Interpreter:
    return INTERPRETERS.get(workflow_type, Interpreter)()


# How a workflow task ends, as `status` reads them from the server (api/server.py), named as events are here.
TASK_ENDINGS = tuple(event_type_name(t) for t in server.TASK_ENDINGS)


def _not_stuck(history: DecodedHistory) -> AuditCheck:
    """An open run whose last workflow task failed (not a reset's mark) is retried by the server,
    failing the same way until its workers are mended: nothing it would do next has happened."""
    name = "the open run is not stuck (its last workflow task did not fail)"
    last = next((e for e in reversed(history.events) if e.type in TASK_ENDINGS), None)
    if last is None or last.type != "WORKFLOW_TASK_FAILED" or last.failure is None:
        return AuditCheck(name=name, ok=True, detail="its last workflow task did not fail")
    detail = f"event {last.id}: {last.text}; the server retries it, failing alike until the workers are mended"
    return AuditCheck(name=name, ok=False, detail=detail)
