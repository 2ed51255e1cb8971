"""The review office scales out: two `worker.py --review-only` processes on the same queue share
the reviews, and when one is SIGKILLed mid-review the other finishes every one of them, each
partner granted once. (Both processes share the review office's ledger, as workers on one host
do; across hosts the ledger must be one shared database: see the README's production section.)"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from domain.agencies import REVIEW_TASK_QUEUE, Agency
from domain.status import Outcome, ReviewStatus, Stage
from infra.keys import KeyDirectory
from tests.conftest import ISOLATED_NAMESPACE, disclose, mythos, quick_policy, running, wait_stage
from tests.test_multihost import pollers
from worker import WorkerConfig, build_workers

PROJECT = Path(__file__).resolve().parent.parent
REVIEWS = 6


def review_office_worker(address: str, records: Path, keys: KeyDirectory, log: Path) -> subprocess.Popen[bytes]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TEMPORAL_CONFIG_FILE": "/nonexistent",
        "FRONTIER_REVIEW_KEYS_DIR": str(keys.path),
        "FRONTIER_REVIEW_DATA_DIR": str(records),
        "FRONTIER_REVIEW_POLICIES_DIR": os.environ["FRONTIER_REVIEW_POLICIES_DIR"],  # the office's library
    }
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, str(PROJECT / "worker.py"), "--review-only", "--address", address,
             "--namespace", ISOLATED_NAMESPACE],
            cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip


async def workflow_task_workers(client: Client, review_id: str) -> list[tuple[datetime, str]]:
    """When each of the review's workflow tasks started, and which worker took it."""
    history = await client.get_workflow_handle(review_id).fetch_history()
    return [
        (e.event_time.ToDatetime(tzinfo=UTC), e.workflow_task_started_event_attributes.identity)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
    ]


async def test_review_office_workers_share_the_load_and_survive_a_kill(
    env: WorkflowEnvironment, isolated: Client, keys: KeyDirectory, tmp_path: Path
) -> None:
    address = env.client.service_client.config.target_host
    records = tmp_path / "review-office"
    office = [review_office_worker(address, records, keys, tmp_path / f"office-{i}.log") for i in range(2)]
    identities = [f"{p.pid}@" for p in office]
    # The NSA stays silent: each review waits out a short determination deadline, the policy's
    # default (not covered) applies, and the review office releases it.
    policy = quick_policy(determination_deadline=timedelta(seconds=6), release_activity_timeout=timedelta(seconds=5))
    agencies = build_workers(isolated, [a.value for a in Agency], WorkerConfig(data_dir=tmp_path / "agencies"))
    try:
        async with running(agencies):
            deadline = time.monotonic() + 60
            while True:
                polling = await pollers(isolated, REVIEW_TASK_QUEUE, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
                if all(any(i.startswith(p) for i in polling) for p in identities):
                    break
                assert time.monotonic() < deadline, f"the review office's workers never polled: {polling}"
                assert all(p.poll() is None for p in office), "a review office worker exited"
                await asyncio.sleep(0.2)

            reviews = [await disclose(isolated, mythos(), policy) for _ in range(REVIEWS)]
            for review_id in reviews:
                await wait_stage(isolated, review_id, Stage.AWAITING_DETERMINATION, timeout=60)
            before = {rid: await workflow_task_workers(isolated, rid) for rid in reviews}
            took = {p: sum(1 for ws in before.values() for _, w in ws if w.startswith(p)) for p in identities}
            assert all(took.values()), f"one worker did all the work: {took}"

            victim, survivor = office[0], office[1]
            victim.send_signal(signal.SIGKILL)
            killed, killed_at = time.monotonic(), datetime.now(UTC)
            results = await asyncio.wait_for(
                asyncio.gather(*(isolated.get_workflow_handle(r, result_type=ReviewStatus).result() for r in reviews)),
                timeout=120,
            )
            recovered_in = time.monotonic() - killed
            assert survivor.poll() is None
    finally:
        for p in office:
            if p.poll() is None:
                p.kill()
            p.wait()

    assert victim.returncode == -signal.SIGKILL
    partners = {p.partner_id for p in mythos().partners}
    finished_by_survivor = 0
    for review_id, result in zip(reviews, results, strict=True):
        assert result.outcome == Outcome.NOT_COVERED
        assert len(result.partners_granted) == len(set(result.partners_granted))
        assert set(result.partners_granted) <= partners
        after = [w for t, w in await workflow_task_workers(isolated, review_id) if t > killed_at]
        assert all(w.startswith(identities[1]) for w in after), (review_id, after)
        finished_by_survivor += bool(after)
    assert finished_by_survivor >= REVIEWS // 2, "the kill came after most reviews were done: nothing shown"
    print(f"\nscale-out: {REVIEWS} reviews, workflow tasks before the kill {took}; released {recovered_in:.1f} s after")
