"""The transparency report: aggregate, unclassified figures from visibility alone."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.agency import AgencyClient, LabClient
from api.report import ReviewFigures, check_holds, summarise, transparency_report
from api.reviews import status
from domain.agencies import Agency
from domain.policy import Policy
from domain.status import ReviewStatus, Stage
from tests.conftest import disclose, mythos, quick_policy, wait_stage
from tests.test_audit import TEST_OUTPUT, run_cli

NSA = Agency.NSA


async def finish(client: Client, rid: str) -> ReviewStatus:
    return await client.get_workflow_handle(rid, result_type=ReviewStatus).result()


async def reviews_of_every_kind(client: Client, env: WorkflowEnvironment, policy: Policy, lab: str) -> None:
    """One lab's reviews: not covered, concluded early, window elapsed, withdrawn, and one still open."""
    ids = [await disclose(client, mythos(lab=lab), policy) for _ in range(5)]
    not_covered, early, elapsed, withdrawn, still_open = ids
    for rid in ids:
        await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    nsa = AgencyClient(client, NSA)
    await nsa.determine(not_covered, covered=False, rationale="below the thresholds")
    for rid in (early, elapsed):
        await nsa.determine(rid, covered=True, agencies=["dod"], rationale="covered")
        await wait_stage(client, rid, Stage.UNDER_REVIEW)
    await AgencyClient(client, Agency.DOD).conclude(early)
    await env.fast_forward(client.get_workflow_handle(elapsed), timedelta(days=31))
    await LabClient(client).withdraw(withdrawn, "leaving the program")
    for rid in (not_covered, early, elapsed, withdrawn):
        await finish(client, rid)
    # Visibility is eventually consistent: wait until it shows every review's final stage.
    for _ in range(100):
        report = await transparency_report(client, lab=lab)
        if report.by_stage.get("RELEASED") == 3 and report.by_stage.get("WITHDRAWN") == 1:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"visibility never caught up: {report.by_stage}")


async def test_the_report_counts_and_times_one_labs_reviews(
    client: Client, env: WorkflowEnvironment, policy: Policy, tmp_path: Path
) -> None:
    lab = f"ReportLab-{uuid.uuid4().hex[:8]}"
    await reviews_of_every_kind(client, env, policy, lab)
    seen: list[tuple[int, int | None]] = []
    report = await transparency_report(client, lab=lab, progress=lambda n, total: seen.append((n, total)))
    assert seen[-1] == (5, 5), "progress over every review"
    assert report.reviews == 5 and report.open == 1
    assert report.by_stage == {"AWAITING_DETERMINATION": 1, "RELEASED": 3, "WITHDRAWN": 1}
    assert report.by_outcome == {"NOT_COVERED": 1, "CONCLUDED_EARLY": 1, "WINDOW_ELAPSED": 1, "WITHDRAWN": 1}
    assert (report.determined, report.covered) == (3, 2)
    assert report.determined_by == {"nsa": 3}
    assert abs(report.covered_share - 2 / 3) < 1e-9
    assert (report.windows_closed_early, report.windows_elapsed) == (1, 1)
    assert report.disclosure_to_determination.count == 3
    assert report.disclosure_to_release.count == 3
    # The elapsed window held its release for the full 30 days, and not a minute longer.
    longest = timedelta(seconds=report.determination_to_release_covered.max_seconds)
    assert timedelta(days=30) <= longest < timedelta(days=30, minutes=1)
    assert report.holds.ok and report.holds.checked == 3, report.holds
    # The meter: one cell (one policy version, this quarter), no flag.
    assert report.meter is not None and not report.meter.flags
    [cell] = report.meter.reviews
    assert (cell.policy_version, cell.reviews, cell.suppressed) == ("eo-2026.1", 5, False)
    assert (cell.covered, cell.determined, cell.decided_by_nsa, cell.policy_defaults) == (2, 3, 3, 0)
    assert (cell.withdrawals, cell.refilings, cell.windows_elapsed, cell.windows_concluded_early) == (1, 0, 1, 1)
    assert cell.days_held.count == 3 and cell.days_held.max_days >= 30
    assert cell.agency_participation == {"dod": 2}
    # Unclassified fields only: nothing from a payload, a query or a history.
    text = report.model_dump_json()
    for classified in ("rationale", "below the thresholds", "leaving the program", "concern"):
        assert classified not in text

    address = client.service_client.config.target_host
    png = TEST_OUTPUT / "transparency-report.png"
    TEST_OUTPUT.mkdir(exist_ok=True)
    r = await asyncio.to_thread(run_cli, "report", "--lab", lab, "--json", "--png", str(png), "--address", address)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["by_outcome"] == report.by_outcome
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = await asyncio.to_thread(run_cli, "report", "--lab", lab, "--address", address)
    assert r.returncode == 0, r.stderr
    assert "no release waited longer than the policy allows" in r.stdout
    assert "1 closed early, 1 ran to the deadline" in r.stdout
    assert "determined by: the NSA: 3" in r.stdout


def test_a_refiled_review_counts_once_with_both_runs() -> None:
    """Issue 10: `report` counted each run as a review (a withdrawn and refiled review was two)."""
    start = datetime(2026, 7, 1, tzinfo=UTC)
    withdrawn = ReviewFigures(
        review_id="review-a", lab="L", policy_version="p", stage="WITHDRAWN", outcome="WITHDRAWN", covered=None,
        disclosed_at=start, closed_at=start + timedelta(days=1), window_deadline=None, determined_at=None,
        released_at=None, execution="COMPLETED",
    )  # fmt: skip
    refiled = withdrawn.model_copy(
        update={"stage": "AWAITING_DETERMINATION", "outcome": None, "closed_at": None, "execution": "RUNNING",
                "disclosed_at": start + timedelta(days=2)}  # fmt: skip
    )
    other = withdrawn.model_copy(update={"review_id": "review-b"})
    report = summarise([withdrawn, refiled, other], query="q", since=None, lab=None, now=start + timedelta(days=3))
    assert (report.reviews, report.runs, report.open) == (2, 3, 1)


