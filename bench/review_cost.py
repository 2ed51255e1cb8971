"""What a review costs, next to bare Temporal, on the same embedded dev server.

    .venv/bin/python -m bench.review_cost [--reviews 200] [--concurrency 50]

Phase 1 runs N bare workflows (one no-op activity each). Phase 2 runs N reviews end to
end: five standards checks on five agency queues, the NSA briefing, the NSA's
determination sent as a signed update (not covered), vetting and a grant for one partner,
with payload encryption on. It prints throughput, latency percentiles and history sizes.
Everything runs in this process on this machine: the figures are for this machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from api.agency import AgencyClient
from api.reviews import disclose, status
from domain.disclosure import Disclosure
from domain.policy import load_policy
from domain.status import ReviewStatus, Stage
from infra.devserver import start_dev_server
from infra.keys import KeyDirectory
from worker import WorkerConfig, build_workers, run_workers

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@activity.defn
async def noop() -> None:
    return None


@workflow.defn(sandboxed=False)
class BareWorkflow:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=30))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


async def bounded(n: int, concurrency: int, one) -> list[float]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def run(i: int) -> None:
        async with gate:
            start = time.perf_counter()
            await one(i)
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(run(i) for i in range(n)))
    return latencies


async def history_events(client: Client, workflow_id: str) -> int:
    return len((await client.get_workflow_handle(workflow_id).fetch_history()).events)


async def bare_phase(client: Client, n: int, concurrency: int) -> tuple[float, list[float], int]:
    queue = f"bench-bare-{uuid.uuid4().hex[:6]}"
    async with Worker(client, task_queue=queue, workflows=[BareWorkflow], activities=[noop]):
        ids = [f"bare-{uuid.uuid4().hex}" for _ in range(n)]
        start = time.perf_counter()
        latencies = await bounded(
            n, concurrency, lambda i: client.execute_workflow(BareWorkflow.run, id=ids[i], task_queue=queue)
        )
        elapsed = time.perf_counter() - start
        return elapsed, latencies, await history_events(client, ids[0])


async def review_phase(client: Client, keys: KeyDirectory, n: int, concurrency: int) -> tuple[float, list[float], int]:
    policy = load_policy("demo")
    base = Disclosure.model_validate_json((EXAMPLES / "small-assistant.json").read_text())
    nsa = AgencyClient(client, "nsa", keys.signer("nsa"))
    public = keys.public_keys()
    ids: list[str] = []

    async def one(i: int) -> None:
        d = base.model_copy(update={"model_version": f"bench-{uuid.uuid4().hex[:10]}"})
        rid = await disclose(client, d, policy, public)
        ids.append(rid)
        while (await status(client, rid)).stage != Stage.AWAITING_DETERMINATION:
            await asyncio.sleep(0.05)
        await nsa.determine(rid, covered=False, rationale="benchmark")
        final = await client.get_workflow_handle(rid, result_type=ReviewStatus).result()
        assert final.stage == Stage.RELEASED, final.stage

    start = time.perf_counter()
    latencies = await bounded(n, concurrency, one)
    elapsed = time.perf_counter() - start
    return elapsed, latencies, await history_events(client, ids[0])


def line(name: str, n: int, elapsed: float, latencies: list[float], events: int) -> str:
    return (
        f"{name:<8} {n:>6} {n / elapsed:>10.1f} {statistics.median(latencies) * 1000:>9.0f} "
        f"{percentile(latencies, 0.9) * 1000:>9.0f} {max(latencies) * 1000:>9.0f} {events:>8}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="frontier-review-bench-") as tmp:
        keys = KeyDirectory(Path(tmp) / "keys")
        keys.init_development()
        server = await start_dev_server(keyring=keys.payload_keyring(), log_file=Path(tmp) / "temporal.log")
        client = server.client
        stop = asyncio.Event()
        workers = asyncio.create_task(run_workers(build_workers(client, config=WorkerConfig(data_dir=Path(tmp))), stop))
        try:
            bare = await bare_phase(client, args.reviews, args.concurrency)
            review = await review_phase(client, keys, args.reviews, args.concurrency)
        finally:
            stop.set()
            await workers
            await server.shutdown()
    print(f"embedded dev server (in-memory SQLite), one process, concurrency {args.concurrency}")
    print(f"{'':<8} {'count':>6} {'per s':>10} {'p50 ms':>9} {'p90 ms':>9} {'max ms':>9} {'events':>8}")
    print(line("bare", args.reviews, *bare))
    print(line("review", args.reviews, *review))
    print(f"a review costs {bare[0] and (review[0] / bare[0]):.1f}x the wall time of a bare workflow here")


if __name__ == "__main__":
    asyncio.run(main())
