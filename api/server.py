"""What the Temporal server says about a workflow, shared by the review and clearinghouse APIs."""

from __future__ import annotations

from temporalio.client import Client, WorkflowExecutionDescription
from temporalio.service import RPCError, RPCStatusCode


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
