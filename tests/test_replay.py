"""Determinism: histories of every kind of review replay against the current code, from
the server and from a `temporal workflow show --output json` export."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from api.agency import AgencyClient, LabClient
from domain.policy import Policy
from domain.status import Stage
from infra.connection import data_converter
from infra.keys import KeyDirectory
from tests.conftest import disclose, mythos, wait_stage
from workflows.review import ModelReview
from workflows.sandbox import workflow_runner


async def three_reviews(client: Client, env: WorkflowEnvironment, policy: Policy) -> list[str]:
    not_covered, covered, withdrawn = [await disclose(client, mythos(), policy) for _ in range(3)]
    for rid in (not_covered, covered, withdrawn):
        await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    nsa = AgencyClient(client, "nsa")
    await nsa.determine(not_covered, covered=False, rationale="r")
    await nsa.determine(covered, covered=True, agencies=["dod", "dhs"], rationale="r")
    await wait_stage(client, covered, Stage.UNDER_REVIEW)
    await AgencyClient(client, "dod").submit_finding(covered, kind="capability", severity="low", summary="s")
    await AgencyClient(client, "dod").conclude(covered)
    await env.fast_forward(client.get_workflow_handle(covered), timedelta(days=31))
    await LabClient(client).withdraw(withdrawn, "r")
    for rid in (not_covered, covered, withdrawn):
        await client.get_workflow_handle(rid).result()
    return [not_covered, covered, withdrawn]


async def test_histories_replay(client: Client, env: WorkflowEnvironment, policy: Policy, keys: KeyDirectory) -> None:
    ids = await three_reviews(client, env, policy)
    replayer = Replayer(
        workflows=[ModelReview],
        data_converter=data_converter(keys.payload_keyring()),
        workflow_runner=workflow_runner(),
    )
    ids_query = " OR ".join(f'WorkflowId = "{rid}"' for rid in ids)
    replayed: list[str] = []

    async def histories():
        async for history in client.list_workflows(ids_query).map_histories():
            replayed.append(history.workflow_id)
            yield history

    results = await replayer.replay_workflows(histories(), raise_on_replay_failure=False)
    assert sorted(replayed) == sorted(ids)
    assert not results.replay_failures, results.replay_failures

    # The same from the `temporal` CLI's JSON export (what an auditor or a bug report carries).
    temporal = str(Path(sys.executable).parent / "temporal")
    proc = await asyncio.create_subprocess_exec(
        temporal, "workflow", "show", "-w", ids[1], "--address", client.service_client.config.target_host,
        "--output", "json", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    exported, _ = await proc.communicate()
    await replayer.replay_workflow(WorkflowHistory.from_json(ids[1], exported.decode()))
