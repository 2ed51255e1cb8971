"""Withdrawal at each stage, and agencies that never answer. These tests run their own
workers on the isolated namespace, so that an agency can be made silent."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from activities.release import ReleaseDesk
from api.agency import AgencyClient, LabClient
from api.errors import Rejected
from domain.agencies import Agency
from domain.attestation import Attested
from domain.messages import Verdict
from domain.policy import Policy
from domain.review import VET_PARTNER, PartnerRequest
from domain.status import Outcome, ReviewStatus, Stage
from tests.conftest import disclose, mythos, quick_policy, running, wait_stage
from worker import REVIEW, WorkerConfig, build_workers

EVERYONE_BUT_DOD = [REVIEW, "whitehouse", "dhs", "commerce", "treasury", "nsa"]


async def result(client: Client, rid: str) -> ReviewStatus:
    return await client.get_workflow_handle(rid, result_type=ReviewStatus).result()


async def test_an_agency_that_never_answers_is_recorded_as_no_response(
    isolated: Client, worker_config: WorkerConfig
) -> None:
    policy = quick_policy(
        version="quick-test.1",
        standards_check_timeout=timedelta(seconds=2),
        standards_check_attempt_timeout=timedelta(seconds=1),
    )
    async with running(build_workers(isolated, EVERYONE_BUT_DOD, worker_config)):
        rid = await disclose(isolated, mythos(), policy)
        s = await wait_stage(isolated, rid, Stage.AWAITING_DETERMINATION, timeout=20)
        by_agency = {v.agency: v for v in s.standards}
        assert by_agency[Agency.DOD].verdict == Verdict.NO_RESPONSE
        assert "no answer within 2 s" in by_agency[Agency.DOD].rationale
        assert by_agency[Agency.DHS].verdict == Verdict.CONCERN
        # Silence is not a block: the NSA decides and the review goes on.
        await AgencyClient(isolated, "nsa").determine(rid, covered=False, rationale="r")
        assert (await result(isolated, rid)).outcome == Outcome.NOT_COVERED


async def test_withdraw_during_standards_check_cancels_the_checks(
    isolated: Client, worker_config: WorkerConfig, policy: Policy
) -> None:
    async with running(build_workers(isolated, EVERYONE_BUT_DOD, worker_config)):
        rid = await disclose(isolated, mythos(), policy)
        s = await wait_stage(isolated, rid, Stage.STANDARDS_CHECK)
        # DoD has no worker: its check stays in flight until the lab withdraws.
        await wait_until_answered(isolated, rid, 4)
        await LabClient(isolated).withdraw(rid, "the lab is leaving the program")
        final = await result(isolated, rid)
    assert final.stage == Stage.WITHDRAWN
    assert final.outcome == Outcome.WITHDRAWN
    assert final.withdrawal_reason == "the lab is leaving the program"
    assert Stage.AWAITING_DETERMINATION not in [t.stage for t in final.transitions]
    assert s.pending_agencies  # it really was mid-check
    history = await isolated.get_workflow_handle(rid).fetch_history()
    cancel_requested = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED
    ]
    assert len(cancel_requested) == 1, "the DoD check in flight is cancelled"


async def wait_until_answered(client: Client, rid: str, count: int) -> None:
    for _ in range(200):
        s = await wait_stage(client, rid, Stage.STANDARDS_CHECK)
        if len(s.standards) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the other agencies never answered")


async def test_withdraw_while_awaiting_determination(client: Client, policy: Policy) -> None:
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await LabClient(client).withdraw(rid, "withdrawn before the NSA decided")
    final = await result(client, rid)
    assert final.outcome == Outcome.WITHDRAWN
    assert final.covered is None
    assert final.partners_granted == []


async def test_withdraw_during_the_review_window(client: Client, policy: Policy) -> None:
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await AgencyClient(client, "nsa").determine(rid, covered=True, agencies=["dod"], rationale="r")
    await wait_stage(client, rid, Stage.UNDER_REVIEW)
    await AgencyClient(client, "dod").submit_finding(rid, kind="capability", severity="high", summary="s")
    await LabClient(client).withdraw(rid, "model will not be released")
    final = await result(client, rid)
    assert final.outcome == Outcome.WITHDRAWN
    assert final.covered is True
    assert len(final.findings) == 1, "what was recorded before the withdrawal stays recorded"
    assert final.partners_granted == []
    with pytest.raises(Rejected):
        await AgencyClient(client, "dod").conclude(rid)


async def test_withdraw_after_release_is_rejected(client: Client, policy: Policy) -> None:
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await AgencyClient(client, "nsa").determine(rid, covered=False, rationale="r")
    await result(client, rid)
    with pytest.raises(Rejected):
        await LabClient(client).withdraw(rid, "too late")
    assert (await result(client, rid)).stage == Stage.RELEASED


class SlowVetting(ReleaseDesk):
    """Vetting that takes a moment, so the lab can withdraw while the release is under way."""

    @activity.defn(name=VET_PARTNER)
    def vet_partner(self, request: PartnerRequest) -> Attested:
        time.sleep(1.0)
        return super().vet_partner(request)


async def test_withdraw_during_release_stops_before_the_next_partner(
    isolated: Client, worker_config: WorkerConfig, policy: Policy
) -> None:
    store = worker_config.store("review")
    desk = SlowVetting(store)
    async with running(build_workers(isolated, config=worker_config, release_desk=desk)):
        rid = await disclose(isolated, mythos(), policy)
        await wait_stage(isolated, rid, Stage.AWAITING_DETERMINATION)
        await AgencyClient(isolated, "nsa").determine(rid, covered=False, rationale="r")
        await wait_stage(isolated, rid, Stage.RELEASING)
        await LabClient(isolated).withdraw(rid, "pulled during release")
        final = await result(isolated, rid)
    assert final.outcome == Outcome.WITHDRAWN
    assert Stage.RELEASING in [t.stage for t in final.transitions]
    assert Stage.RELEASED not in [t.stage for t in final.transitions]
    assert len(final.partners_granted) < 2, "the release stopped before every partner was granted"
    # The ledger and the review agree: a grant is either whole and reported, or never made.
    assert sorted(g.partner_id for g in store.grants(rid)) == sorted(final.partners_granted)
