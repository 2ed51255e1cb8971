"""The clocks a lab can plan on: the bound on the whole hold, the earliest and latest release on
`status` at each stage, and the delay a review imposed on the lab's own date."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.agency import AgencyClient, LabClient
from domain import search_attributes as sa
from domain.agencies import Agency
from domain.clocks import intended_release_at
from domain.messages import Verdict
from domain.policy import POLICY_DIR, PolicyError, load_policy
from domain.status import Outcome, ReviewStatus, Stage
from tests.conftest import disclose, mythos, quick_policy, running, wait_stage
from tests.test_audit import run_cli
from tests.test_cli import Run, disclosure_file
from worker import REVIEW, WorkerConfig, build_workers

EVERYONE_BUT_DOD = [REVIEW, "whitehouse", "dhs", "commerce", "treasury", "nsa"]
# Timers fire on the server's clock and the release starts in the next workflow task.
MARGIN = timedelta(minutes=1)


async def result(client: Client, rid: str) -> ReviewStatus:
    return await client.get_workflow_handle(rid, result_type=ReviewStatus).result()


def test_both_readings_of_the_order_load_and_the_loader_refuses_clocks_that_cannot_fit(tmp_path: Path) -> None:
    from_determination = load_policy("eo-2026")
    from_disclosure = load_policy("eo-2026-from-disclosure")
    assert from_determination.hold_bound == timedelta(days=49)  # 5 + 14 + 30: today's reading
    assert from_disclosure.hold_bound == timedelta(days=30)  # 30 days in all
    assert from_disclosure.review_window == timedelta(days=30)  # cut to what is left, at run time
    text = (POLICY_DIR / "eo-2026-from-disclosure.toml").read_text()
    no_window = tmp_path / "no-window.toml"
    no_window.write_text(text.replace('max_hold = "P30D"', 'max_hold = "P19D"'))
    with pytest.raises(PolicyError, match="leaves no review window"):
        load_policy(no_window)
    # A bound no clock reaches is allowed (a policy that shortens a clock keeps the order's bound).
    loose = tmp_path / "loose.toml"
    loose.write_text(text.replace('max_hold = "P30D"', 'max_hold = "P60D"'))
    assert load_policy(loose).hold_bound == timedelta(days=60)


async def test_at_its_bound_a_review_releases_whatever_is_pending(
    isolated: Client, worker_config: WorkerConfig
) -> None:
    # DoD never answers, the NSA never decides (its silence covers, by this policy), and no
    # participant ever concludes: only the bound on the whole hold (8 s) ends the 30-s window.
    policy = quick_policy(
        version="bound-test.1", standards_check_timeout=timedelta(seconds=2),
        standards_check_attempt_timeout=timedelta(seconds=1), determination_deadline=timedelta(seconds=2),
        on_nsa_silence="covered", review_window=timedelta(seconds=30), max_hold=timedelta(seconds=8),
    )  # fmt: skip
    async with running(build_workers(isolated, EVERYONE_BUT_DOD, worker_config)):
        rid = await disclose(isolated, mythos(intended_release_date="2030-01-01"), policy)
        s = await wait_stage(isolated, rid, Stage.STANDARDS_CHECK, Stage.AWAITING_DETERMINATION)
        assert s.hold_deadline is not None and s.hold_deadline - s.disclosed_at == timedelta(seconds=8)
        assert s.latest_release == s.hold_deadline, "the bound is the latest release from the start"
        assert s.past_intended_release == "no"
        final = await result(isolated, rid)
    assert final.stage == Stage.RELEASED and final.outcome == Outcome.WINDOW_ELAPSED
    assert final.determination_by_default and final.clock_ran_out == "max_hold"
    dod = next(v for v in final.standards if v.agency == Agency.DOD)
    assert dod.verdict == Verdict.NO_RESPONSE
    releasing = next(t for t in final.transitions if t.stage == Stage.RELEASING)
    assert "max_hold ran out" in releasing.reason
    assert final.hold_ended_at == releasing.at
    assert final.hold_ended_at - final.disclosed_at < timedelta(seconds=8 + 3)
    assert final.delay_seconds == 0 and final.past_intended_release == "no"


async def test_read_from_disclosure_the_window_ends_thirty_days_after_disclosure(
    client: Client, env: WorkflowEnvironment
) -> None:
    policy = load_policy("eo-2026-from-disclosure")
    rid = await disclose(client, mythos(intended_release_date=date.today()), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await AgencyClient(client, Agency.NSA).determine(rid, covered=True, agencies=["dod", "dhs"], rationale="r")
    s = await wait_stage(client, rid, Stage.UNDER_REVIEW)
    # The window is what is left of 30 days from disclosure, not 30 days from the determination.
    assert s.window_deadline == s.hold_deadline == s.latest_release
    assert s.hold_deadline - s.disclosed_at == timedelta(days=30)
    await AgencyClient(client, Agency.DOD).conclude(rid)  # DHS never concludes
    await env.fast_forward(client.get_workflow_handle(rid), timedelta(days=31))
    final = await result(client, rid)
    assert final.outcome == Outcome.WINDOW_ELAPSED and final.clock_ran_out == "max_hold"
    assert final.hold_ended_at is not None
    held = final.hold_ended_at - final.disclosed_at
    assert timedelta(days=30) - MARGIN <= held <= timedelta(days=30) + MARGIN
    # The lab meant to release on the day it disclosed: the review cost it the whole hold.
    expected = int((final.hold_ended_at - intended_release_at(final.intended_release_date)).total_seconds())
    assert final.delay_seconds == expected and final.delay_seconds > 29 * 86400
    assert final.past_intended_release == "yes"
    attrs = await visible(client, rid, sa.SECONDS_DELAYED)
    assert attrs.get(sa.SECONDS_DELAYED) == float(expected)
    assert attrs.get(sa.CLOCK_RAN_OUT) == "max_hold"
    assert sorted(attrs.get(sa.PARTICIPANTS) or []) == ["dhs", "dod"]


async def test_earliest_and_latest_release_at_each_stage(client: Client) -> None:
    # The lab means to release 40 days from now: before the NSA decides, the review may reach past
    # it (14 days for the NSA, then 30 of window); once the window is set, it cannot.
    intended = date.today() + timedelta(days=40)
    rid = await disclose(client, mythos(intended_release_date=intended), load_policy("eo-2026"))
    s = await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    assert s.intended_release_date == intended
    assert s.determination_deadline is not None and s.hold_deadline == s.disclosed_at + timedelta(days=49)
    assert s.latest_release == min(s.determination_deadline + timedelta(days=30), s.hold_deadline)
    # Nothing in the policy holds a model a minimum time: the earliest release is now.
    assert s.disclosed_at <= s.earliest_release <= s.latest_release
    assert s.past_intended_release == "possibly"

    assert f"latest release: {s.latest_release:%Y-%m-%d %H:%M} UTC" in await current_details(client, rid)

    await AgencyClient(client, Agency.NSA).determine(rid, covered=True, agencies=["dod"], rationale="r")
    s = await wait_stage(client, rid, Stage.UNDER_REVIEW)
    assert s.latest_release == s.window_deadline
    assert s.window_deadline - s.transitions[-1].at == timedelta(days=30)
    assert s.earliest_release <= s.latest_release
    assert s.past_intended_release == "no"

    await AgencyClient(client, Agency.DOD).conclude(rid)
    final = await result(client, rid)
    releasing = next(t for t in final.transitions if t.stage == Stage.RELEASING)
    assert final.earliest_release == final.latest_release == final.hold_ended_at == releasing.at
    assert final.clock_ran_out is None, "every agency concluded: no clock ended the hold"
    assert final.delay_seconds == 0 and final.past_intended_release == "no"


async def current_details(client: Client, rid: str) -> str:
    """What a watcher reads under Current Details in the Web UI."""
    metadata = await client.get_workflow_handle(rid).query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


async def visible(client: Client, rid: str, key: object) -> object:
    """The review's search attributes, once visibility shows `key` (it is eventually consistent)."""
    for _ in range(100):
        attrs = (await client.get_workflow_handle(rid).describe()).typed_search_attributes
        if attrs.get(key) is not None:  # type: ignore[call-overload]
            return attrs
        await asyncio.sleep(0.1)
    raise AssertionError(f"{rid}: {key} never became visible")


