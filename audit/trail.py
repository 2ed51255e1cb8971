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

from audit.history import UNDECODABLE, DecodedHistory, Event, duration
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
        first = event.values[0] if event.values else None
        if isinstance(first, dict):
            shown = {k: v for k, v in first.items() if k not in ("sender", "message_id")}
            return ", ".join(f"{k}={v}" for k, v in shown.items())
        return "" if first is None else str(first)

    def describe_result(self, event: Event, scheduled: Event | None) -> str:
        value = event.values[0] if event.values else None
        return "" if value is None else _short(value)

    def visibility_entry(self, event: Event) -> list[AuditEntry]:
        shown = ", ".join(f"{k}={_short(v)}" for k, v in event.search_attributes.items())
        return [self._entry(event, "visibility", "workflow", f"search attributes: {shown}", at=event.workflow_time)]

    # -- the events every workflow shares

    def entries(self, event: Event) -> list[AuditEntry]:
        h = self.history
        t = event.type
        if t == "WORKFLOW_EXECUTION_STARTED":
            return [self._entry(event, "workflow", event.identity or "client", f"{h.workflow_type} started")]
        if t == "ACTIVITY_TASK_SCHEDULED":
            queue = event.attributes.task_queue.name
            what = event.summary or event.name
            return [
                self._entry(
                    event,
                    "activity",
                    self.actor_of_queue(queue),
                    f"{what}: scheduled on {queue}",
                    at=event.workflow_time,
                    activity=event.name,
                    activity_id=event.ref,
                )
            ]
        if t in (
            "ACTIVITY_TASK_COMPLETED",
            "ACTIVITY_TASK_FAILED",
            "ACTIVITY_TASK_TIMED_OUT",
            "ACTIVITY_TASK_CANCELED",
        ):
            scheduled = h.event(event.attributes.scheduled_event_id)
            queue = scheduled.attributes.task_queue.name if scheduled else ""
            what = (scheduled.summary if scheduled else None) or event.name
            if t == "ACTIVITY_TASK_COMPLETED":
                text = f"{what}: completed" + (f": {r}" if (r := self.describe_result(event, scheduled)) else "")
            elif t == "ACTIVITY_TASK_CANCELED":
                text = f"{what}: cancelled"
            else:
                text = f"{what}: {'timed out' if t.endswith('TIMED_OUT') else 'failed'}: {event.failure}"
            return [self._entry(event, "activity", self.actor_of_queue(queue), text, activity_id=event.ref)]
        if t == "TIMER_STARTED":
            length = duration(event.attributes.start_to_fire_timeout)
            fires = event.workflow_time + length
            what = event.summary or f"timer {event.ref}"
            return [
                self._entry(
                    event,
                    "timer",
                    "workflow",
                    f"{what}: started, fires {fires.isoformat(timespec='seconds')}",
                    at=event.workflow_time,
                    fires_at=fires.isoformat(),
                )
            ]
        if t in ("TIMER_FIRED", "TIMER_CANCELED"):
            started = h.event(event.attributes.started_event_id)
            what = (started.summary if started else None) or f"timer {event.ref}"
            if t == "TIMER_FIRED":
                return [self._entry(event, "timer", "clock", f"{what}: fired")]
            return [self._entry(event, "timer", "workflow", f"{what}: cancelled (what it waited for came first)")]
        if t == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED":
            return [
                self._entry(
                    event,
                    "message",
                    self.message_actor(event),
                    f"{event.name}: {self.describe_message(event)}",
                    update_id=event.ref,
                    sent_from=event.identity,
                )
            ]
        if t == "WORKFLOW_EXECUTION_UPDATE_COMPLETED" and event.failure:
            return [self._entry(event, "message", "workflow", f"{event.name}: handler failed: {event.failure}")]
        if t == "WORKFLOW_EXECUTION_SIGNALED":
            return [
                self._entry(
                    event, "message", self.message_actor(event), f"signal {event.name}: {self.describe_message(event)}"
                )
            ]
        if t == "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES":
            return self.visibility_entry(event)
        if t == "WORKFLOW_EXECUTION_COMPLETED":
            return [self._entry(event, "workflow", "workflow", "completed")]
        if t in ("WORKFLOW_EXECUTION_FAILED", "WORKFLOW_EXECUTION_TERMINATED"):
            verb = "failed" if t.endswith("FAILED") else "terminated"
            return [self._entry(event, "workflow", event.identity or "workflow", f"{verb}: {event.failure}")]
        if t in ("WORKFLOW_EXECUTION_TIMED_OUT", "WORKFLOW_EXECUTION_CANCELED", "WORKFLOW_EXECUTION_CONTINUED_AS_NEW"):
            return [self._entry(event, "workflow", "workflow", t.removeprefix("WORKFLOW_EXECUTION_").lower())]
        return []

    @staticmethod
    def _entry(event: Event, kind: str, actor: str, text: str, *, at: datetime | None = None, **details: Any):
        return AuditEntry(
            at=at or event.at, event_id=event.id, kind=kind, actor=actor, text=text, details=_clean(details)
        )


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
