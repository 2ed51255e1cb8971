"""The clearinghouse's earlier chains of runs (red team F3): anyone with namespace access can
terminate the clearinghouse, and the next report starts a new chain whose totals count from zero.
`vuln clearinghouse` shows each run that ended without handing its state on (terminated, failed,
timed out, cancelled), how and why it ended, and the totals it held then, read from the server:
the run's own `status` query, answered by Treasury's worker replaying that run's history (a
squatter's run, which no clearinghouse code ever ran, has none). The totals over every chain are
their sum with the current chain's."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowHistoryEventFilterType, WorkflowQueryFailedError
from temporalio.service import RPCError

from api.clearinghouse_squatter import NOT_GENUINE
from domain.clearinghouse import (
    CLEARINGHOUSE_ID,
    CLEARINGHOUSE_STATUS_QUERY,
    CLEARINGHOUSE_WORKFLOW,
    ClearinghouseState,
)

# The newest this many ended runs are shown (each one costs a replay on Treasury's worker).
EARLIER_SHOWN = 10


class EarlierClearinghouseRun(BaseModel):
    run_id: str
    status: str  # TERMINATED, FAILED, TIMED_OUT, CANCELED
    workflow_type: str
    closed_at: datetime | None = None
    reason: str = ""  # a termination's reason, with who gave it when the server recorded one
    # The totals the run held when it ended (None: it never ran clearinghouse code, or the server or
    # Treasury's worker could not answer).
    reports: int | None = None
    cases_opened: int | None = None
    duplicates: int | None = None


class ClearinghouseView(ClearinghouseState):
    """The status, with the chains of runs that ended before this one and the totals over all."""

    earlier_runs: list[EarlierClearinghouseRun] = Field(default_factory=list)
    all_reports: int = 0
    all_cases_opened: int = 0
    all_duplicates: int = 0


async def with_earlier_runs(client: Client, current: ClearinghouseState) -> ClearinghouseView:
    earlier = await earlier_runs(client)
    return ClearinghouseView(
        **current.model_dump(),
        earlier_runs=earlier,
        all_reports=current.reports + sum(r.reports or 0 for r in earlier),
        all_cases_opened=current.cases_opened + sum(r.cases_opened or 0 for r in earlier),
        all_duplicates=current.duplicates + sum(r.duplicates or 0 for r in earlier),
    )


async def earlier_runs(client: Client) -> list[EarlierClearinghouseRun]:
    query = f'WorkflowId = "{CLEARINGHOUSE_ID}" AND ExecutionStatus IN ("Terminated", "Failed", "TimedOut", "Canceled")'
    runs = []
    async for wf in client.list_workflows(query, limit=EARLIER_SHOWN):
        handle = client.get_workflow_handle(CLEARINGHOUSE_ID, run_id=wf.run_id)
        reason = ""
        async for event in handle.fetch_history_events(event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT):
            if event.HasField("workflow_execution_terminated_event_attributes"):
                a = event.workflow_execution_terminated_event_attributes
                reason = f"{a.reason or 'no reason given'} (by {a.identity or 'someone'})"
        run = EarlierClearinghouseRun(
            run_id=wf.run_id,
            status=wf.status.name if wf.status else "UNKNOWN",
            workflow_type=wf.workflow_type,
            closed_at=wf.close_time,
            reason=reason[:1000],
        )
        # A squatter ended by a reporter's API (api/clearinghouse_squatter.py) never ran any code.
        if wf.workflow_type == CLEARINGHOUSE_WORKFLOW and not reason.startswith(NOT_GENUINE):
            try:
                held = await handle.query(
                    CLEARINGHOUSE_STATUS_QUERY, result_type=ClearinghouseState, rpc_timeout=timedelta(seconds=10)
                )
                run = run.model_copy(
                    update={"reports": held.reports, "cases_opened": held.cases_opened, "duplicates": held.duplicates}
                )
            except (RPCError, WorkflowQueryFailedError):
                pass  # never ran clearinghouse code (a squatter), or nobody could replay it now
        runs.append(run)
    return runs
