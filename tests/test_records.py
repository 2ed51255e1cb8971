"""Records that say what happened: a default applied on a briefing the NSA never received is not
"the NSA was silent", and a determination arriving after the default is told so."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.agency import AgencyClient, LabClient
from api.errors import Rejected
from api.reviews import status
from api.waiting import until
from audit import audit_workflow
from domain.agencies import Agency
from domain.status import ReviewStatus, Stage
from tests.conftest import disclose, mythos, quick_policy, running, wait_stage
from worker import REVIEW, WorkerConfig, build_workers

WITHOUT_NSA = [REVIEW, "whitehouse", "dod", "dhs", "commerce", "treasury"]
DETERMINATION_CHECK = "the determination came from the NSA by its deadline"


def covering_default():
    return quick_policy(version="records-test.1", on_nsa_silence="covered", default_participants=[Agency.DHS])


async def default_applied(client: Client, env: WorkflowEnvironment, rid: str) -> ReviewStatus:
    await env.fast_forward(client.get_workflow_handle(rid), timedelta(days=15))
    return await wait_stage(client, rid, Stage.UNDER_REVIEW)


def seconds_scale():
    """The isolated namespace has no time skipping: real clocks, in seconds."""
    return covering_default().model_copy(
        update=dict(
            standards_check_timeout=timedelta(seconds=2),
            standards_check_attempt_timeout=timedelta(seconds=1),
            determination_deadline=timedelta(seconds=2),
        )
    )


async def briefed(client: Client, rid: str) -> None:
    await until(
        lambda: status(client, rid), lambda s: bool(s.nsa_briefed), timeout=10, interval=0.05,
        what=f"{rid}: the NSA's worker confirming the briefing",
    )  # fmt: skip


def check_detail(trail, name: str) -> str:
    [check] = [c for c in trail.checks if c.name == name]
    return check.detail


async def test_a_briefing_that_never_arrived_is_not_the_nsas_silence(
    isolated: Client, worker_config: WorkerConfig
) -> None:
    async with running(build_workers(isolated, WITHOUT_NSA, worker_config)):
        rid = await disclose(isolated, mythos(), seconds_scale())
        s = await wait_stage(isolated, rid, Stage.UNDER_REVIEW, timeout=30)
        assert s.determination_by_default and s.nsa_briefed is False
        assert s.determination is not None and "the briefing never reached the NSA" in s.determination.rationale
        trail = await audit_workflow(isolated, rid)
        assert "the briefing never reached the NSA" in check_detail(trail, DETERMINATION_CHECK)
        assert "NSA was silent" not in trail.model_dump_json()

        # The NSA's determination, sent late (say, queued through a server outage), is told why.
        with pytest.raises(Rejected, match="the policy default was already applied"):
            await AgencyClient(isolated, Agency.NSA).determine(rid, covered=False, rationale="late")
        await LabClient(isolated).withdraw(rid, "test over")


async def test_a_briefed_nsa_that_does_not_answer_was_silent(client: Client, env: WorkflowEnvironment) -> None:
    rid = await disclose(client, mythos(), covering_default())
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await briefed(client, rid)
    s = await default_applied(client, env, rid)
    assert s.nsa_briefed is True
    assert s.determination is not None and "the NSA was silent" in s.determination.rationale
    trail = await audit_workflow(client, rid)
    assert "the NSA was silent" in check_detail(trail, DETERMINATION_CHECK)
    await LabClient(client).withdraw(rid, "test over")
