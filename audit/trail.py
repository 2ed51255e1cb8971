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
from temporalio.api.enums.v1 import WorkflowTaskFailedCause

from audit.history import UNDECODABLE, DecodedHistory, Event, duration
from domain.status import RunRecord

# A reset (`temporal workflow reset`) shows in the new run's history as a failed workflow task.
RESET_CAUSE = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW

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
        writer = self._writers.get(event.type)
        return writer(self, event) if writer else []

    def _started(self, event: Event) -> list[AuditEntry]:
        return [self._entry(event, "workflow", event.identity or "client", f"{self.history.workflow_type} started")]

    def _scheduled(self, event: Event) -> list[AuditEntry]:
        queue = event.attributes.task_queue.name
        return [
            self._entry(
                event, "activity", self.actor_of_queue(queue), f"{event.summary or event.name}: scheduled on {queue}",
                at=event.workflow_time, activity=event.name, activity_id=event.ref,
            )
        ]  # fmt: skip

    def _activity_ended(self, event: Event) -> list[AuditEntry]:
        scheduled = self.history.event(event.attributes.scheduled_event_id)
        queue = scheduled.attributes.task_queue.name if scheduled else ""
        what = (scheduled.summary if scheduled else None) or event.name
        if event.type == "ACTIVITY_TASK_COMPLETED":
            text = f"{what}: completed" + (f": {r}" if (r := self.describe_result(event, scheduled)) else "")
        elif event.type == "ACTIVITY_TASK_CANCELED":
            text = f"{what}: cancelled"
        else:
            text = f"{what}: {'timed out' if event.type.endswith('TIMED_OUT') else 'failed'}: {event.failure}"
        return [self._entry(event, "activity", self.actor_of_queue(queue), text, activity_id=event.ref)]

    def _timer_started(self, event: Event) -> list[AuditEntry]:
        fires = event.workflow_time + duration(event.attributes.start_to_fire_timeout)
        what = event.summary or f"timer {event.ref}"
        text = f"{what}: started, fires {fires.isoformat(timespec='seconds')}"
        return [self._entry(event, "timer", "workflow", text, at=event.workflow_time, fires_at=fires.isoformat())]

    def _timer_ended(self, event: Event) -> list[AuditEntry]:
        started = self.history.event(event.attributes.started_event_id)
        what = (started.summary if started else None) or f"timer {event.ref}"
        if event.type == "TIMER_FIRED":
            return [self._entry(event, "timer", "clock", f"{what}: fired")]
        return [self._entry(event, "timer", "workflow", f"{what}: cancelled (what it waited for came first)")]

    def _update_accepted(self, event: Event) -> list[AuditEntry]:
        text = f"{event.name}: {self.describe_message(event)}"
        actor = self.message_actor(event)
        return [self._entry(event, "message", actor, text, update_id=event.ref, sent_from=event.identity)]

    def _update_completed(self, event: Event) -> list[AuditEntry]:
        if not event.failure:
            return []
        return [self._entry(event, "message", "workflow", f"{event.name}: handler failed: {event.failure}")]

    def _signaled(self, event: Event) -> list[AuditEntry]:
        text = f"signal {event.name}: {self.describe_message(event)}"
        return [self._entry(event, "message", self.message_actor(event), text)]

    def _closed(self, event: Event) -> list[AuditEntry]:
        verb = event.type.removeprefix("WORKFLOW_EXECUTION_").lower()
        if event.type in ("WORKFLOW_EXECUTION_FAILED", "WORKFLOW_EXECUTION_TERMINATED"):
            return [self._entry(event, "workflow", event.identity or "workflow", f"{verb}: {event.failure}")]
        return [self._entry(event, "workflow", "workflow", verb)]

    def _cancel_requested(self, event: Event) -> list[AuditEntry]:
        why = f": {event.attributes.cause}" if event.attributes.cause else ""
        who = event.attributes.identity or "someone"
        return [self._entry(event, "workflow", who, f"cancel requested (ignored by a review){why}")]

    def _task_failed(self, event: Event) -> list[AuditEntry]:
        """Only a reset shows: `temporal workflow reset` marks its point with a failed workflow task."""
        attrs = event.attributes
        if attrs.cause != RESET_CAUSE:
            return []
        text = f"history RESET to this point (new run {attrs.new_run_id}): {attrs.failure.message}"
        return [self._entry(event, "workflow", attrs.identity or "someone", text)]

    # Which events make a line of the timeline, and how; the rest (workflow tasks, markers) make none.
    _writers = {
        "WORKFLOW_EXECUTION_CANCEL_REQUESTED": _cancel_requested,
        "WORKFLOW_TASK_FAILED": _task_failed,
        "WORKFLOW_EXECUTION_STARTED": _started,
        "ACTIVITY_TASK_SCHEDULED": _scheduled,
        **dict.fromkeys(
            ("ACTIVITY_TASK_COMPLETED", "ACTIVITY_TASK_FAILED", "ACTIVITY_TASK_TIMED_OUT", "ACTIVITY_TASK_CANCELED"),
            _activity_ended,
        ),
        "TIMER_STARTED": _timer_started,
        "TIMER_FIRED": _timer_ended,
        "TIMER_CANCELED": _timer_ended,
        "WORKFLOW_EXECUTION_UPDATE_ACCEPTED": _update_accepted,
        "WORKFLOW_EXECUTION_UPDATE_COMPLETED": _update_completed,
        "WORKFLOW_EXECUTION_SIGNALED": _signaled,
        "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES": lambda self, event: self.visibility_entry(event),
        **dict.fromkeys(
            (
                "WORKFLOW_EXECUTION_COMPLETED",
                "WORKFLOW_EXECUTION_FAILED",
                "WORKFLOW_EXECUTION_TERMINATED",
                "WORKFLOW_EXECUTION_TIMED_OUT",
                "WORKFLOW_EXECUTION_CANCELED",
                "WORKFLOW_EXECUTION_CONTINUED_AS_NEW",
            ),
            _closed,
        ),  # fmt: skip
    }

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
