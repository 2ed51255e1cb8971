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
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    WorkflowSerializationContext,
    decode_typed_search_attributes,
)

from domain.attestation import is_refused
from domain.inputs import Refused, decode_utf8, read_file

UNDECODABLE = "<undecodable>"
# Temporal's own cap on a history is 50 MB; an export in JSON is larger than the wire form.
MAX_HISTORY_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Event:
    """One history event with its payloads decoded."""

    id: int
    type: str  # e.g. "ACTIVITY_TASK_COMPLETED" (the EventType name without its prefix)
    at: datetime  # when the server recorded the event
    workflow_time: datetime  # what workflow.now() read when the workflow made this command
    raw: HistoryEvent
    values: list[Any] = field(default_factory=list)  # input, result or update arguments
    summary: str | None = None  # the user metadata summary (activities, timers)
    failure: str | None = None  # a failure's message, decoded
    search_attributes: dict[str, Any] = field(default_factory=dict)
    name: str = ""  # activity type, update name, signal name, timer id
    ref: str = ""  # activity id, update id, timer id
    identity: str = ""  # the client or worker that caused the event, when recorded
    undecodable: bool = False
    problem: str = ""  # why a payload of this event could not be read (the codec's refusal)

    @property
    def attributes(self) -> Any:
        return getattr(self.raw, self.raw.WhichOneof("attributes"))


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
    workflow_type = started.workflow_type.name
    workflow_context = converter.with_context(WorkflowSerializationContext(namespace, history.workflow_id))
    tally = _Tally()
    decoder = _Decoder(workflow_context, tally)
    events: list[Event] = []
    scheduled: dict[int, Event] = {}
    accepted: dict[str, Event] = {}
    workflow_time = history.events[0].event_time.ToDatetime(tzinfo=UTC)
    for raw in history.events:
        type_ = EventType.Name(raw.event_type).removeprefix("EVENT_TYPE_")
        at = raw.event_time.ToDatetime(tzinfo=UTC)
        if type_ == "WORKFLOW_TASK_STARTED":
            workflow_time = at
        fields: dict[str, Any] = {}
        failures_before = tally.undecodable
        tally.problem = ""
        attrs = getattr(raw, raw.WhichOneof("attributes")) if raw.WhichOneof("attributes") else None
        if raw.HasField("user_metadata") and raw.user_metadata.HasField("summary"):
            fields["summary"] = await decoder.one(raw.user_metadata.summary)
        if type_ == "WORKFLOW_EXECUTION_STARTED":
            fields.update(values=await decoder.many(attrs.input.payloads), identity=attrs.identity)
        elif type_ == "ACTIVITY_TASK_SCHEDULED":
            activity = _activity_decoder(converter, tally, namespace, history.workflow_id, workflow_type, attrs)
            fields.update(
                values=await activity.many(attrs.input.payloads), name=attrs.activity_type.name, ref=attrs.activity_id
            )
        elif type_ in ("ACTIVITY_TASK_COMPLETED", "ACTIVITY_TASK_FAILED", "ACTIVITY_TASK_TIMED_OUT"):
            origin = scheduled.get(attrs.scheduled_event_id)
            origin_attrs = origin.attributes if origin else None
            activity = (
                _activity_decoder(converter, tally, namespace, history.workflow_id, workflow_type, origin_attrs)
                if origin_attrs
                else decoder
            )
            fields.update(name=origin.name if origin else "", ref=origin.ref if origin else "")
            if type_ == "ACTIVITY_TASK_COMPLETED":
                fields.update(values=await activity.many(attrs.result.payloads), identity=attrs.identity)
            else:
                fields["failure"] = await activity.failure(attrs.failure)
        elif type_ == "ACTIVITY_TASK_CANCELED":
            origin = scheduled.get(attrs.scheduled_event_id)
            fields.update(name=origin.name if origin else "", ref=origin.ref if origin else "", identity=attrs.identity)
        elif type_ == "TIMER_STARTED":
            fields.update(ref=attrs.timer_id)
        elif type_ in ("TIMER_FIRED", "TIMER_CANCELED"):
            fields.update(ref=attrs.timer_id)
        elif type_ == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED":
            request = attrs.accepted_request
            fields.update(
                values=await decoder.many(request.input.args.payloads),
                name=request.input.name,
                ref=request.meta.update_id,
                identity=request.meta.identity,
            )
        elif type_ == "WORKFLOW_EXECUTION_UPDATE_COMPLETED":
            origin = accepted.get(attrs.meta.update_id)
            fields.update(ref=attrs.meta.update_id, name=origin.name if origin else "")
            if attrs.outcome.HasField("failure"):
                fields["failure"] = await decoder.failure(attrs.outcome.failure)
            else:
                fields["values"] = await decoder.many(attrs.outcome.success.payloads)
        elif type_ == "WORKFLOW_EXECUTION_SIGNALED":
            fields.update(
                values=await decoder.many(attrs.input.payloads), name=attrs.signal_name, identity=attrs.identity
            )
        elif type_ == "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES":
            typed = decode_typed_search_attributes(attrs.search_attributes)
            fields["search_attributes"] = {pair.key.name: pair.value for pair in typed}
        elif type_ == "WORKFLOW_EXECUTION_COMPLETED":
            fields["values"] = await decoder.many(attrs.result.payloads)
        elif type_ == "WORKFLOW_EXECUTION_FAILED":
            fields["failure"] = await decoder.failure(attrs.failure)
        elif type_ == "WORKFLOW_EXECUTION_TERMINATED":
            fields.update(failure=attrs.reason or "terminated", identity=attrs.identity)
        elif type_ == "MARKER_RECORDED":
            fields["name"] = attrs.marker_name
        event = Event(
            id=raw.event_id,
            type=type_,
            at=at,
            workflow_time=workflow_time,
            raw=raw,
            undecodable=tally.undecodable != failures_before,
            problem=tally.problem,
            **fields,
        )
        if type_ == "ACTIVITY_TASK_SCHEDULED":
            scheduled[event.id] = event
        if type_ == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED":
            accepted[event.ref] = event
        events.append(event)
    return DecodedHistory(
        workflow_id=history.workflow_id,
        run_id=history.run_id,
        workflow_type=workflow_type,
        namespace=namespace,
        source=source,
        events=events,
    )


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


def _activity_decoder(
    converter: DataConverter, tally: _Tally, namespace: str, workflow_id: str, workflow_type: str, scheduled: Any
) -> _Decoder:
    context = ActivitySerializationContext(
        namespace=namespace,
        activity_id=scheduled.activity_id,
        activity_type=scheduled.activity_type.name,
        activity_task_queue=scheduled.task_queue.name,
        workflow_id=workflow_id,
        workflow_type=workflow_type,
        is_local=False,
    )
    return _Decoder(converter.with_context(context), tally)
