"""Attacks on Treasury's cases and clearinghouse by anyone with namespace access (issue 8, item 5):
a signed report of another vulnerability linked into a case, a flood of `refresh_keys`, a case's
update budget spent by message volume, a case id squatted before the genuine report, and counters
or a case's state chosen in a start input. Each asserts that no decision, notice or count changed,
and that the attempt shows (in the case's or the clearinghouse's status, or its history)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from activities.clearinghouse import Outbox
from api.clearinghouse import VendorClient, case_status, clearinghouse_status
from domain.case import CaseInput, CaseState, CaseStatus, ExploitationObserved
from domain.clearinghouse import (
    CASE_WORKFLOW,
    CLEARINGHOUSE_ID,
    CLEARINGHOUSE_TASK_QUEUE,
    CLEARINGHOUSE_WORKFLOW,
    EXPLOITATION_OBSERVED,
    LINK_REPORT,
    REFRESH_KEYS,
    REPORT_VULNERABILITY,
    AppliedReport,
    ClearinghouseState,
    IntakeReceipt,
    VulnerabilityIntake,
)
from domain.policy import POLICY_DIR, Policy, load_policy
from domain.vulnerability import case_id_for
from tests.conftest import (
    ISOLATED_NAMESPACE,
    report_signed,
    running,
    send_case,
    signer_for,
    update_events,
    vulnerability,
)
from tests.test_clearinghouse import open_case, settled, wait_case
from tests.test_clearinghouse_intake import end_cases
from tests.test_clearinghouse_runs import fresh_clearinghouse
from worker import WorkerConfig, build_workers

VENDOR = "TLSKit Foundation"
CHANGING = {"refused", "refused_total"}  # what a dropped message may change: its record


def notices(config: WorkerConfig, case_id: str) -> list[tuple[str, str]]:
    return [(kind, recipient) for kind, recipient, _ in Outbox(config.data_dir / "clearinghouse.db").notices(case_id)]


def small_runs(worker_config: WorkerConfig, tmp_path: Path, per_run: int) -> WorkerConfig:
    """Treasury's worker under a policy whose clearinghouse and cases continue as new after `per_run` messages."""
    file = tmp_path / "small-runs.toml"
    file.write_text(
        (POLICY_DIR / "eo-2026.toml").read_text().replace("reports_per_run = 1000", f"reports_per_run = {per_run}")
    )
    return dataclasses.replace(worker_config, clearinghouse_policy=str(file))


async def until(check, timeout: float = 30):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (result := await check()):
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.1)
    return result


# ---------------------------------------------------------------- a case


async def test_a_signed_report_of_another_vulnerability_cannot_be_linked_into_a_case(
    client: Client, policy: Policy, worker_config: WorkerConfig
) -> None:
    """The attack of issue 8: a validly signed report for another vulnerability, signalled to a case
    as `link_report`, marked it exploited (embargo 45 -> 7 days, advisories to other sectors)."""
    target = await open_case(client, policy, sectors=["energy"])
    before, sent = await case_status(client, target.case_id), notices(worker_config, target.case_id)
    other = vulnerability(sectors=["water", "healthcare-and-public-health"], exploited=True)
    signed = signer_for("partner:shieldsec").sign(
        CLEARINGHOUSE_ID, REPORT_VULNERABILITY, VulnerabilityIntake(sender="partner:shieldsec", report=other)
    )
    await client.get_workflow_handle(target.case_id).signal(LINK_REPORT, signed)

    after = await until(lambda: _refused(client, target.case_id))
    assert after.model_dump(exclude=CHANGING) == before.model_dump(exclude=CHANGING)
    assert not after.exploited and after.embargo_deadline == before.embargo_deadline
    assert notices(worker_config, target.case_id) == sent
    assert after.refused_total == 1 and "another vulnerability" in after.refused[0]
    assert "partner:shieldsec" in after.refused[0]


async def _refused(client: Client, case_id: str):
    c = await case_status(client, case_id)
    return c if c.refused_total else None


