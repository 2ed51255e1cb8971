"""Red team F2: a stranger (no key) terminates the clearinghouse and starts a workflow of its own
under its id. Every report handed in by signal-with-start went to that run, which never took one,
and `vuln report` waited until it gave up. The reporter's API now ends such a run, on an objective
sign only, with the reason recorded, and the report is taken by a genuine clearinghouse."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from api.clearinghouse import clearinghouse_status
from domain.clearinghouse import (
    CLEARINGHOUSE_ID,
    CLEARINGHOUSE_INTAKE_QUEUE,
    CLEARINGHOUSE_WORKFLOW,
    VulnerabilityIntake,
)
from domain.policy import load_policy
from tests.conftest import report_signed, running, vulnerability
from tests.security.attackers import keyless
from tests.test_clearinghouse_runs import fresh_clearinghouse
from worker import WorkerConfig, build_workers

SQUATTERS = {
    # Treasury's own workflow type and queue, with a plaintext input Treasury's worker cannot decode:
    # its first workflow task fails for ever (the red team's reproduction).
    "undecodable": (CLEARINGHOUSE_WORKFLOW, CLEARINGHOUSE_INTAKE_QUEUE, "never completed"),
    # A workflow of its own on a queue no Treasury worker polls: nothing ever runs it.
    "foreign": ("Squatter", "squatters", "a Squatter workflow on queue squatters"),
}


@pytest.mark.parametrize("kind", SQUATTERS)
async def test_a_squatter_on_the_clearinghouse_id_is_ended_and_the_report_taken(
    isolated: Client, env: WorkflowEnvironment, worker_config: WorkerConfig, kind: str
) -> None:
    workflow_type, queue, sign = SQUATTERS[kind]
    await fresh_clearinghouse(isolated)
    mallory = await keyless(env, isolated.namespace)
    squat = await mallory.start_workflow(workflow_type, {"policy_version": "x"}, id=CLEARINGHOUSE_ID, task_queue=queue)
    policy = load_policy("eo-2026")
    async with running(build_workers(isolated, ["treasury"], worker_config)):
        try:
            # Before the fix this waited the API's whole patience (5 min) and raised Unavailable.
            receipt = await asyncio.wait_for(
                report_signed(
                    isolated, VulnerabilityIntake(sender="partner:shieldsec", report=vulnerability()), policy
                ),
                timeout=60,
            )
            assert not receipt.duplicate
            totals = await clearinghouse_status(isolated)
            assert (totals.reports, totals.cases_opened) == (1, 1)
        finally:
            await isolated.get_workflow_handle(CLEARINGHOUSE_ID).terminate("test finished")
    # The squatter's run was ended, with the sign and the reporter in the recorded reason.
    ended = isolated.get_workflow_handle(CLEARINGHOUSE_ID, run_id=squat.result_run_id)
    assert (await ended.describe()).status == WorkflowExecutionStatus.TERMINATED
    history = await ended.fetch_history()
    reason = history.events[-1].workflow_execution_terminated_event_attributes.reason
    assert reason.startswith("not a genuine clearinghouse") and sign in reason and "partner:shieldsec" in reason


async def test_a_busy_genuine_clearinghouse_is_never_taken_for_a_squatter(
    isolated: Client, worker_config: WorkerConfig
) -> None:
    """The look is objective: a genuine run whose worker is away (its tasks wait, none failed) is
    left alone, and takes the report when Treasury's worker comes back."""
    await fresh_clearinghouse(isolated)
    policy = load_policy("eo-2026")
    # No worker yet: the report is handed in and waits past the look.
    pending = asyncio.create_task(
        report_signed(isolated, VulnerabilityIntake(sender="partner:shieldsec", report=vulnerability()), policy)
    )
    await asyncio.sleep(8)
    assert not pending.done()
    genuine = await isolated.get_workflow_handle(CLEARINGHOUSE_ID).describe()
    assert genuine.status == WorkflowExecutionStatus.RUNNING
    async with running(build_workers(isolated, ["treasury"], worker_config)):
        try:
            receipt = await asyncio.wait_for(pending, timeout=60)
            assert not receipt.duplicate
            assert (await isolated.get_workflow_handle(CLEARINGHOUSE_ID).describe()).run_id == genuine.run_id
        finally:
            await isolated.get_workflow_handle(CLEARINGHOUSE_ID).terminate("test finished")
