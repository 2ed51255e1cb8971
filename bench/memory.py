"""What one cached workflow costs the worker, per sandbox setting: memory, and the CPU of a cache miss.

    .venv/bin/python -m bench.memory [--reviews 300] [--runners project,passthrough,unsandboxed]

For each runner, one dev server and one project worker (`worker.py`, every queue) with a cache
larger than what is parked; N reviews are parked awaiting the NSA's determination (eo-2026), the
worker's RSS is read before and after, and the slope is the memory of one cached review. Then
the same worker with a cache of 10 is asked N status queries against the parked reviews (each
one a cache miss: a full replay), and its CPU per query is the price of a review not in cache.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.proc import loadavg, usage

PROJECT_DIR = Path(__file__).resolve().parent.parent

# How worker.py is run with another sandbox setting: the runner factory is replaced before
# worker.py imports it (the worker is otherwise exactly as operators run it).
RUNNERS = {
    "project": "",
    "passthrough": (
        "from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions\n"
        "s.workflow_runner = lambda: SandboxedWorkflowRunner("
        "restrictions=SandboxRestrictions.default.with_passthrough_all_modules())\n"
    ),
    "unsandboxed": (
        "from temporalio.worker import UnsandboxedWorkflowRunner\n"
        "s.workflow_runner = lambda: UnsandboxedWorkflowRunner()\n"
    ),
}


def worker_command(runner: str, address: str, cache: int) -> list[str]:
    code = (
        "import sys, runpy\n"
        "import workflows.sandbox as s\n"
        f"{RUNNERS[runner]}"
        f"sys.argv = ['worker.py', '--address', {address!r}, '--max-cached-workflows', '{cache}']\n"
        "runpy.run_path('worker.py', run_name='__main__')\n"
    )
    return [sys.executable, "-c", code]


async def settle(pid: int, seconds: float = 3.0) -> float:
    """The worker's RSS once it has been quiet for a moment (MB)."""
    await asyncio.sleep(seconds)
    return usage(pid).rss_mb


async def one_runner(runner: str, reviews: int, cases: int, concurrency: int, tmp: Path) -> str:
    from bench.__main__ import bounded
    from bench.drivers import ProjectSide
    from domain.review import STATUS_QUERY
    from infra.devserver import start_dev_server
    from infra.keys import KeyDirectory

    keys = KeyDirectory(tmp / "keys")
    if not keys.path.exists():
        keys.init_development()
    os.environ["FRONTIER_REVIEW_KEYS_DIR"] = str(keys.path)
    server = await start_dev_server(keyring=keys.payload_keyring(), log_file=tmp / f"{runner}-temporal.log")
    address = server.client.service_client.config.target_host
    env = {
        **os.environ,
        "FRONTIER_REVIEW_DATA_DIR": str(tmp / f"{runner}-records"),
        "FRONTIER_REVIEW_CLEARINGHOUSE_POLICY": "eo-2026",  # cases park for 45 days
        "PYTHONUNBUFFERED": "1",
    }
    log = open(tmp / f"{runner}-worker.log", "ab")  # noqa: SIM115  closed below

    def start(cache: int) -> subprocess.Popen:
        return subprocess.Popen(
            worker_command(runner, address, cache), cwd=PROJECT_DIR, env=env, stdout=log, stderr=log
        )

    worker = start(reviews + cases + 100)
    lines = []
    try:
        side = ProjectSide(server.client, "eo-2026")
        # Warm: imports done, every queue answering, a first review through the sandbox.
        warm, failures = await bounded(5, 5, lambda i: side.park())
        if not warm:
            raise RuntimeError(f"{runner}: no review parked: {failures[:1]}")
        before = await settle(worker.pid)
        started = time.perf_counter()
        parked, failures = await bounded(reviews, concurrency, lambda i: side.park())
        took = time.perf_counter() - started
        after = await settle(worker.pid)
        per = 1024 * (after - before) / max(1, len(parked))
        lines.append(
            f"{runner:<12} {len(parked)} parked in {took:.0f} s ({len(failures)} failed): worker RSS {before:.0f} -> "
            f"{after:.0f} MB, {per:.0f} KB per cached review; load {loadavg()}"
        )
        if cases:
            started = time.perf_counter()
            opened, failures = await bounded(cases, 8, lambda i: parked_case(side, i))
            took = time.perf_counter() - started
            later = await settle(worker.pid)
            per = 1024 * (later - after) / max(1, len(opened))
            lines.append(
                f"{'':<12} {len(opened)} cases in embargo in {took:.0f} s ({len(failures)} failed): worker RSS "
                f"{after:.0f} -> {later:.0f} MB, {per:.0f} KB per cached case; load {loadavg()}"
            )
        # A cache of 10: every query replays the review from its history.
        worker.terminate()
        worker.wait(30)
        worker = start(10)
        ids = [p.workflow_id for p in parked] + [p.workflow_id for p in warm]
        await server.client.get_workflow_handle(ids[0]).query(STATUS_QUERY)  # the new worker answers
        cpu = usage(worker.pid).cpu_s
        started = time.perf_counter()
        sample = ids[: min(len(ids), 200)]
        for rid in sample:
            await server.client.get_workflow_handle(rid).query(STATUS_QUERY)
        cpu_per = 1000 * (usage(worker.pid).cpu_s - cpu) / len(sample)
        wall = 1000 * (time.perf_counter() - started) / len(sample)
        lines.append(
            f"{'':<12} cache miss (query replays the parked review): {cpu_per:.1f} ms worker CPU, {wall:.1f} ms "
            f"wall per query, one at a time; worker RSS {usage(worker.pid).rss_mb:.0f} MB; load {loadavg()}"
        )
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
        await server.shutdown()
    return "\n".join(lines)


async def parked_case(side, i: int):
    receipt = await side.report(i)
    await side.case_parked(receipt.workflow_id)
    return receipt


async def measure(runners: list[str], reviews: int, cases: int, concurrency: int) -> str:
    with tempfile.TemporaryDirectory(prefix="frontier-review-bench-memory-") as tmp:
        return "\n".join([await one_runner(r, reviews, cases, concurrency, Path(tmp)) for r in runners])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--reviews", type=int, default=300)
    parser.add_argument("--cases", type=int, default=0, help="also park this many clearinghouse cases in embargo")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--runners", default="project,passthrough,unsandboxed")
    args = parser.parse_args()
    runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    unknown = [r for r in runners if r not in RUNNERS]
    if unknown:
        print(f"error: unknown runner {unknown[0]!r} (known: {', '.join(RUNNERS)})", file=sys.stderr)
        return 2
    print(asyncio.run(measure(runners, args.reviews, args.cases, args.concurrency)))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
