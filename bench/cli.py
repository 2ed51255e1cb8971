"""How long `frontier-review status` takes, next to a bare describe + query, each a fresh process.

    .venv/bin/python -m bench.cli [--runs 15]

Starts a dev server and the workers, opens one review (parked awaiting the NSA), then runs the
commands alternately (so a busy moment hits each) and prints the median and minimum wall time of
each and their ratio. The bare command (`python -m bench.cli bare ADDRESS ID`) connects,
describes the workflow and queries it, without decoding: the floor any client pays. The floor
command (`python -m bench.cli floor ADDRESS ID`) is the bare one that also imports what any status
decoding the review's record needs (the pydantic converter, the `ReviewStatus` model and the
models it holds, `rich`'s table), decoding nothing: no status printed from the model goes faster.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.proc import loadavg

PROJECT_DIR = Path(__file__).resolve().parent.parent


async def bare(address: str, workflow_id: str) -> None:
    from temporalio.api.query.v1 import WorkflowQuery
    from temporalio.api.workflowservice.v1 import QueryWorkflowRequest
    from temporalio.client import Client

    client = await Client.connect(address)
    await client.get_workflow_handle(workflow_id).describe()
    handle = client.get_workflow_handle(workflow_id)
    await client.workflow_service.query_workflow(
        QueryWorkflowRequest(
            namespace="default",
            execution={"workflow_id": handle.id},
            query=WorkflowQuery(query_type="status"),
        )
    )


def import_what_a_status_decodes() -> None:
    import rich.table  # noqa: F401
    import temporalio.contrib.pydantic  # noqa: F401

    import domain.status  # noqa: F401


async def timed(command: list[str], env: dict[str, str], cwd: Path = PROJECT_DIR) -> float:
    """Wall time of one command (run without blocking this loop: the workers run in it)."""
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {err.decode().strip()[-500:]}")
    return elapsed


async def measure(runs: int, before: Path | None = None) -> str:
    from bench.drivers import ProjectSide
    from infra.devserver import start_dev_server
    from infra.keys import KeyDirectory
    from worker import WorkerConfig, build_workers, run_workers

    with tempfile.TemporaryDirectory(prefix="frontier-review-bench-cli-") as tmp:
        keys = KeyDirectory(Path(tmp) / "keys")
        keys.init_development()
        os.environ["FRONTIER_REVIEW_KEYS_DIR"] = str(keys.path)
        server = await start_dev_server(keyring=keys.payload_keyring(), log_file=Path(tmp) / "temporal.log")
        address = server.client.service_client.config.target_host
        stop = asyncio.Event()
        workers = asyncio.create_task(
            run_workers(build_workers(server.client, config=WorkerConfig(data_dir=Path(tmp))), stop)
        )
        try:
            parked = await ProjectSide(server.client, "eo-2026").park()
            env = {**os.environ}
            commands = {
                "frontier-review status": [
                    sys.executable,
                    "starter.py",
                    "status",
                    parked.workflow_id,
                    "--address",
                    address,
                ],
                "bare describe + query": [sys.executable, "-m", "bench.cli", "bare", address, parked.workflow_id],
                "bare + status imports": [sys.executable, "-m", "bench.cli", "floor", address, parked.workflow_id],
            }
            where = {name: PROJECT_DIR for name in commands}
            if before is not None:  # another copy of the project (e.g. main before a change)
                name = "status (--before copy)"
                commands[name] = [sys.executable, "starter.py", "status", parked.workflow_id, "--address", address]
                where[name] = before.resolve()
            times: dict[str, list[float]] = {name: [] for name in commands}
            for name, command in commands.items():  # one untimed run each: the page cache
                await timed(command, env, where[name])
            for _ in range(runs):
                for name, command in commands.items():
                    times[name].append(await timed(command, env, where[name]))
        finally:
            stop.set()
            await workers
            await server.shutdown()
    lines = [f"{runs} runs each, alternating; load {loadavg()}"]
    for name, values in times.items():
        lines.append(f"{name:<24} median {statistics.median(values):.3f} s  min {min(values):.3f} s")
    floor = times["bare describe + query"]
    for name, values in times.items():
        if values is not floor:
            lines.append(
                f"{name} / bare: median {statistics.median(values) / statistics.median(floor):.2f}, "
                f"min {min(values) / min(floor):.2f}"
            )
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] in ("bare", "floor"):
        if sys.argv[1] == "floor":
            import_what_a_status_decodes()
        asyncio.run(bare(sys.argv[2], sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.cli", description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--before", type=Path, help="also time `status` from this copy of the project")
    args = parser.parse_args()
    print(asyncio.run(measure(args.runs, args.before)))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
