"""Withdrawal and release agree: the lab may withdraw until the first partner is granted access,
never after (a partner is granted once per review: tests/test_reset_grants.py); a run that can never
finish is closed by an operator with a recorded reason, and the review can be refiled."""

from __future__ import annotations

import asyncio
import threading

import pytest
from temporalio import activity
from temporalio.client import Client

from activities.release import ReleaseDesk
from activities.store import RecordStore
from api.agency import AgencyClient, LabClient
from api.errors import Rejected, UnknownReview
from api.reviews import close, status
from domain.attestation import Attested
from domain.ids import review_id_for
from domain.policy import Policy
from domain.review import GRANT_ACCESS, VET_PARTNER, WORKFLOW_TYPE, PartnerRequest
from domain.status import Outcome, ReviewStatus, Stage
from tests.conftest import disclose, mythos, running, wait_stage
from worker import WorkerConfig, build_workers


class HeldGrant(ReleaseDesk):
    """The first grant starts, then waits for the test: the withdraw/grant race, held open."""

    def __init__(self, store: RecordStore) -> None:
        super().__init__(store)
        self.started = threading.Event()
        self.proceed = threading.Event()

    @activity.defn(name=GRANT_ACCESS)
    def grant_access(self, request: PartnerRequest) -> Attested:
        self.started.set()
        self.proceed.wait(timeout=30)
        return super().grant_access(request)


async def result(client: Client, rid: str) -> ReviewStatus:
    return await client.get_workflow_handle(rid, result_type=ReviewStatus).result()


async def test_a_withdrawal_racing_the_first_grant_is_refused(
    isolated: Client, worker_config: WorkerConfig, policy: Policy
) -> None:
    """The issue: a withdrawal that arrived while the release was granting ended WITHDRAWN with
    partners granted. Now the grant in flight wins; the withdrawal is refused with the reason."""
    store = worker_config.store("review")
    desk = HeldGrant(store)
    async with running(build_workers(isolated, config=worker_config, release_desk=desk)):
        rid = await disclose(isolated, mythos(), policy)
        await wait_stage(isolated, rid, Stage.AWAITING_DETERMINATION)
        await AgencyClient(isolated, "nsa").determine(rid, covered=False, rationale="r")
        assert await asyncio.to_thread(desk.started.wait, 30), "the first grant never started"
        with pytest.raises(Rejected, match="the release is under way .* a withdrawal is no longer possible"):
            await LabClient(isolated).withdraw(rid, "pulled while granting")
        desk.proceed.set()
        final = await result(isolated, rid)
        with pytest.raises(Rejected, match=r"closed \(stage RELEASED\)"):
            await LabClient(isolated).withdraw(rid, "too late")
    assert final.stage == Stage.RELEASED and final.outcome == Outcome.NOT_COVERED
    assert final.withdrawal_reason is None
    assert final.partners_granted == ["gridco", "shieldsec"]
    run_id = (await isolated.get_workflow_handle(rid).describe()).run_id
    assert sorted((g.partner_id, g.run_id) for g in store.grants(rid)) == [("gridco", run_id), ("shieldsec", run_id)]


class HeldVetting(ReleaseDesk):
    """The first partner's vetting waits for the test: the release has begun, nothing is granted yet."""

    def __init__(self, store: RecordStore) -> None:
        super().__init__(store)
        self.started = threading.Event()
        self.proceed = threading.Event()

    @activity.defn(name=VET_PARTNER)
    def vet_partner(self, request: PartnerRequest) -> Attested:
        self.started.set()
        self.proceed.wait(timeout=30)
        return super().vet_partner(request)


async def test_a_withdrawal_before_the_first_grant_grants_nothing(
    isolated: Client, worker_config: WorkerConfig, policy: Policy
) -> None:
    store = worker_config.store("review")
    desk = HeldVetting(store)
    async with running(build_workers(isolated, config=worker_config, release_desk=desk)):
        rid = await disclose(isolated, mythos(), policy)
        await wait_stage(isolated, rid, Stage.AWAITING_DETERMINATION)
        await AgencyClient(isolated, "nsa").determine(rid, covered=False, rationale="r")
        assert await asyncio.to_thread(desk.started.wait, 30), "vetting never started"
        r = await LabClient(isolated).withdraw(rid, "before anything was granted")
        assert r.stage_before == Stage.RELEASING, "accepted while the release was vetting"
        assert r.stage == Stage.WITHDRAWN and r.outcome == Outcome.WITHDRAWN, "the receipt shows the stage after"
        final = await result(isolated, rid)
        desk.proceed.set()
    assert final.outcome == Outcome.WITHDRAWN and final.partners_granted == []
    assert store.grants(rid) == [], "the ledger and the review agree: nothing granted"


async def test_a_stuck_review_is_closed_by_an_operator_and_refiled(client: Client, policy: Policy) -> None:
    """The issue: a review whose input the workflow cannot decode stuck at DISCLOSED, and once
    terminated its model version was refused forever. Here someone with Temporal access starts a
    review under a lab's id with input no worker can decode (the door would have refused it)."""
    good = mythos()
    rid = review_id_for(good)
    broken = {"review_id": rid, "disclosure": {**good.model_dump(mode="json"), "training_compute_flop": None}}
    await client.start_workflow(WORKFLOW_TYPE, {**broken, "policy": policy.model_dump(mode="json")}, id=rid,
                                task_queue="review")  # fmt: skip
    # (The lab's own `disclose` would replace it too: it was never admitted; tests/security.)
    closed_run = await close(client, rid, "its input cannot be decoded (started outside the door)")
    with pytest.raises(Rejected, match="already closed"):
        await close(client, rid, "again")
    with pytest.raises(UnknownReview, match="ended without an outcome: TERMINATED"):
        await status(client, rid)

    assert await disclose(client, good, policy) == rid, "refiled under the same id, with a new run"
    s = await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    first = s.transitions[0]
    assert first.stage == Stage.DISCLOSED
    assert f"refiled after run {closed_run} ended TERMINATED" in first.reason
    assert "closed by an operator: its input cannot be decoded" in first.reason
    await LabClient(client).withdraw(rid, "done")
    with pytest.raises(UnknownReview, match="no review"):
        await close(client, "review-no-such-thing", "r")
