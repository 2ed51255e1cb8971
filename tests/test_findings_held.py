"""A vulnerability finding is never dropped: with Treasury's worker away longer than the policy's
`forward_timeout`, the finding is held on the review (status, audit) and delivered to the
clearinghouse when Treasury returns. Isolated namespace, seconds-scale policy."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus

from api.agency import AgencyClient
from api.clearinghouse import case_status
from audit import audit_workflow
from domain.agencies import Agency
from domain.policy import ClearinghousePolicy
from domain.status import Outcome, ReviewStatus, Stage
from tests.conftest import disclose, mythos, quick_policy, running, vulnerability, wait_stage
from worker import REVIEW, WorkerConfig, build_workers

WITHOUT_TREASURY = [REVIEW, "whitehouse", "dod", "dhs", "commerce", "nsa"]


def outage_policy():
    return quick_policy(
        version="outage-test.1",
        standards_check_timeout=timedelta(seconds=2),
        standards_check_attempt_timeout=timedelta(seconds=1),
        release_activity_timeout=timedelta(seconds=5),
        clearinghouse=ClearinghousePolicy(forward_timeout=timedelta(seconds=2), activity_timeout=timedelta(seconds=5)),
    )


async def wait_for(client: Client, rid: str, ready, timeout: float = 30) -> ReviewStatus:
    from api.reviews import status
    from api.waiting import until

    return await until(
        lambda: status(client, rid), ready, timeout=timeout, what=rid,
        seen=lambda s: f"{s.stage}, pending {s.clearinghouse_pending}",
    )  # fmt: skip


def forwarding_check(trail) -> tuple[bool, str]:
    [check] = [c for c in trail.checks if c.name == "every vulnerability finding reached Treasury's clearinghouse"]
    return check.ok, check.detail


async def test_a_finding_outlives_a_treasury_outage_longer_than_forward_timeout(
    isolated: Client, worker_config: WorkerConfig
) -> None:
    policy = outage_policy()
    async with running(build_workers(isolated, WITHOUT_TREASURY, worker_config)):
        rid = await disclose(isolated, mythos(), policy)
        await wait_stage(isolated, rid, Stage.AWAITING_DETERMINATION, timeout=30)
        await AgencyClient(isolated, Agency.NSA).determine(rid, covered=True, agencies=["dod"], rationale="r")
        await wait_stage(isolated, rid, Stage.UNDER_REVIEW)
        dod = AgencyClient(isolated, Agency.DOD)
        s = await dod.submit_finding(
            rid, kind="vulnerability", severity="critical", summary="heap overflow", vulnerability=vulnerability()
        )
        finding_id = s.message_id
        await dod.conclude(rid)
        # The release is never held by the clearinghouse; the finding outlives forward_timeout.
        held = await wait_for(
            isolated,
            rid,
            lambda s: (
                s.stage == Stage.RELEASED and s.clearinghouse_pending.get(finding_id, "").startswith("undelivered")
            ),
        )
        await asyncio.sleep(1)  # well past the forward timeout: still held, not dropped
        still = await wait_for(isolated, rid, lambda s: True)
        assert still.clearinghouse_pending.keys() == {finding_id}, still
        assert still.clearinghouse_cases == {}
        assert held.outcome == Outcome.CONCLUDED_EARLY
        description = await isolated.get_workflow_handle(rid).describe()
        assert description.status == WorkflowExecutionStatus.RUNNING, "the review waits for its finding"
        ok, detail = forwarding_check(await audit_workflow(isolated, rid))
        assert not ok and "undelivered" in detail, detail

        # Treasury's worker returns: the held finding is delivered and the review closes.
        async with running(build_workers(isolated, ["treasury"], worker_config)):
            final = await asyncio.wait_for(
                isolated.get_workflow_handle(rid, result_type=ReviewStatus).result(), timeout=60
            )
            case = await case_status(isolated, final.clearinghouse_cases[finding_id])
    assert final.clearinghouse_pending == {} and final.clearinghouse_refused == {}
    assert final.stage == Stage.RELEASED and final.outcome == Outcome.CONCLUDED_EARLY
    assert case.case_id == final.clearinghouse_cases[finding_id]
    ok, detail = forwarding_check(await audit_workflow(isolated, rid))
    assert ok, detail