def test_the_hold_check_flags_a_late_release_and_an_overdue_review() -> None:
    start = datetime(2026, 7, 1, tzinfo=UTC)

    def review(rid: str, **fields: object) -> ReviewFigures:
        base = dict(review_id=rid, lab="L", policy_version="eo-2026.1", disclosed_at=start, closed_at=None)
        return ReviewFigures.model_validate({**base, "window_deadline": None, "outcome": None, **fields})

    determined = start + timedelta(days=3)
    late = review(
        "late", stage="RELEASED", outcome="WINDOW_ELAPSED", covered=True, determined_at=determined,
        window_deadline=determined + timedelta(days=30), released_at=determined + timedelta(days=32),
    )  # fmt: skip
    long_window = review(
        "long", stage="RELEASED", outcome="WINDOW_ELAPSED", covered=True, determined_at=determined,
        window_deadline=determined + timedelta(days=45), released_at=determined + timedelta(days=45),
    )  # fmt: skip
    slow_nsa = review(
        "slow", stage="RELEASED", outcome="NOT_COVERED", covered=False,
        determined_at=start + timedelta(days=40), released_at=start + timedelta(days=40),
    )  # fmt: skip
    overdue = review(
        "overdue", stage="UNDER_REVIEW", covered=True, determined_at=determined,
        window_deadline=determined + timedelta(days=30), released_at=None,
    )  # fmt: skip
    fine = review(
        "fine", stage="RELEASED", outcome="CONCLUDED_EARLY", covered=True, determined_at=determined,
        window_deadline=determined + timedelta(days=30), released_at=determined + timedelta(days=2),
    )  # fmt: skip
    old = review("old", stage="RELEASED", outcome=None, covered=True, determined_at=None, released_at=None)
    check = check_holds([late, long_window, slow_nsa, overdue, fine, old], now=start + timedelta(days=60))
    assert not check.ok
    assert sorted({v.review_id for v in check.violations}) == ["late", "long", "overdue", "slow"]
    assert (check.checked, check.not_checkable) == (5, 1)


async def test_report_bad_input(client: Client) -> None:
    address = client.service_client.config.target_host
    r = await asyncio.to_thread(run_cli, "report", "--since", "last tuesday", "--address", address)
    assert r.returncode == 2 and "--since 'last tuesday'" in r.stderr
    r = await asyncio.to_thread(run_cli, "report", "--png", "chart.jpg", "--address", address)
    assert r.returncode == 2 and "must end in .png" in r.stderr


def test_a_lab_filter_cannot_rewrite_the_visibility_query() -> None:
    from api.report import visibility_query

    assert visibility_query(lab="Anthropic").endswith('AND Lab = "Anthropic"')
    with pytest.raises(ValueError, match="quotes and backslashes"):
        visibility_query(lab='x" OR WorkflowType = "VulnerabilityCase')


async def test_the_meter_flags_runs_cut_short_or_rewritten_and_suppresses_small_cells(client: Client) -> None:
    lab = f"MeterLab-{uuid.uuid4().hex[:8]}"
    tiny, single = (quick_policy(version=f"{name}-{uuid.uuid4().hex[:6]}.1") for name in ("tiny", "single"))
    reset_me, refile_me = [await disclose(client, mythos(lab=lab), tiny) for _ in range(2)]
    cancel_me = await disclose(client, mythos(lab=lab), single)
    for rid in (reset_me, refile_me, cancel_me):
        await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    # Withdrawn and refiled: a new run under the same id.
    await LabClient(client).withdraw(refile_me, "not yet")
    await finish(client, refile_me)
    refiled = mythos(lab=lab, model_version=(await status(client, refile_me)).model_version)
    assert await disclose(client, refiled, tiny) == refile_me
    # Reset (the old run is terminated, a new one replays from the first workflow task), and cancelled.
    handle = client.get_workflow_handle(reset_me)
    first_task = next(
        e.event_id for e in (await handle.fetch_history()).events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    )  # fmt: skip
    await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=reset_me),
            reason="test: someone with namespace access rewrites a review", request_id=str(uuid.uuid4()),
            workflow_task_finish_event_id=first_task,
        )
    )  # fmt: skip
    await client.get_workflow_handle(cancel_me).cancel()

    for _ in range(150):
        report = await transparency_report(client, lab=lab)
        cells = {c.policy_version: c for c in report.meter.reviews}
        flags = {(f.review_id, tuple(f.reasons)) for f in report.meter.flags}
        if sum(c.reviews for c in cells.values()) == 5 and len(flags) == 3:
            break
        await asyncio.sleep(0.2)
    assert cells[tiny.version].reviews == 4 and not cells[tiny.version].suppressed
    assert (cells[tiny.version].withdrawals, cells[tiny.version].refilings) == (1, 1)
    # One review under its own policy version: only the count is published.
    assert cells[single.version].suppressed and cells[single.version].reviews == 1
    assert cells[single.version].days_held is None and cells[single.version].covered is None
    reasons = {r for _, rs in flags for r in rs}
    assert {(reset_me, ("run terminated",)), (reset_me, ("run reset",))} <= flags, flags
    assert reasons & {"run cancelled", "cancellation requested"}, flags
