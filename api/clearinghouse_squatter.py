"""A run holding the `clearinghouse` id that will never take a report (red team F2).

Anyone with namespace access can terminate the clearinghouse and start a workflow of their own
under its id. Signal-with-start then hands every report to that run, because it is "running":
a workflow of another type or on another queue (no Treasury worker ever runs it), or Treasury's
own workflow type started with an input its worker cannot decode (a keyless stranger cannot seal
a payload), whose first workflow task fails for ever. Reporters waited, then gave up.

The reporter's API looks at the run when its report is not taken within a few seconds, and ends
it only on an objective sign that it is not Treasury's clearinghouse: the wrong type or queue, or
a run whose workflow task has failed and never once completed (so no code of the clearinghouse
ever ran in it: it holds no applied report, no receipt, no total) and that was started by a
client, not continued as new by the clearinghouse (a continued run carries the totals). A genuine run that is merely
busy (a burst, a slow worker, a task that timed out) is never ended: its tasks complete. The
termination reason names the sign and the reporter, and the server records it with the client's
identity; `vuln clearinghouse` lists the ended run among the earlier runs. The reports handed to
the ended run are handed in again by their senders' APIs (applied once, by message id).

Who may end it: any reporter's client, as anyone with namespace `Write` could anyway. The rule
is objective and checked against the server's own description and history, so no reporter can
end a genuine clearinghouse through this path.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api.errors import Unavailable
from api.server import describe_or_none
from domain.clearinghouse import (
    CLEARINGHOUSE_ID,
    CLEARINGHOUSE_INTAKE_QUEUE,
    CLEARINGHOUSE_TASK_QUEUE,
    CLEARINGHOUSE_WORKFLOW,
)

# Seconds a report may wait untaken before the run holding the id is looked at.
LOOK_AFTER = 5.0
NOT_GENUINE = "not a genuine clearinghouse"  # how a squatter's termination reason begins
# The queues Treasury's worker runs the clearinghouse on (worker.py: its own, and the cases' one).
TREASURY_QUEUES = (CLEARINGHOUSE_INTAKE_QUEUE, CLEARINGHOUSE_TASK_QUEUE)
# A workflow task that failed this many times in a row (attempt counted by the server).
FAILING_ATTEMPTS = 2


@dataclass(frozen=True)
class Squatter:
    run_id: str
    why: str


async def squatter(client: Client) -> Squatter | None:
    """The run holding the clearinghouse id, if it is objectively not Treasury's clearinghouse."""
    d = await describe_or_none(client, CLEARINGHOUSE_ID)
    if d is None or d.status != WorkflowExecutionStatus.RUNNING:
        return None  # signal-with-start starts a genuine one
    if d.workflow_type != CLEARINGHOUSE_WORKFLOW or d.task_queue not in TREASURY_QUEUES:
        expected = f"{CLEARINGHOUSE_WORKFLOW} on {' or '.join(TREASURY_QUEUES)}"
        return Squatter(d.run_id, f"a {d.workflow_type} workflow on queue {d.task_queue}, not {expected}")
    attempt = d.raw_description.pending_workflow_task.attempt
    if attempt < FAILING_ATTEMPTS:
        return None
    # Failing now: did any of its workflow tasks ever complete? (A genuine run's first task completes
    # at once, so the scan stops within a few events; only a never-started run is read to its end.)
    failure = None
    async for e in client.get_workflow_handle(CLEARINGHOUSE_ID, run_id=d.run_id).fetch_history_events():
        if e.HasField("workflow_execution_started_event_attributes"):
            if e.workflow_execution_started_event_attributes.continued_execution_run_id:
                # Continued as new by the clearinghouse itself (no client can start a run so): it
                # carries totals and pending reports, and a failing task there (a deadlock detected
                # under load, a bug) is an operator's to fix, never a reporter's to end.
                return None
        if e.HasField("workflow_task_completed_event_attributes"):
            return None
        if failure is None and e.HasField("workflow_task_failed_event_attributes"):
            a = e.workflow_task_failed_event_attributes
            failure = f"{a.failure.message or 'failed'} (cause {a.cause})"
    if failure is None:
        return None
    return Squatter(d.run_id, f"its workflow task never completed, failing {attempt} times: {failure[:300]}")


async def end_squatter(client: Client, found: Squatter, sender: str) -> None:
    """Terminate that run (that run only: not one started since), with the reason recorded."""
    reason = (
        f"{NOT_GENUINE} ({found.why}); terminated by the report API of {sender} so that "
        "reports are taken again (api/clearinghouse_squatter.py)"
    )
    try:
        await client.get_workflow_handle(CLEARINGHOUSE_ID, run_id=found.run_id).terminate(reason=reason[:1000])
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return  # ended meanwhile (another reporter got there first)
        raise Unavailable(
            f"clearinghouse: run {found.run_id} is not a genuine clearinghouse ({found.why}) and could not be "
            f"terminated ({e.status.name if e.status else e}); an operator must terminate it"
        ) from None


ENDED_WITHOUT_HANDING_ON = {
    WorkflowExecutionStatus.TERMINATED,
    WorkflowExecutionStatus.FAILED,
    WorkflowExecutionStatus.CANCELED,
    WorkflowExecutionStatus.TIMED_OUT,
}


async def dropped(client: Client, run_id: str | None) -> bool:
    """Whether the run a report was handed to ended without handing its pending reports on (a run
    that continued as new carries them; one terminated, e.g. as a squatter, does not)."""
    if run_id is None:
        return False
    try:
        d = await client.get_workflow_handle(CLEARINGHOUSE_ID, run_id=run_id).describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return True
        raise
    return d.status in ENDED_WITHOUT_HANDING_ON


async def hand_in_again(client: Client, handed_to: str | None, sender: str) -> bool:
    """Whether a report still untaken after LOOK_AFTER should be handed in again at once: the run
    holding the id was a squatter (now ended), or the run it went to ended without handing it on.
    A server too busy to answer the look is no sign of anything: the report waits on."""
    try:
        found = await squatter(client)
        if found is not None:
            await end_squatter(client, found, sender)
            return True
        return await dropped(client, handed_to)
    except RPCError:
        return False
