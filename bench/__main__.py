"""The fair benchmark: the project next to the same-shape bare Temporal workflow, on one dev server.

    .venv/bin/python -m bench                      # 3 x 200 reviews per path, 200 reports each kind
    .venv/bin/python -m bench --smoke              # a handful of each: checks that it all runs
    .venv/bin/python -m bench --parked 1000 --repeat 0 --reports 0   # only the parked-at-scale run
    .venv/bin/python -m bench --with-bare-codec    # a third side: bare with the project's codec

One embedded dev server (in-memory SQLite) and two worker processes started here: the project's
own `worker.py` (every queue, as operators run it) and the bare worker (`bench/bare.py`). The
driver (this process) runs the phases interleaved, the sides taking turns at going first, and
reads each process's CPU time and memory from /proc around every phase. See bench/table.py for
what each column means.

`--with-bare-codec` adds a third worker process and side, `bare+codec`: the bare workflows with
the project's payload codec (AES-GCM + zlib) on the default converter, under their own queues and
ids. bare+codec / bare is what the codec alone costs; the table also gives its share of the gap
project - bare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import py_compile
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import Client

from bench import table
from bench.bare import SEALED, sealed_converter
from bench.drivers import BareSide, Outcome, ProjectSide, history
from bench.proc import loadavg, usage

PROJECT_DIR = Path(__file__).resolve().parent.parent
HISTORY_SAMPLE = 5
BASELINE_NAMESPACE = "baseline"
BARE_CODEC = "bare+codec"
# The order the sides take turns in (those of the run); each repetition starts one further on.
SIDES = ("bare", BARE_CODEC, "baseline", "project")


def arguments(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--reviews", type=int, default=200, help="reviews per path, side and repetition (200)")
    p.add_argument("--concurrency", type=int, default=50, help="reviews in flight at once (50)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved repetitions (3)")
    p.add_argument("--reports", type=int, default=200, help="clearinghouse reports per kind and repetition (200)")
    p.add_argument(
        "--report-concurrency", type=int, default=8, help="reports in flight (8; Temporal admits 10 per workflow)"
    )
    p.add_argument(
        "--parked", type=int, default=0, help="also park this many reviews awaiting determination, then determine them"
    )
    p.add_argument("--parked-cases", type=int, default=0, help="also park this many clearinghouse cases in embargo")
    p.add_argument(
        "--parked-probe", type=int, default=200, help="parked reviews determined one at a time, for latency (200)"
    )
    p.add_argument(
        "--parked-release", type=int, default=None, help="parked reviews then determined at --concurrency (all)"
    )
    p.add_argument(
        "--parked-sides", default="bare,project", help="which sides park (bare,project): scale runs take long"
    )
    p.add_argument(
        "--max-cached-workflows", type=int, default=None, help="both workers' workflow cache (default: worker.py's)"
    )
    p.add_argument(
        "--with-bare-codec",
        action="store_true",
        help=f"a third side, {BARE_CODEC!r}: the bare workflows with the project's payload codec (what it alone costs)",
    )
    p.add_argument("--smoke", action="store_true", help="a handful of everything, once (the test suite runs this)")
    p.add_argument("--json", type=Path, help="also write every figure to this file")
    p.add_argument(
        "--baseline",
        type=Path,
        help="another copy of the project (e.g. `git archive main`): its worker runs in its own namespace on the "
        "same server, and its reviews are interleaved with the others (before/after of a change)",
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.reviews, args.concurrency, args.repeat, args.reports, args.report_concurrency = 3, 3, 1, 3, 3
    return args


async def bounded(
    n: int, concurrency: int, one: Callable[[int], Awaitable[Outcome]]
) -> tuple[list[Outcome], list[str]]:
    """Run `one` n times, at most `concurrency` at once; what finished, and why the others failed
    (a failure is counted and shown, it does not end the run)."""
    gate = asyncio.Semaphore(concurrency)
    failures: list[str] = []

    async def run(i: int) -> Outcome | None:
        async with gate:
            try:
                return await one(i)
            except Exception as e:  # counted, shown, and the phase goes on
                failures.append(f"{type(e).__name__}: {e}"[:200])
                return None

    done = await asyncio.gather(*(run(i) for i in range(n)))
    return [o for o in done if o is not None], failures


class Bench:
    def __init__(self, server_pid: int, workers: dict[str, int], sides: dict[str, object], clients: dict[str, Client]):
        self.server_pid = server_pid
        self.workers = workers
        self.sides = sides
        self.clients = clients
        self.phases: list[table.Phase] = []

    async def phase(self, side: str, label: str, rep: int, n: int, concurrency: int, one) -> table.Phase:
        worker, server = usage(self.workers[side]), usage(self.server_pid)
        start = time.perf_counter()
        outcomes, failures = await bounded(n, concurrency, one)
        if not outcomes:
            raise RuntimeError(f"every {label} of {side} failed, e.g. {failures[0]}")
        elapsed = time.perf_counter() - start
        worker_after, server_after = usage(self.workers[side]), usage(self.server_pid)
        sizes = [await history(self.clients[side], o.workflow_id) for o in outcomes[:HISTORY_SAMPLE]]
        phase = table.Phase(
            side=side,
            path=label,
            rep=rep,
            n=n,
            seconds=elapsed,
            failed=len(failures),
            end_to_end=[o.seconds for o in outcomes],
            updates=[u for o in outcomes for u in o.updates],
            worker_cpu_s=worker_after.cpu_s - worker.cpu_s,
            server_cpu_s=server_after.cpu_s - server.cpu_s,
            events=sum(e for e, _ in sizes) / len(sizes),
            history_bytes=sum(b for _, b in sizes) / len(sizes),
            worker_rss_mb=worker_after.rss_mb,
            load=loadavg(),
        )
        self.phases.append(phase)
        print(table.progress(phase), file=sys.stderr, flush=True)
        return phase

    async def reviews(self, rep: int, order: list[str], n: int, concurrency: int) -> None:
        for covered in (False, True):
            for name in order:
                side = self.sides[name]
                await self.phase(
                    name, table.path_name(covered), rep, n, concurrency, lambda i, s=side, c=covered: s.review(c)
                )

    async def intake(self, rep: int, order: list[str], n: int, concurrency: int) -> None:
        base = rep * n
        for name in order:
            side = self.sides[name]

            async def unique(i: int, s=side) -> Outcome:
                receipt = await s.report(base + i)
                started = time.perf_counter() - receipt.seconds
                receipt.updates.append(receipt.seconds)
                await s.case_parked(receipt.workflow_id)
                receipt.seconds = time.perf_counter() - started
                return receipt

            async def duplicate(i: int, s=side) -> Outcome:
                receipt = await s.report(10**9 + base + i, duplicate_of=base + i)
                receipt.updates.append(receipt.seconds)
                return receipt

            await self.phase(name, "report, new case", rep, n, concurrency, unique)
            await self.phase(name, "report, duplicate", rep, n, concurrency, duplicate)

    async def park(self, name: str, side, count: int, concurrency: int) -> list[Outcome]:
        """Park `count` reviews awaiting the NSA (what did not park is counted and shown)."""
        parked, failures = await bounded(count, concurrency, lambda i: side.park())
        if failures:
            print(f"bench: {name}: {len(failures)} of {count} did not park, e.g. {failures[0]}", file=sys.stderr)
        return parked

    async def determine_parked(
        self, name: str, side, count: int, parked: list[Outcome], concurrency: int, probe: int, release: int | None
    ) -> None:
        """With everything parked: the worker's memory; one determination at a time on `probe` of the
        parked reviews (an update's latency as one agency sees it), then `release` more (default: all
        the rest) at `concurrency` (how fast a worker releases what waits)."""
        rss = usage(self.workers[name]).rss_mb
        alone, rest = parked[:probe], parked[probe:]
        rest = rest if release is None else rest[:release]
        for label, batch, width in (
            (f"{count} parked, one at a time", alone, 1),
            (f"{count} parked, determined", rest, concurrency),
        ):
            if not batch:
                continue
            phase = await self.phase(name, label, 0, len(batch), width, lambda i, b=batch: determined(side, b[i]))
            phase.worker_rss_mb = max(rss, phase.worker_rss_mb)

    async def parked_cases(self, name: str, count: int, concurrency: int) -> None:
        side = self.sides[name]

        async def one(i: int) -> Outcome:
            receipt = await side.report(2 * 10**9 + i)
            receipt.updates.append(receipt.seconds)
            await side.case_parked(receipt.workflow_id)
            return receipt

        await self.phase(name, f"{count} cases parked", 0, count, concurrency, one)


async def determined(side, parked: Outcome) -> Outcome:
    """Determine a parked review; its end-to-end time from the determination to its result."""
    start = time.perf_counter()
    await side.determine(parked, False)
    parked.seconds = time.perf_counter() - start
    return parked


async def warm_up(sides: dict[str, object], with_reports: bool) -> None:
    """One of everything per side, until both workers answer (and their imports are done)."""
    deadline = time.perf_counter() + 120
    for side in sides.values():
        while True:
            try:
                await asyncio.wait_for(side.review(False), 60)
                await side.review(True)
                if with_reports:
                    receipt = await side.report(-1)
                    await side.case_parked(receipt.workflow_id)
                    await side.report(-2, duplicate_of=-1)
                break
            except Exception:
                if time.perf_counter() > deadline:
                    raise
                await asyncio.sleep(1)


def start_worker(command: list[str], env: dict[str, str], log: Path, cwd: Path = PROJECT_DIR) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL)


async def run(args: argparse.Namespace) -> dict:
    # The project's modules, imported only here: the parser answers --help without them.
    from infra.devserver import start_dev_server
    from infra.keys import KeyDirectory

    with tempfile.TemporaryDirectory(prefix="frontier-review-bench-") as tmp:
        tmp_dir = Path(tmp)
        keys = KeyDirectory(tmp_dir / "keys")
        keys.init_development()
        # Every process of this run (the worker too) finds the same development keys.
        os.environ["FRONTIER_REVIEW_KEYS_DIR"] = str(keys.path)
        extra = ["--namespace", BASELINE_NAMESPACE] if args.baseline else []
        server = await start_dev_server(
            keyring=keys.payload_keyring(), log_file=tmp_dir / "temporal.log", extra_args=extra
        )
        address = server.client.service_client.config.target_host
        env = {
            **os.environ,
            "FRONTIER_REVIEW_DATA_DIR": str(tmp_dir / "records"),
            "FRONTIER_REVIEW_CLEARINGHOUSE_POLICY": "eo-2026",  # cases park for 45 days
            "PYTHONUNBUFFERED": "1",
        }
        cache = [] if args.max_cached_workflows is None else ["--max-cached-workflows", str(args.max_cached_workflows)]
        project_worker = start_worker(
            [sys.executable, str(PROJECT_DIR / "worker.py"), "--address", address, *cache], env, tmp_dir / "worker.log"
        )
        # The bare workflow's module from bytecode, as an installed program reads it. Where no bytecode
        # is written (PYTHONDONTWRITEBYTECODE, set on this project's machines) the sandbox compiled
        # bench/bare.py from source for every run: 10 % of the bare worker's CPU in a profile, a cost
        # the project's worker does not pay (workflows/sandbox.py compiles its modules once).
        py_compile.compile(str(PROJECT_DIR / "bench" / "bare.py"), doraise=True)
        bare_worker = start_worker(
            [sys.executable, "-m", "bench.bare", "--address", address, *cache], env, tmp_dir / "bare-worker.log"
        )
        processes = {"bare": bare_worker, "project": project_worker}
        clients = {"project": server.client}
        if args.with_bare_codec:
            processes[BARE_CODEC] = start_worker(
                [sys.executable, "-m", "bench.bare", "--address", address, "--codec", *cache],
                env,
                tmp_dir / "bare-codec-worker.log",
            )
            clients[BARE_CODEC] = await Client.connect(address, data_converter=sealed_converter(keys.payload_keyring()))
        if args.baseline:
            baseline = args.baseline.resolve()
            processes["baseline"] = start_worker(
                [sys.executable, str(baseline / "worker.py"), "--address", address, "--namespace", BASELINE_NAMESPACE]
                + cache,
                {**env, "FRONTIER_REVIEW_DATA_DIR": str(tmp_dir / "baseline-records")},
                tmp_dir / "baseline-worker.log",
                cwd=baseline,
            )
            clients["baseline"] = await Client.connect(
                address, namespace=BASELINE_NAMESPACE, data_converter=server.client.data_converter
            )
        try:
            clients["bare"] = await Client.connect(address)
            sides = {name: ProjectSide(client) for name, client in clients.items() if name not in ("bare", BARE_CODEC)}
            sides["bare"] = BareSide(clients["bare"])
            if args.with_bare_codec:
                sides[BARE_CODEC] = BareSide(clients[BARE_CODEC], names=SEALED)
            bench = Bench(server.process.pid, {name: p.pid for name, p in processes.items()}, sides, clients)
            await warm_up(sides, with_reports=args.reports > 0 or args.parked_cases > 0)
            for rep in range(args.repeat):
                order = [name for name in SIDES if name in sides]
                # Rotated, so each side goes first, in the middle and last in turn (two sides alternate).
                turn = rep % len(order)
                order = order[turn:] + order[:turn]
                await bench.reviews(rep, order, args.reviews, args.concurrency)
                if args.reports:
                    await bench.intake(rep, order, args.reports, args.report_concurrency)
            parking = [s.strip() for s in args.parked_sides.split(",") if s.strip() in ("bare", "project")]
            for name in parking if args.parked or args.parked_cases else ():
                # Reviews under eo-2026's clocks (14 days for the NSA), then cases in a 45-day embargo;
                # then, with both parked, the updates.
                side = BareSide(clients["bare"], 14 * 86400, 30 * 86400) if name == "bare" else None
                side = side or ProjectSide(server.client, "eo-2026")
                parked = await bench.park(name, side, args.parked, args.concurrency) if args.parked else []
                if args.parked_cases:
                    await bench.parked_cases(name, args.parked_cases, args.report_concurrency)
                await bench.determine_parked(
                    name, side, args.parked, parked, args.concurrency, args.parked_probe, args.parked_release
                )
            peaks = {f"{name} worker": usage(p.pid).peak_rss_mb for name, p in processes.items()}
            peaks["dev server"] = usage(server.process.pid).peak_rss_mb
        finally:
            for process in processes.values():
                process.terminate()
            for process in processes.values():
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
            await server.shutdown()
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "concurrency": args.concurrency,
        "phases": [p.as_dict() for p in bench.phases],
        "peak_rss_mb": peaks,
    }


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.machine(),
    )
    return f"{platform.node()}: {os.cpu_count()} x {cpu}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    result = asyncio.run(run(args))
    print(table.render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # As in starter.py: skip finalisation, which the SDK's Rust threads can abort (sdk-python#300).
    os._exit(code)