async def test_the_cli_warns_a_lab_whose_date_the_policy_may_overrun_and_shows_it_its_own_view(
    client: Client, tmp_path: Path
) -> None:
    address = client.service_client.config.target_host

    async def cli(*args: str) -> Run:
        r = await asyncio.to_thread(run_cli, *args, "--address", address)
        return Run(r.returncode, r.stdout, r.stderr)

    soon = disclosure_file(tmp_path, intended_release_date=(date.today() + timedelta(days=20)).isoformat())
    r = await cli("disclose", str(soon), "--policy", "eo-2026")
    assert r.code == 0, r.err  # participation is voluntary: a warning, never a refusal
    assert "warning: the intended release date" in r.err and "eo-2026.1" in r.err
    rid = r.out.strip()
    later = disclosure_file(tmp_path, intended_release_date=(date.today() + timedelta(days=60)).isoformat())
    r = await cli("disclose", str(later), "--policy", "eo-2026")
    assert r.code == 0 and r.err == "", r.err

    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    secret = "classified-rationale-" + rid[-6:]
    await AgencyClient(client, Agency.NSA).determine(rid, covered=True, agencies=["dod"], rationale=secret)
    await AgencyClient(client, Agency.DOD).submit_finding(rid, kind="capability", severity="low", summary=secret)
    r = await cli("status", rid, "--as", "lab", "--json")
    assert r.code == 0, r.err
    view = json.loads(r.out)
    assert view["stage"] == "UNDER_REVIEW" and view["covered"] is True
    assert view["participating_agencies"] == ["dod"] and view["window_deadline"]
    assert view["earliest_release"] <= view["latest_release"] and view["past_intended_release"] == "possibly"
    assert secret not in r.out and not {"standards", "determination", "findings", "transitions"} & view.keys()
    # The same view from Python (the earliest release is "now", so it moves between the two reads).
    same = (await LabClient(client).status(rid)).model_dump(mode="json")
    assert {**same, "earliest_release": None} == {**view, "earliest_release": None}
    r = await cli("status", rid, "--as", "lab")
    assert r.code == 0 and "UNDER_REVIEW" in r.out and secret not in r.out and "latest" in r.out
    r = await cli("status", rid, "--as", "nsa")
    assert r.code == 2 and "--as 'nsa'" in r.err
