"""Idempotent clients: a message sent again (a command run twice, a retry after a lost reply) is
applied once; a send through a short server outage gets through, with no stray traceback."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from pathlib import Path

import pytest
from temporalio.client import Client

from api.agency import AgencyClient
from api.clearinghouse import CaseParty
from api.reviews import status
from domain.agencies import Agency
from domain.policy import Policy, load_policy
from domain.status import Outcome, Stage
from infra.keys import KeyDirectory
from tests.conftest import disclose, mythos, running, vulnerability, wait_stage
from tests.restartable import RestartableServer
from tests.test_cli import cli  # noqa: F401 (fixture)
from worker import WorkerConfig, build_workers


async def covered(client: Client, policy: Policy) -> str:
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await AgencyClient(client, Agency.NSA).determine(rid, covered=True, agencies=["dod"], rationale="r")
    await wait_stage(client, rid, Stage.UNDER_REVIEW)
    return rid


async def test_the_same_finding_sent_twice_is_recorded_once(client: Client, policy: Policy, cli) -> None:  # noqa: F811
    rid = await covered(client, policy)
    dod = AgencyClient(client, Agency.DOD)
    # The API, run again (no key given: one derived from the content, the sender and the review).
    for _ in range(2):
        await dod.submit_finding(rid, kind="capability", severity="high", summary="self-replication")
    assert len((await status(client, rid)).findings) == 1
    # The same key twice: once, even with other words the second time.
    await dod.submit_finding(rid, kind="capability", severity="low", summary="a", message_id="dod-note-7")
    r = await dod.submit_finding(rid, kind="capability", severity="low", summary="b", message_id="dod-note-7")
    assert r.message_id == "dod-note-7"
    assert [f.summary for f in (await status(client, rid)).findings] == ["self-replication", "a"]
    # The CLI, run twice: the second run changes nothing and says where the review stands.
    args = ("finding", rid, "--agency", "dod", "--kind", "mitigation", "--severity", "low", "--summary", "m", "--json")
    first, second = [await cli(*args) for _ in range(2)]
    assert first.code == 0 and second.code == 0, (first.err, second.err)
    assert json.loads(second.out)["message_id"] == json.loads(first.out)["message_id"]
    assert len((await status(client, rid)).findings) == 3
    # A bad key never reaches Temporal.
    bad = await cli(*args[:-1], "--message-id", "no spaces allowed")
    assert bad.code == 2 and bad.err.count("\n") == 1 and "--message-id" in bad.err
    assert len((await status(client, rid)).findings) == 3


async def test_a_send_through_a_short_server_outage_gets_through(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, keys: KeyDirectory
) -> None:
    server = RestartableServer(tmp_path)
    await server.start()
    client = await server.client()
    policy = load_policy("eo-2026")
    try:
        async with running(build_workers(client, config=WorkerConfig(data_dir=tmp_path / "records"))):
            rid = await disclose(client, mythos(), policy)
            await wait_stage(client, rid, Stage.AWAITING_DETERMINATION, timeout=60)
            # A sender whose SDK gives up on an unreachable server after a second: a 3 s outage
            # stands for one longer than the SDK's own ten seconds of retries.
            sender = await server.client(impatient=True)
            await server.kill()
            nsa = AgencyClient(sender, Agency.NSA)
            determination = asyncio.create_task(nsa.determine(rid, covered=False, rationale="r"))
            report = asyncio.create_task(CaseParty(sender, "partner:shieldsec").report(vulnerability(), policy))
            await asyncio.sleep(3)
            assert not determination.done() and not report.done(), "both wait for the server"
            await server.start()
            s = await asyncio.wait_for(determination, 60)
            receipt = await asyncio.wait_for(report, 60)
            assert s.outcome == Outcome.NOT_COVERED and s.stage in (Stage.RELEASING, Stage.RELEASED)
            assert receipt.case_id.startswith("case-")
            # Sent again (the reply was lost, say): applied once, same answer.
            again = await nsa.determine(rid, covered=False, rationale="r")
            assert again.message_id == s.message_id and again.stage_before == s.stage_before
    finally:
        await server.stop()
    gc.collect()
    await asyncio.sleep(0)
    stray = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert not stray, stray[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "asyncio"]
