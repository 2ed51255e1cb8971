"""The review office scaled out: the same reviews with one and with two `worker.py --review-only`
processes, and with two of which one is SIGKILLed mid-run.

    .venv/bin/python -m bench.scale_out [--reviews 60] [--rounds 1]

One embedded dev server (in-memory); the agencies' workers run in this process (the same for
every configuration); the review office's run as separate processes sharing one ledger (one host).
Each review runs the whole path with a silent NSA (a 2 s determination deadline, the policy
default: not covered), then vetting and grants. Figures: reviews per second, end-to-end p50 and
max, the review-office processes' CPU seconds per review, and the load average (the machine is
shared: read figures beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from api import reviews
from bench.proc import loadavg, usage
from domain.agencies import Agency
from domain.disclosure import Disclosure
from domain.policy import load_policy
from domain.status import ReviewStatus
from infra.devserver import start_dev_server
from infra.keys import KeyDirectory
from worker import WorkerConfig, build_workers, run_workers

PROJECT = Path(__file__).resolve().parent.parent
SAMPLE = PROJECT / "examples" / "mythos-2.json"


def office_process(address: str, keys: Path, records: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TEMPORAL_CONFIG_FILE": "/nonexistent",
           "FRONTIER_REVIEW_KEYS_DIR": str(keys), "FRONTIER_REVIEW_DATA_DIR": str(records)}  # fmt: skip
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, str(PROJECT / "worker.py"), "--review-only", "--address", address],
            cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip


async def one_configuration(
    client, address: str, keys: KeyDirectory, work: Path, label: str, processes: int, kill_after: float | None, n: int
) -> dict[str, object]:
    records = work / f"office-{label}"
    office = [office_process(address, keys.path, records, work / f"{label}-{i}.log") for i in range(processes)]
    policy = load_policy("eo-2026").model_copy(
        update={"determination_deadline": timedelta(seconds=2), "release_activity_timeout": timedelta(seconds=10)}
    )
    base = Disclosure.model_validate_json(SAMPLE.read_text())
    try:
        await asyncio.sleep(4)  # the office processes start and poll
        # CPU from here on: the processes' start-up (imports) is not the reviews' cost.
        cpu_before = {p.pid: usage(p.pid).cpu_s for p in office}
        started = time.monotonic()

        async def review(i: int) -> float:
            d = base.model_copy(update={"model_version": f"{label.replace(',', '')}-{i}-{os.getpid()}"})
            t0 = time.monotonic()
            rid = await reviews.disclose(client, d, policy, keys.public_keys())
            await client.get_workflow_handle(rid, result_type=ReviewStatus).result()
            return time.monotonic() - t0

        tasks = [asyncio.create_task(review(i)) for i in range(n)]
        if kill_after is not None:
            await asyncio.sleep(kill_after)
            office[0].send_signal(signal.SIGKILL)
        latencies = await asyncio.wait_for(asyncio.gather(*tasks), timeout=600)
        wall = time.monotonic() - started
        cpu = sum(usage(p.pid).cpu_s - cpu_before[p.pid] for p in office if p.poll() is None)
    finally:
        for p in office:
            if p.poll() is None:
                p.terminate()
            p.wait()
    return {
        "configuration": label,
        "reviews/s": round(n / wall, 2),
        "p50 s": round(statistics.median(latencies), 1),
        "max s": round(max(latencies), 1),
        "office CPU s/review (survivors)": round(cpu / n, 3),
        "load": loadavg(),
    }


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-scale-out-") as tmp:
        work = Path(tmp)
        keys = KeyDirectory(work / "keys")
        keys.init_development()
        os.environ["FRONTIER_REVIEW_KEYS_DIR"] = str(keys.path)
        server = await start_dev_server(keyring=keys.payload_keyring(), log_file=work / "server.log")
        client = server.client
        address = client.service_client.config.target_host
        stop = asyncio.Event()
        agencies = build_workers(client, [a.value for a in Agency], WorkerConfig(data_dir=work / "agencies"))
        running = asyncio.create_task(run_workers(agencies, stop))
        rows = []
        try:
            for _ in range(args.rounds):
                for label, processes, kill in (("1 process", 1, None), ("2 processes", 2, None),
                                               ("2, one SIGKILLed at 3 s", 2, 3.0)):  # fmt: skip
                    rows.append(
                        await one_configuration(client, address, keys, work, label, processes, kill, args.reviews)
                    )
                    print(rows[-1], flush=True)
        finally:
            stop.set()
            await running
            await server.shutdown()
    print()
    keys_ = list(rows[0])
    print(" | ".join(keys_))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys_))
    return 0


if __name__ == "__main__":
    code = asyncio.run(main())
    sys.stdout.flush()
    os._exit(code)
