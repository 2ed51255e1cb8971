"""The transparency report: aggregate, unclassified figures from visibility alone."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.agency import AgencyClient, LabClient
from api.report import ReviewFigures, check_holds, transparency_report
from domain.agencies import Agency
from domain.policy import Policy
from domain.status import ReviewStatus, Stage
from tests.conftest import disclose, mythos, wait_stage
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
