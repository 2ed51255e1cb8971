from datetime import timedelta

from api.agency import AgencyClient
from api.reviews import disclose, status
from domain.status import Outcome, Stage
from tests.conftest import mythos
import asyncio


async def wait_stage(client, rid, stage, timeout=20):
    for _ in range(int(timeout * 10)):
        s = await status(client, rid)
        if s.stage == stage:
            return s
        await asyncio.sleep(0.1)
    raise AssertionError(f"{rid} never reached {stage}; at {s.stage}")


async def test_smoke(client, env, policy):
    rid = await disclose(client, mythos(), policy)
    s = await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    print(s.standards)
    await AgencyClient(client, "nsa").determine(rid, covered=True, agencies=["dod"], rationale="x")
    await wait_stage(client, rid, Stage.UNDER_REVIEW)
    await AgencyClient(client, "dod").conclude(rid)
    handle = client.get_workflow_handle(rid)
    r = await handle.result()
    print(r)