async def test_a_refresh_flood_cannot_spend_a_case_and_the_vendor_is_heard(client: Client, policy: Policy) -> None:
    """Issue 8: 1,999 unsigned `refresh_keys` exhausted a case's update budget, so the vendor's
    signed fix was refused. Now a refresh is taken at most once per interval; the rest are turned
    away by the validator (nothing written), and the vendor's fix goes through."""
    c = await open_case(client, policy)
    handle = client.get_workflow_handle(c.case_id)
    started = time.monotonic()

    async def refresh(i: int) -> bool:
        try:
            await handle.execute_update(REFRESH_KEYS, f"vendor:stranger-{i}", id=f"flood-{i}")
            return True
        except WorkflowUpdateFailedError:
            return False

    accepted = 0
    for chunk in range(0, 150, 10):  # ten at a time: the server's cap on updates in flight
        accepted += sum(await asyncio.gather(*(refresh(i) for i in range(chunk, chunk + 10))))
    elapsed = time.monotonic() - started
    assert accepted <= 1 + int(elapsed // 10)
    # What was taken shows in the history; what was turned away wrote nothing.
    flood = [u for u in await update_events(client, c.case_id) if u.startswith("flood-")]
    assert len(flood) == accepted

    fixed = await VendorClient(client, VENDOR, signer_for("vendor:tlskit-foundation")).fix_ready(c.case_id, ["3.2.5"])
    assert fixed.fix is not None and fixed.status in (CaseStatus.FIX_READY, CaseStatus.PATCH_DISTRIBUTED)


async def test_message_volume_continues_a_case_as_new_and_nothing_is_lost(
    isolated: Client, worker_config: WorkerConfig, tmp_path: Path
) -> None:
    """No run of a case can exhaust its update budget: it continues as new (here after every 3
    messages) with its whole state; notices are not sent again and the clock does not move."""
    treasury = small_runs(worker_config, tmp_path, per_run=3)
    policy = load_policy("eo-2026")
    await fresh_clearinghouse(isolated)
    async with running(build_workers(isolated, ["treasury"], treasury)):
        try:
            c = await open_case(isolated, policy, sectors=["energy"])
            seen = ExploitationObserved(sender="operator:energy", evidence="e0")
            first = await send_case(isolated, c.case_id, EXPLOITATION_OBSERVED, seen)
            deadline, sent = first.embargo_deadline, notices(treasury, c.case_id)
            for i in range(1, 8):
                message = ExploitationObserved(sender="operator:energy", evidence=f"e{i}")
                await send_case(isolated, c.case_id, EXPLOITATION_OBSERVED, message)
            vendor = VendorClient(isolated, VENDOR, signer_for("vendor:tlskit-foundation"))
            fixed = await vendor.fix_ready(c.case_id, ["3.2.5"])
            assert fixed.runs >= 3
            assert [e.evidence for e in fixed.exploitation] == [f"e{i}" for i in range(8)]
            assert fixed.embargo_deadline == deadline and fixed.fix is not None
            done = await wait_case(isolated, c.case_id, CaseStatus.PATCH_DISTRIBUTED)
            assert [t.status for t in done.transitions].count(CaseStatus.VENDOR_NOTIFIED) == 1
            new = notices(treasury, c.case_id)
            assert new[: len(sent)] == sent and len(new) == len(set(new))  # each notice once
            # The fix filled the run: the case distributed it, then continued as new. Every run the
            # server lists as continued is counted in the case's own state.
            for _ in range(200):
                runs = [wf async for wf in isolated.list_workflows(f'WorkflowId = "{c.case_id}"')]
                continued = sum(wf.status == WorkflowExecutionStatus.CONTINUED_AS_NEW for wf in runs)
                if continued == (await case_status(isolated, c.case_id)).runs - 1:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"{continued} runs continued as new, the case counts {done.runs}")
        finally:
            await isolated.get_workflow_handle(CLEARINGHOUSE_ID).terminate("test finished")
            await end_cases(isolated)


# ---------------------------------------------------------------- ids and start inputs


async def test_a_squatted_case_id_still_gets_its_genuine_case_and_notice(
    env: WorkflowEnvironment, isolated: Client, worker_config: WorkerConfig
) -> None:
    """Issue 8: starting any workflow under a case's (predictable) id made the genuine report count
    as a duplicate, with no case and no notice."""
    stranger = await env.connect_client(namespace=ISOLATED_NAMESPACE)  # no keys at all
    report = vulnerability(sectors=["energy"])
    derived = case_id_for(report.fingerprint)
    squatter = await stranger.start_workflow("Squatter", id=derived, task_queue="squatters")
    policy = load_policy("eo-2026")
    await fresh_clearinghouse(isolated)
    async with running(build_workers(isolated, ["treasury"], worker_config)):
        try:
            genuine = VulnerabilityIntake(sender="partner:shieldsec", report=report)
            receipt = await report_signed(isolated, genuine, policy)
            assert not receipt.duplicate
            assert receipt.case_id.startswith(f"{derived}-") and len(receipt.case_id) > len(derived) + 8
            case = await settled(isolated, receipt.case_id)
            assert case.vendor_party == "vendor:tlskit-foundation"
            assert ("vendor-notice", "vendor:tlskit-foundation") in notices(worker_config, receipt.case_id)
            assert (await clearinghouse_status(isolated)).foreign_case_ids == [derived]
            # A later report of the same vulnerability joins the genuine case, not the squatter.
            again = await report_signed(isolated, VulnerabilityIntake(sender="operator:energy", report=report), policy)
            assert (again.case_id, again.duplicate) == (receipt.case_id, True)
            assert len((await case_status(isolated, receipt.case_id)).reports) == 2
            totals = await clearinghouse_status(isolated)
            assert (totals.reports, totals.cases_opened, totals.duplicates) == (2, 1, 1)
        finally:
            await isolated.get_workflow_handle(CLEARINGHOUSE_ID).terminate("test finished")
            await end_cases(isolated)
            await squatter.terminate("test finished")


