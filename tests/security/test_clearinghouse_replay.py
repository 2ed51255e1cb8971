"""Red team F3: a stranger (no key) copies the sealed payload of a genuine report's `submit_report`
signal from the clearinghouse's history and signals it again, many times. Each copy counted toward
the run's `reports_per_run` budget, so anyone could force continue-as-new at will. A replay is
settled (the first receipt answers it) and no longer counts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import RawValue
from temporalio.testing import WorkflowEnvironment

from api.clearinghouse import clearinghouse_status
from api.clearinghouse_runs import with_earlier_runs
from domain.clearinghouse import CLEARINGHOUSE_ID, SUBMIT_REPORT, VulnerabilityIntake
from domain.policy import POLICY_DIR, load_policy
from tests.conftest import report_signed, running, vulnerability
from tests.security.attackers import keyless
from tests.test_clearinghouse_runs import fresh_clearinghouse
from worker import WorkerConfig, build_workers

REPLAYS = 20


async def test_replayed_reports_do_not_spend_the_runs_budget(
    isolated: Client, env: WorkflowEnvironment, worker_config: WorkerConfig, tmp_path: Path
) -> None:
    small_runs = tmp_path / "small-runs.toml"
    small_runs.write_text(
        (POLICY_DIR / "eo-2026.toml").read_text().replace("reports_per_run = 1000", "reports_per_run = 3")
    )
    treasury = dataclasses.replace(worker_config, clearinghouse_policy=str(small_runs))
    policy = load_policy("eo-2026")
    await fresh_clearinghouse(isolated)
    async with running(build_workers(isolated, ["treasury"], treasury)):
        try:
            first = await report_signed(
                isolated, VulnerabilityIntake(sender="partner:shieldsec", report=vulnerability(sectors=[])), policy
            )
            # The stranger's copy of the sealed signal, from the history (no key needed to read it raw).
            mallory = await keyless(env, isolated.namespace)
            handle = mallory.get_workflow_handle(CLEARINGHOUSE_ID)
            history = await handle.fetch_history()
            captured = next(
                e.workflow_execution_signaled_event_attributes.input.payloads[0]
                for e in history.events
                if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
            )
            for _ in range(REPLAYS):
                await handle.signal(SUBMIT_REPORT, RawValue(captured))
            # A later genuine report is taken after every replay handed in before it (in order).
            second = await report_signed(
                isolated, VulnerabilityIntake(sender="partner:shieldsec", report=vulnerability(sectors=[])), policy
            )
            assert second.case_id != first.case_id
            totals = await clearinghouse_status(isolated)
            # Two reports taken, one run: the replays counted for nothing (before: 7 or more runs).
            assert (totals.reports, totals.cases_opened, totals.duplicates, totals.runs) == (2, 2, 0, 1)
            signals = [
                e
                async for e in isolated.get_workflow_handle(CLEARINGHOUSE_ID).fetch_history_events()
                if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
            ]
            assert len(signals) >= REPLAYS + 2  # the replays did reach this run
        finally:
            await isolated.get_workflow_handle(CLEARINGHOUSE_ID).terminate("test finished")


async def test_a_terminated_clearinghouse_is_shown_with_the_totals_it_held(
    isolated: Client, env: WorkflowEnvironment, worker_config: WorkerConfig
) -> None:
    """A stranger terminates the clearinghouse: the next report starts a chain counting from zero.
    `vuln clearinghouse` shows the ended run, who ended it and why, the totals it held, and the
    totals over every chain (before: the ended run was not mentioned, its totals were gone)."""
    policy = load_policy("eo-2026")
    await fresh_clearinghouse(isolated)
    async with running(build_workers(isolated, ["treasury"], worker_config)):
        try:
            await report_signed(
                isolated, VulnerabilityIntake(sender="partner:shieldsec", report=vulnerability()), policy
            )
            mallory = await keyless(env, isolated.namespace)
            ended = (await isolated.get_workflow_handle(CLEARINGHOUSE_ID).describe()).run_id
            await mallory.get_workflow_handle(CLEARINGHOUSE_ID).terminate(reason="just because")
            await report_signed(isolated, VulnerabilityIntake(sender="operator:energy", report=vulnerability()), policy)
            view = await with_earlier_runs(isolated, await clearinghouse_status(isolated))
            assert (view.reports, view.runs) == (1, 1)  # the new chain
            mine = next(r for r in view.earlier_runs if r.run_id == ended)
            assert mine.status == "TERMINATED" and "just because" in mine.reason and "mallory@keyless" in mine.reason
            assert (mine.reports, mine.cases_opened, mine.duplicates) == (1, 1, 0)
            assert view.all_reports == view.reports + sum(r.reports or 0 for r in view.earlier_runs) >= 2
        finally:
            await isolated.get_workflow_handle(CLEARINGHOUSE_ID).terminate("test finished")
