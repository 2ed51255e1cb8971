"""Isolation between queues: with the grant ledger locked (another process holding its write lock)
while reviews release, a review disclosed meanwhile still gets real verdicts from every standards
body; when the lock goes, every release completes with each grant recorded once."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client

from api.agency import AgencyClient
from domain.messages import Verdict
from domain.status import Outcome, ReviewStatus, Stage
from tests.conftest import disclose, mythos, quick_policy, running, wait_stage
from worker import REVIEW, WorkerConfig, build_workers

RELEASING_REVIEWS = 12


def lock_ledger(path: Path) -> sqlite3.Connection:
    """Hold the ledger's write lock, as a stuck writer (a backup, an operator's shell) would."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    return db


async def test_a_locked_ledger_starves_no_standards_body(isolated: Client, tmp_path: Path) -> None:
    config = WorkerConfig(data_dir=tmp_path)
    policy = quick_policy(
        version="lock-test.1",
        standards_check_timeout=timedelta(seconds=5),
        standards_check_attempt_timeout=timedelta(seconds=4),
        release_activity_timeout=timedelta(seconds=1),
    )
    async with running(build_workers(isolated, config=config)):
        releasing = [await disclose(isolated, mythos(), policy) for _ in range(RELEASING_REVIEWS)]
        for rid in releasing:
            await wait_stage(isolated, rid, Stage.AWAITING_DETERMINATION, timeout=60)
        lock = lock_ledger(tmp_path / f"{REVIEW}.db")
        try:
            nsa = AgencyClient(isolated, "nsa")
            await asyncio.gather(*(nsa.determine(rid, covered=False, rationale="r") for rid in releasing))
            for rid in releasing:
                await wait_stage(isolated, rid, Stage.RELEASING)
            await asyncio.sleep(3)  # the grants pile up on the lock, retried every few seconds
            meanwhile = await disclose(isolated, mythos(), policy)
            s = await wait_stage(isolated, meanwhile, Stage.AWAITING_DETERMINATION, timeout=30)
            # Still locked: nothing was granted, and the new review heard from every body.
            for rid in releasing:
                assert (await status_of(isolated, rid)).partners_granted == []
        finally:
            lock.rollback() if lock.in_transaction else None
            lock.close()
        verdicts = {v.agency.value: v.verdict for v in s.standards}
        assert len(verdicts) == 5 and Verdict.NO_RESPONSE not in verdicts.values(), s.standards
        finals = [
            await asyncio.wait_for(isolated.get_workflow_handle(rid, result_type=ReviewStatus).result(), 60)
            for rid in releasing
        ]
        await nsa.determine(meanwhile, covered=False, rationale="r")
        await isolated.get_workflow_handle(meanwhile).result()
    assert all(f.outcome == Outcome.NOT_COVERED and f.stage == Stage.RELEASED for f in finals)
    ledger = config.store(REVIEW)
    for f in finals:
        assert sorted(g.partner_id for g in ledger.grants(f.review_id)) == sorted(f.partners_granted)
        assert f.partners_granted, "the release went through once the lock was gone"


async def status_of(client: Client, rid: str) -> ReviewStatus:
    from api.reviews import status

    return await status(client, rid)
