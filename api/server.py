"""What the Temporal server says about a workflow, shared by the review and clearinghouse APIs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ReviewError

T = TypeVar("T")
# A workflow whose last task failed may still answer once a retry succeeds; past this it is taken
# for stuck (the SDK's default would hold the command for its 30-s RPC deadline first).
STUCK_QUERY_SECONDS = 5
MAX_FAILURE_SHOWN = 300
MAX_IDENTITY_SHOWN = 100
TASK_ENDINGS = (
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
)


async def describe_or_none(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    """The workflow's latest run, or None if there is no workflow with that id."""
    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def workflow_not_ready(e: RPCError) -> bool:
    """The server refused an update because the workflow task under it failed (e.g. an
    UnhandledCommand race): nothing was applied, and the same message may be sent again."""
    return e.status == RPCStatusCode.FAILED_PRECONDITION and any(
        d.type_url.endswith("WorkflowNotReadyFailure") for d in e.grpc_status.details
    )


# The server was unreachable, restarting or over its in-flight cap: nothing was applied, or it
# was and the same update id applies once. Either way the same message may be sent again.
TRANSIENT_STATUSES = (
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.ABORTED,
    RPCStatusCode.CANCELLED,
)


def transient(e: RPCError) -> bool:
    # A connection cut mid-call (the server killed under it) comes back as UNKNOWN "transport error".
    cut = e.status == RPCStatusCode.UNKNOWN and "transport error" in e.message
    return cut or e.status in TRANSIENT_STATUSES or workflow_not_ready(e)


class NotAnswering(ReviewError):
    """The workflow's task fails at every attempt: nothing it holds can be read until it is mended."""


async def query_running(
    client: Client, description: WorkflowExecutionDescription, query: str, result_type: type[T], what: str, record: str
) -> T:
    """`query` on a running workflow. One whose workflow task keeps failing cannot answer (a query
    needs a task that completes): then NotAnswering, saying how often, since when and why (the
    failure decoded), instead of "Timeout expired" after the SDK's 30-s deadline. `what` names the
    workflow ("review"), `record` the command that shows its record. A task retried for another
    reason (a worker gone: timed out, not failed) is waited for as before."""
    handle = client.get_workflow_handle(description.id, run_id=description.run_id)
    failure = None
    if description.raw_description.pending_workflow_task.attempt >= 2:
        failure = await _last_task_failure(client, description)
    if failure is None:
        return await handle.query(query, result_type=result_type)
    try:
        return await handle.query(query, result_type=result_type, rpc_timeout=timedelta(seconds=STUCK_QUERY_SECONDS))
    except (RPCError, WorkflowQueryFailedError) as e:
        raise NotAnswering(await _why_not_answering(client, description, failure, what, record)) from e


async def _last_task_failure(client: Client, description: WorkflowExecutionDescription) -> Any:
    """The WorkflowTaskFailed event under the pending task's retries, if the last task ended so."""
    last = None
    handle = client.get_workflow_handle(description.id, run_id=description.run_id)
    async for event in handle.fetch_history_events():
        if event.event_type in TASK_ENDINGS:
            last = event
    return last if last is not None and last.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED else None


async def _why_not_answering(
    client: Client, description: WorkflowExecutionDescription, failed: Any, what: str, record: str
) -> str:
    attempts = description.raw_description.pending_workflow_task.attempt - 1
    attrs = failed.workflow_task_failed_event_attributes
    try:
        why = printable(str(await client.data_converter.decode_failure(attrs.failure)))
    except Exception:  # noqa: BLE001  a failure that does not decode still leaves the rest of the line
        why = "its failure could not be read"
    kind = task_failure_cause(attrs.cause)
    # Who failed it, as they named themselves: a stranger polling the queue can fail a healthy
    # workflow's task too, and this tells their word from the operator's own workers'.
    by = printable(attrs.identity, MAX_IDENTITY_SHOWN) or "an unnamed worker"
    return (
        f"{what} {description.id} cannot answer: its workflow task is failing ({attempts} failed attempts so far; last "
        f"at {failed.event_time.ToDatetime():%Y-%m-%d %H:%M:%S} UTC, event {failed.event_id}, by {by}: {kind}: {why}); "
        f"the workers' logs say more, `{record}` shows its record"
    )


def printable(text: str, limit: int = MAX_FAILURE_SHOWN) -> str:
    """A failure's text as shown to an operator or auditor: anyone with namespace access can fail a
    task with a text of their own, so it is cut short and each control character (a terminal
    escape, a line break) becomes a space."""
    return "".join(c if c.isprintable() else " " for c in text[:limit])


def task_failure_cause(cause: int) -> str:
    """A WorkflowTaskFailedCause by its name (`WORKFLOW_WORKER_UNHANDLED_FAILURE`), or its number."""
    try:
        return WorkflowTaskFailedCause.Name(cause).removeprefix("WORKFLOW_TASK_FAILED_CAUSE_")
    except ValueError:
        return f"cause {cause}"