async def test_counters_in_a_clearinghouse_start_input_are_ignored(
    isolated: Client, worker_config: WorkerConfig
) -> None:
    """An insider (payload key, no Treasury key) starts the clearinghouse with totals and a
    'carried' receipt of their own: the totals count from zero, the receipt is not honoured, and
    the status says the input was ignored."""
    policy = load_policy("eo-2026")
    await fresh_clearinghouse(isolated)
    intake = signer_for("partner:shieldsec").sign(
        CLEARINGHOUSE_ID,
        REPORT_VULNERABILITY,
        VulnerabilityIntake(sender="partner:shieldsec", report=vulnerability(sectors=[])),
    )
    fake = IntakeReceipt(case_id="case-0000000000000000", fingerprint="0" * 64, duplicate=True)
    await isolated.start_workflow(
        CLEARINGHOUSE_WORKFLOW,
        ClearinghouseState(
            policy_version=policy.version,
            policy=policy.clearinghouse,
            reports=1_000_000,
            cases_opened=999_999,
            duplicates=1,
            runs=40,
            applied=[
                AppliedReport(message_id=intake.message_id, sender=intake.sender, receipt=fake, at=datetime.now(UTC))
            ],
            carried_from="a-run-id-the-attacker-guessed",
        ),
        id=CLEARINGHOUSE_ID,
        task_queue=CLEARINGHOUSE_TASK_QUEUE,
    )
    async with running(build_workers(isolated, ["treasury"], worker_config)):
        try:
            receipt = await report_signed(isolated, intake, policy)
            assert receipt.case_id == case_id_for(intake.report.fingerprint) and not receipt.duplicate
            totals = await clearinghouse_status(isolated)
            assert (totals.runs, totals.reports, totals.cases_opened, totals.duplicates) == (1, 1, 1, 0)
            assert totals.start_input_ignored
        finally:
            await isolated.get_workflow_handle(CLEARINGHOUSE_ID).terminate("test finished")
            await end_cases(isolated)


async def test_a_case_started_with_a_state_of_its_own_does_nothing(
    client: Client, policy: Policy, worker_config: WorkerConfig
) -> None:
    """An insider starts a case as if it continued an earlier run, already disclosed: it is not
    resumed (the run it names is not the one it continues), fails its origin check, notifies
    nobody, and the genuine report still opens the case."""
    report = vulnerability(sectors=["energy"])
    case_id = case_id_for(report.fingerprint)
    intake = signer_for("partner:shieldsec").sign(
        CLEARINGHOUSE_ID, REPORT_VULNERABILITY, VulnerabilityIntake(sender="partner:shieldsec", report=report)
    )
    now = datetime.now(UTC)
    forged_state = CaseState(
        case_id=case_id,
        fingerprint=report.fingerprint,
        policy_version=policy.version,
        report=report,
        status=CaseStatus.DISCLOSED,
        received_at=now,
        reports=[],
        sectors=list(report.sectors),
        exploited=True,
        vendor_notified_at=now,
        embargo_deadline=now,
        disclosed_at=now,
        disclosure_reason="forged",
        runs=7,
    )
    forged = await client.start_workflow(
        CASE_WORKFLOW,
        CaseInput(
            case_id=case_id,
            fingerprint=report.fingerprint,
            intake=intake,
            policy_version=policy.version,
            policy=policy.clearinghouse,
            carried=forged_state,
            carried_from="some-run",
        ),
        id=case_id,
        task_queue=CLEARINGHOUSE_TASK_QUEUE,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await forged.result()
    assert "not a genuine case" in str(failed.value.cause)
    assert notices(worker_config, case_id) == []
    receipt = await report_signed(client, intake, policy)
    assert (receipt.case_id, receipt.duplicate) == (case_id, False)
    genuine = await settled(client, case_id)
    assert genuine.runs == 1 and genuine.status == CaseStatus.VENDOR_NOTIFIED
    assert ("vendor-notice", "vendor:tlskit-foundation") in notices(worker_config, case_id)
