"""The clearinghouse keeps its history bounded with continue-as-new, and loses no report sent
while it does. On the isolated namespace, with its own Treasury worker and a policy that
continues as new after every three reports."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from api.clearinghouse import case_status, clearinghouse_status
from domain.clearinghouse import (
    ATTESTED_KEYRING,
    CLEARINGHOUSE_ID,
    CLEARINGHOUSE_TASK_QUEUE,
    CLEARINGHOUSE_WORKFLOW,
    ClearinghouseState,
    VulnerabilityIntake,
)
from domain.policy import POLICY_DIR, load_policy
from infra.connection import plain_data_converter
from tests.conftest import patch_ids, recording_anchors, report_signed, running, vulnerability
from worker import WorkerConfig, build_workers
from workflows.clearinghouse import Clearinghouse
from workflows.sandbox import workflow_runner


async def fresh_clearinghouse(client: Client) -> None:
    """Other tests (the demo) may have left a clearinghouse running on the isolated namespace."""
    try:
        await client.get_workflow_handle(CLEARINGHOUSE_ID).terminate("a test needs a fresh clearinghouse")
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise


async def applied_in(client: Client, run_id: str) -> int:
    """Reports a run applied: each one either started its case or signalled it as a duplicate (a
    duplicate whose case an earlier run started first tries to start it, and fails)."""
    history = await client.get_workflow_handle(CLEARINGHOUSE_ID, run_id=run_id).fetch_history()
    return sum(
        e.HasField("child_workflow_execution_started_event_attributes")
        or e.HasField("signal_external_workflow_execution_initiated_event_attributes")
        for e in history.events
    )


async def test_reports_sent_across_continue_as_new_are_all_kept(
    isolated: Client, worker_config: WorkerConfig, tmp_path: Path
) -> None:
    # Treasury's worker runs the clearinghouse under its own policy: one that continues as new
    # after every three reports.
    policy = load_policy("eo-2026")
    small_runs = tmp_path / "small-runs.toml"
    small_runs.write_text(
        (POLICY_DIR / "eo-2026.toml").read_text().replace("reports_per_run = 1000", "reports_per_run = 3")
    )
    assert load_policy(small_runs).clearinghouse.reports_per_run == 3
    treasury_config = dataclasses.replace(worker_config, clearinghouse_policy=str(small_runs))
    await fresh_clearinghouse(isolated)
    since = datetime.now(UTC)
    unique = [vulnerability(sectors=[]) for _ in range(12)]
    # Two of them reported twice more, by other parties: duplicates, whatever order they arrive in.
    reports = [("partner:shieldsec", r) for r in unique] + [
        ("operator:energy", unique[0]),
        ("treasury", unique[0]),
        ("operator:water", unique[5]),
    ]
    async with running(build_workers(isolated, ["treasury"], treasury_config)):
        try:
            # All at once: several continue-as-new boundaries crossed while reports are in flight.
            receipts = await asyncio.gather(
                *(report_signed(isolated, VulnerabilityIntake(sender=s, report=r), policy) for s, r in reports)
            )
            assert [rc.case_id for rc in receipts[:12]] == [f"case-{r.fingerprint[:16]}" for r in unique]
            assert len({rc.case_id for rc in receipts}) == 12
            assert sum(rc.duplicate for rc in receipts) == 3

            # A run that took its third report continues as new once it is done: wait for the
            # chain to settle (the status and the server's list of runs agree).
            for _ in range(100):
                totals = await clearinghouse_status(isolated)
                runs = [
                    wf
                    async for wf in isolated.list_workflows(f'WorkflowId = "{CLEARINGHOUSE_ID}"')
                    if wf.start_time >= since  # this test's chain of runs only
                ]
                continued = sum(wf.status == WorkflowExecutionStatus.CONTINUED_AS_NEW for wf in runs)
                if totals.runs == len(runs) == continued + 1 == (await clearinghouse_status(isolated)).runs:
                    break
                await asyncio.sleep(0.1)
            assert (totals.reports, totals.cases_opened, totals.duplicates) == (15, 12, 3)
            assert all(wf.workflow_type == CLEARINGHOUSE_WORKFLOW for wf in runs)
            assert sum(wf.status == WorkflowExecutionStatus.CONTINUED_AS_NEW for wf in runs) == totals.runs - 1
            # Bounded: a run takes its 3 reports, the rest wait for the next run (none refused).
            per_run = [await applied_in(isolated, wf.run_id) for wf in runs]
            assert sum(per_run) == 15
            assert totals.runs >= 5 and max(per_run) <= 3, per_run

            # Every case outlived the run that started it, and holds every report of its vulnerability.
            cases = {rc.case_id: await case_status(isolated, rc.case_id) for rc in receipts[:12]}
            assert len(cases[receipts[0].case_id].reports) == 3
            assert len(cases[receipts[5].case_id].reports) == 2
            assert sum(len(c.reports) for c in cases.values()) == 15
        finally:
            await isolated.get_workflow_handle(CLEARINGHOUSE_ID).terminate("test finished")


async def test_whoever_starts_the_clearinghouse_does_not_choose_its_policy(
    isolated: Client, worker_config: WorkerConfig
) -> None:
    """Anyone with a client can start the workflow first, here with seconds-long embargoes: each
    run still applies Treasury's policy, read on Treasury's worker."""
    demo = load_policy("demo")
    await fresh_clearinghouse(isolated)
    await isolated.start_workflow(
        CLEARINGHOUSE_WORKFLOW,
        ClearinghouseState(policy_version=demo.version, policy=demo.clearinghouse),
        id=CLEARINGHOUSE_ID,
        task_queue=CLEARINGHOUSE_TASK_QUEUE,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    async with running(build_workers(isolated, ["treasury"], worker_config)):
        try:
            receipt = await report_signed(
                isolated, VulnerabilityIntake(sender="partner:shieldsec", report=vulnerability()), demo
            )
            case = await case_status(isolated, receipt.case_id)
            assert (await clearinghouse_status(isolated)).policy_version == "eo-2026.1"
            assert case.policy_version == "eo-2026.1"
        finally:
            await isolated.get_workflow_handle(CLEARINGHOUSE_ID).terminate("test finished")


RECORDED = Path(__file__).parent / "histories" / "clearinghouse"
# Each version's two runs: the first version's (in RECORDED itself), then each patch's directory.
VERSIONS = {"first": RECORDED, ATTESTED_KEYRING: RECORDED / ATTESTED_KEYRING}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", ["run-1", "run-2"])
async def test_recorded_clearinghouse_runs_replay(name: str, version: str) -> None:
    """Two runs recorded with each version (histories/clearinghouse/record.py: reports handed in and
    by update, a duplicate, a forged submission, continue-as-new, a report sent again) replay: a
    change to the workflow that would break a running clearinghouse fails here (it ships behind
    `workflow.patched`, with the new version recorded beside the old)."""
    # Under the workflow id it ran with: the attested results are signed for it.
    directory = VERSIONS[version]
    recording = gzip.decompress((directory / f"{name}.json.gz").read_bytes()).decode()
    history = WorkflowHistory.from_json(CLEARINGHOUSE_ID, recording)
    assert (ATTESTED_KEYRING in patch_ids(history)) == (version == ATTESTED_KEYRING), "each version's own branch"
    replayer = Replayer(
        workflows=[Clearinghouse], data_converter=plain_data_converter(), workflow_runner=workflow_runner()
    )
    # The attested results in them were signed by the recording's Treasury: its public anchors join
    # this process's for the replay (the session's workers keep believing their own).
    with recording_anchors(directory, "anchors.json"):
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
