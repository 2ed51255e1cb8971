"""A workflow's event history, decoded with the project's converter: the raw record an audit reads.

Every payload (workflow input and result, activity inputs and results, update arguments,
summaries, failures) goes through `infra.connection.data_converter()`, so whatever codec
that converter carries (encryption) is undone here exactly as a worker would. Values are
decoded without type hints, as plain JSON values: an audit must read histories written by
older versions of the contracts, so interpreters pick fields out rather than validate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    WorkflowSerializationContext,
    decode_typed_search_attributes,
)

from api.server import printable, task_failure_cause
from domain.attestation import is_refused
from domain.inputs import Refused, decode_utf8, read_file

UNDECODABLE = "<undecodable>"
# A reset (`temporal workflow reset`) shows in the new run's history as a failed workflow task.
# The marker the SDK records for a local activity (its result lives in the marker, not in task events).
LOCAL_ACTIVITY = "core_local_activity"
RESET_CAUSE = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW
# Temporal's own cap on a history is 50 MB; an export in JSON is larger than the wire form.
MAX_HISTORY_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Event:
    """One history event with its payloads decoded and what it says on a timeline."""

    id: int
    type: str  # e.g. "ACTIVITY_TASK_COMPLETED" (the EventType name without its prefix)
    at: datetime  # when the server recorded the event
    workflow_time: datetime  # what workflow.now() read when the workflow made this command
    raw: HistoryEvent
    values: list[Any] = field(default_factory=list)  # input, result or update arguments
    summary: str | None = None  # the user metadata summary (activities, timers), or its origin's
    failure: str | None = None  # a failure's message, decoded
    search_attributes: dict[str, Any] = field(default_factory=dict)
    name: str = ""  # activity type, update name, signal name, timer id
    ref: str = ""  # activity id, update id, timer id
    identity: str = ""  # the client or worker that caused the event, when recorded
    undecodable: bool = False
    problem: str = ""  # why a payload of this event could not be read (the codec's refusal)
    origin: Event | None = None  # the event this one ends (an activity's or timer's start, an accepted update)
    queue: str = ""  # an activity's task queue
    # Its line on a timeline (no kind: none): the category, who acted, what happened, and when.
    kind: str | None = None
    actor: str = ""
    text: str = ""
    on_workflow_clock: bool = False  # shown at the workflow time that made the command
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def attributes(self) -> Any:
        return getattr(self.raw, self.raw.WhichOneof("attributes"))

    @property
    def completes_activity(self) -> bool:
        """An activity's result: a completed activity task, or the marker of a local activity that
        returned one (the review office's own answers run as local activities)."""
        if self.type == "ACTIVITY_TASK_COMPLETED":
            return True
        return self.type == "MARKER_RECORDED" and self.attributes.marker_name == LOCAL_ACTIVITY and bool(self.values)


@dataclass
class DecodedHistory:
    workflow_id: str
    run_id: str
    workflow_type: str
    namespace: str
    source: str
    events: list[Event]

    def __post_init__(self) -> None:
        self._by_id = {e.id: e for e in self.events}

    def event(self, event_id: int) -> Event | None:
        return self._by_id.get(event_id)

    @property
    def started_at(self) -> datetime:
        return self.events[0].at

    @property
    def closed(self) -> Event | None:
        last = self.events[-1]
        return last if last.type.startswith("WORKFLOW_EXECUTION_") and last.type in CLOSE_TYPES else None

    @property
    def status(self) -> str:
        closed = self.closed
        return CLOSE_TYPES[closed.type] if closed else "RUNNING"


CLOSE_TYPES = {
    "WORKFLOW_EXECUTION_COMPLETED": "COMPLETED",
    "WORKFLOW_EXECUTION_FAILED": "FAILED",
    "WORKFLOW_EXECUTION_TIMED_OUT": "TIMED_OUT",
    "WORKFLOW_EXECUTION_CANCELED": "CANCELED",
    "WORKFLOW_EXECUTION_TERMINATED": "TERMINATED",
    "WORKFLOW_EXECUTION_CONTINUED_AS_NEW": "CONTINUED_AS_NEW",
}


class HistoryFileError(ValueError):
    """An export that is not a workflow history."""


class UndecodableHistory(ValueError):
    """A history this reader cannot decode (wrong payload keys, or a start nobody here sealed):
    an audit refuses it rather than print a plausible trail of failed checks."""


def refuse_undecodable(history: DecodedHistory) -> None:
    """Raise UndecodableHistory unless the workflow's start input was read: without it there is
    no review to hold the rest to, and with the wrong keys every payload reads as refused."""
    start = history.events[0]
    if start.undecodable:
        unread = sum(1 for e in history.events if e.undecodable)
        raise UndecodableHistory(
            f"cannot decode the history of {history.workflow_id}: its start input is unreadable "
            f"({start.problem or 'not decodable'}); {unread} of {len(history.events)} events could not be read. "
            "Wrong payload keys? (FRONTIER_REVIEW_KEYS_DIR / FRONTIER_REVIEW_PAYLOAD_KEYS)"
        )


async def fetch(client: Client, workflow_id: str, run_id: str | None = None) -> WorkflowHistory:
    """The history of a workflow (the latest run unless `run_id`), from the server."""
    return await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()


def load_export(path: Path, workflow_id: str | None = None) -> WorkflowHistory:
    """A history exported with `temporal workflow show --output json` (or the Web UI's download)."""
    try:
        text = decode_utf8(read_file(path, max_bytes=MAX_HISTORY_BYTES), str(path))
        data = json.loads(text)
    except Refused as e:  # missing, a directory, unreadable, too large, not UTF-8
        raise HistoryFileError(str(e)) from None
    except json.JSONDecodeError as e:
        raise HistoryFileError(f"{path}: malformed JSON at line {e.lineno}: {e.msg}") from None
    except RecursionError:
        raise HistoryFileError(f"{path}: not a workflow history (nested too deeply)") from None
    if not isinstance(data, dict) or not data.get("events"):
        raise HistoryFileError(f"{path}: not a workflow history (no `events`)")
    try:
        history = WorkflowHistory.from_json(workflow_id or "", data)
    except Exception as e:  # protobuf's ParseError and friends: name the file, one line
        raise HistoryFileError(f"{path}: not a workflow history: {e}") from None
    first = history.events[0]
    if not first.HasField("workflow_execution_started_event_attributes"):
        raise HistoryFileError(f"{path}: the history does not begin with the workflow's start")
    if not workflow_id:
        recorded = first.workflow_execution_started_event_attributes.workflow_id
        history = WorkflowHistory(recorded or Path(path).stem, history.events)
    return history


async def decode(
    history: WorkflowHistory, converter: DataConverter, *, namespace: str = "default", source: str = ""
) -> DecodedHistory:
    """Every event of `history`, its payloads decoded with `converter` (codec included)."""
    started = history.events[0].workflow_execution_started_event_attributes
    reader = _EventReader(converter, namespace, history.workflow_id, started.workflow_type.name)
    events: list[Event] = []
    workflow_time = history.events[0].event_time.ToDatetime(tzinfo=UTC)
    for raw in history.events:
        type_ = event_type_name(raw.event_type)
        at = raw.event_time.ToDatetime(tzinfo=UTC)
        if type_ == "WORKFLOW_TASK_STARTED":
            workflow_time = at
        failures_before = reader.tally.undecodable
        reader.tally.problem, reader.workflow_time = "", workflow_time
        fields = await reader.fields(type_, raw)
        event = Event(
            id=raw.event_id,
            type=type_,
            at=at,
            workflow_time=workflow_time,
            raw=raw,
            undecodable=reader.tally.undecodable != failures_before,
            problem=reader.tally.problem,
            **fields,
        )
        reader.by_id[event.id] = event
        if type_ == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED":
            reader.accepted[event.ref] = event
        events.append(event)
    return DecodedHistory(
        workflow_id=history.workflow_id,
        run_id=_this_run(history),
        workflow_type=started.workflow_type.name,
        namespace=namespace,
        source=source,
        events=events,
    )


def _this_run(history: WorkflowHistory) -> str:
    """The run whose events these are. `WorkflowHistory.run_id` is the start event's original run: a
    reset run's history begins with its original's start, and names itself at its (last) reset."""
    failed = [
        e.workflow_task_failed_event_attributes
        for e in history.events
        if e.HasField("workflow_task_failed_event_attributes")
    ]
    resets = [attrs.new_run_id for attrs in failed if attrs.cause == RESET_CAUSE]
    return next((r for r in reversed(resets) if r), history.run_id)


def event_type_name(event_type: int) -> str:
    """An event's type as an `Event` names it (`WORKFLOW_TASK_FAILED`)."""
    return EventType.Name(event_type).removeprefix("EVENT_TYPE_")


class _EventReader:
    """One reader per event type: the event's payloads decoded in the serialization context they
    were written in, the event it ends, and its line on a timeline (the one table of event types)."""

    def __init__(self, converter: DataConverter, namespace: str, workflow_id: str, workflow_type: str) -> None:
        self.converter, self.namespace, self.workflow_id, self.workflow_type = (
            converter, namespace, workflow_id, workflow_type,
        )  # fmt: skip
        self.tally = _Tally()
        self.decoder = _Decoder(
            converter.with_context(WorkflowSerializationContext(namespace, workflow_id)), self.tally
        )
        self.by_id: dict[int, Event] = {}
        self.accepted: dict[str, Event] = {}  # accepted updates by update id
        self.task_queue = ""  # the workflow's own, from its start
        self.summary: str | None = None  # the summary of the event being read
        self.workflow_time = datetime.now(UTC)  # the workflow's clock at the event being read

    async def fields(self, type_: str, raw: HistoryEvent) -> dict[str, Any]:
        attrs = getattr(raw, raw.WhichOneof("attributes")) if raw.WhichOneof("attributes") else None
        fields: dict[str, Any] = {}
        self.summary = None
        if raw.HasField("user_metadata") and raw.user_metadata.HasField("summary"):
            fields["summary"] = self.summary = await self.decoder.one(raw.user_metadata.summary)
        read = self._readers.get(type_)
        if read is not None:
            fields.update(await read(self, attrs, type_))
        return fields

    def _activity(self, scheduled: Any) -> _Decoder:
        return self._activity_decoder(scheduled.activity_id, scheduled.activity_type.name, scheduled.task_queue.name)

    def _activity_decoder(self, activity_id: str, activity_type: str, queue: str, local: bool = False) -> _Decoder:
        context = ActivitySerializationContext(
            namespace=self.namespace,
            activity_id=activity_id,
            activity_type=activity_type,
            activity_task_queue=queue,
            workflow_id=self.workflow_id,
            workflow_type=self.workflow_type,
            is_local=local,
        )
        return _Decoder(self.converter.with_context(context), self.tally)

    async def _started(self, attrs: Any, _: str) -> dict[str, Any]:
        self.task_queue = attrs.task_queue.name  # where its local activities ran too
        return {
            "values": await self.decoder.many(attrs.input.payloads), "identity": attrs.identity,
            "kind": "workflow", "actor": attrs.identity or "client", "text": f"{self.workflow_type} started",
        }  # fmt: skip

    async def _scheduled(self, attrs: Any, _: str) -> dict[str, Any]:
        name, queue = attrs.activity_type.name, attrs.task_queue.name
        return {
            "values": await self._activity(attrs).many(attrs.input.payloads), "name": name,
            "ref": attrs.activity_id, "queue": queue, "kind": "activity",
            "text": f"{self.summary or name}: scheduled on {queue}",
            "on_workflow_clock": True, "details": {"activity": name, "activity_id": attrs.activity_id},
        }  # fmt: skip

    async def _activity_ended(self, attrs: Any, type_: str) -> dict[str, Any]:
        origin = self.by_id.get(attrs.scheduled_event_id)
        what = (origin.summary or origin.name) if origin else "activity"
        fields: dict[str, Any] = {
            "origin": origin, "name": origin.name if origin else "", "ref": origin.ref if origin else "",
            "summary": origin.summary if origin else None, "queue": origin.queue if origin else "",
            "kind": "activity", "details": {"activity_id": origin.ref if origin else ""},
        }  # fmt: skip
        decoder = self._activity(origin.attributes) if origin else self.decoder
        if type_ == "ACTIVITY_TASK_COMPLETED":
            values = await decoder.many(attrs.result.payloads)
            return {**fields, "values": values, "identity": attrs.identity, "text": f"{what}: completed"}
        if type_ == "ACTIVITY_TASK_CANCELED":
            return {**fields, "identity": attrs.identity, "text": f"{what}: cancelled"}
        failure = await decoder.failure(attrs.failure)
        verb = "timed out" if type_.endswith("TIMED_OUT") else "failed"
        return {**fields, "failure": failure, "text": f"{what}: {verb}: {failure}"}

    async def _timer_started(self, attrs: Any, _: str) -> dict[str, Any]:
        fires = self.workflow_time + duration(attrs.start_to_fire_timeout)
        text = f"{self.summary or f'timer {attrs.timer_id}'}: started, fires {fires.isoformat(timespec='seconds')}"
        return {"ref": attrs.timer_id, "kind": "timer", "actor": "workflow", "on_workflow_clock": True, "text": text,
                "details": {"fires_at": fires.isoformat()}}  # fmt: skip

    async def _timer_ended(self, attrs: Any, type_: str) -> dict[str, Any]:
        origin = self.by_id.get(attrs.started_event_id)
        fired, what = type_ == "TIMER_FIRED", (origin and origin.summary) or f"timer {attrs.timer_id}"
        return {
            "ref": attrs.timer_id, "origin": origin, "summary": origin.summary if origin else None, "kind": "timer",
            "actor": "clock" if fired else "workflow",
            "text": f"{what}: fired" if fired else f"{what}: cancelled (what it waited for came first)",
        }  # fmt: skip

    async def _update_accepted(self, attrs: Any, _: str) -> dict[str, Any]:
        request = attrs.accepted_request
        return {
            "values": await self.decoder.many(request.input.args.payloads), "name": request.input.name,
            "ref": request.meta.update_id, "identity": request.meta.identity, "kind": "message",
            "text": request.input.name,
            "details": {"update_id": request.meta.update_id, "sent_from": request.meta.identity},
        }  # fmt: skip

    async def _update_completed(self, attrs: Any, _: str) -> dict[str, Any]:
        origin = self.accepted.get(attrs.meta.update_id)
        fields: dict[str, Any] = {"ref": attrs.meta.update_id, "name": origin.name if origin else "", "origin": origin}
        if attrs.outcome.HasField("failure"):
            failure = await self.decoder.failure(attrs.outcome.failure)
            text = f"{fields['name']}: handler failed: {failure}"
            return {**fields, "failure": failure, "kind": "message", "actor": "workflow", "text": text}
        return {**fields, "values": await self.decoder.many(attrs.outcome.success.payloads)}

    async def _signaled(self, attrs: Any, _: str) -> dict[str, Any]:
        values = await self.decoder.many(attrs.input.payloads)
        return {"values": values, "name": attrs.signal_name, "identity": attrs.identity, "kind": "message",
                "text": f"signal {attrs.signal_name}"}  # fmt: skip

    async def _upsert(self, attrs: Any, _: str) -> dict[str, Any]:
        typed = decode_typed_search_attributes(attrs.search_attributes)
        return {"search_attributes": {pair.key.name: pair.value for pair in typed}, "kind": "visibility",
                "actor": "workflow", "on_workflow_clock": True}  # fmt: skip

    async def _closed(self, attrs: Any, type_: str) -> dict[str, Any]:
        verb = type_.removeprefix("WORKFLOW_EXECUTION_").lower()
        fields: dict[str, Any] = {"kind": "workflow", "actor": "workflow", "text": verb}
        if type_ == "WORKFLOW_EXECUTION_COMPLETED":
            return {**fields, "values": await self.decoder.many(attrs.result.payloads)}
        if type_ == "WORKFLOW_EXECUTION_CONTINUED_AS_NEW":
            return {**fields, "values": await self.decoder.many(attrs.input.payloads)}
        if type_ == "WORKFLOW_EXECUTION_FAILED":
            failure = await self.decoder.failure(attrs.failure)
            return {**fields, "failure": failure, "text": f"{verb}: {failure}"}
        if type_ == "WORKFLOW_EXECUTION_TERMINATED":
            failure = attrs.reason or "terminated"
            return {**fields, "failure": failure, "identity": attrs.identity, "actor": attrs.identity or "workflow",
                    "text": f"{verb}: {failure}"}  # fmt: skip
        return fields

    async def _cancel_requested(self, attrs: Any, _: str) -> dict[str, Any]:
        why = f": {attrs.cause}" if attrs.cause else ""
        return {"identity": attrs.identity, "kind": "workflow", "actor": attrs.identity or "someone",
                "text": f"cancel requested (ignored by a review){why}"}  # fmt: skip

    async def _task_failed(self, attrs: Any, _: str) -> dict[str, Any]:
        """A reset (`temporal workflow reset` marks its point with a failed workflow task), or a task
        the workers could not complete: its cause and failure, decoded, in printable characters (a
        task's failure text is whatever the party that failed it wrote)."""
        if attrs.cause == RESET_CAUSE:
            text = f"history RESET to this point (new run {attrs.new_run_id}): {attrs.failure.message}"
            return {"identity": attrs.identity, "kind": "workflow", "actor": attrs.identity or "someone", "text": text}
        failure = printable(await self.decoder.failure(attrs.failure))
        cause = task_failure_cause(attrs.cause)
        return {"identity": attrs.identity, "kind": "workflow", "actor": attrs.identity or "worker", "failure": failure,
                "text": f"workflow task FAILED ({cause}): {failure}"}  # fmt: skip

    async def _marker(self, attrs: Any, _: str) -> dict[str, Any]:
        if attrs.marker_name != LOCAL_ACTIVITY:
            return {"name": attrs.marker_name}
        # A local activity's marker: what it was (written by the SDK's core, plain JSON: ids, no
        # content) and its result or failure, sealed like any activity result.
        about = _local_activity(attrs)
        activity_id, name = str(about.get("activity_id", "")), str(about.get("activity_type", ""))
        fields: dict[str, Any] = {"name": name, "ref": activity_id, "kind": "activity", "queue": self.task_queue,
                                  "details": {"activity_id": activity_id, "local": True}}  # fmt: skip
        decoder = self._activity_decoder(activity_id, name, "", local=True)
        if attrs.HasField("failure"):
            failure = await decoder.failure(attrs.failure)
            return {**fields, "failure": failure, "text": f"{self.summary or name} (local): failed: {failure}"}
        result = attrs.details.get("result")
        values = await decoder.many(result.payloads) if result is not None else []
        return {**fields, "values": values, "text": f"{self.summary or name} (local): completed"}

    _readers = {
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
        "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES": _upsert,
        **dict.fromkeys(CLOSE_TYPES, _closed),
        "WORKFLOW_EXECUTION_CANCEL_REQUESTED": _cancel_requested,
        "WORKFLOW_TASK_FAILED": _task_failed,
        "MARKER_RECORDED": _marker,
    }


def _local_activity(attrs: Any) -> dict[str, Any]:
    data = attrs.details.get("data")
    if data is None or not data.payloads or data.payloads[0].metadata.get("encoding") != b"json/plain":
        return {}
    try:
        about = json.loads(data.payloads[0].data)
    except ValueError:
        return {}
    return about if isinstance(about, dict) else {}


def duration(value: Any) -> timedelta:
    """A protobuf Duration as a timedelta."""
    return value.ToTimedelta()


@dataclass
class _Tally:
    undecodable: int = 0
    problem: str = ""  # the last refusal's reason, for the event being decoded


class _Decoder:
    """Decode payloads; a payload that cannot be decoded becomes a marker, never an exception."""

    def __init__(self, converter: DataConverter, tally: _Tally) -> None:
        self.converter = converter
        self.tally = tally

    async def many(self, payloads: Sequence[Payload]) -> list[Any]:
        if not payloads:
            return []
        try:
            values = await self.converter.decode(list(payloads))
        except Exception as e:
            self.tally.undecodable += 1
            self.tally.problem = f"{type(e).__name__}: {str(e)[:200]}"
            return [UNDECODABLE for _ in payloads]
        # The codec fails closed: a payload it would not open comes back as its refusal marker.
        refusals = [why for v in values if (why := is_refused(v)) is not None]
        if refusals:
            self.tally.undecodable += 1
            self.tally.problem = refusals[0]
        return values

    async def one(self, payload: Payload) -> Any:
        values = await self.many([payload])
        return values[0] if values else None

    async def failure(self, failure: Failure) -> str:
        copy = Failure()
        copy.CopyFrom(failure)
        try:
            return str(await self.converter.decode_failure(copy))
        except Exception:
            self.tally.undecodable += 1
            return failure.message or UNDECODABLE
