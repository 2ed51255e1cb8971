"""Worker CPU of one review's workflow code under each sandbox setting, without the server.

    .venv/bin/python -m bench.replay [--replays 10]

Runs one review per path on a fresh dev server, then replays each recorded history many times
(a replay runs the same workflow code as a live run) with the project's sandbox, every module
passed through, and no sandbox, and prints the CPU time of one replay (the best of 3 rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.proc import loadavg


async def measure(replays: int) -> str:
    from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    from bench.drivers import ProjectSide
    from infra.connection import data_converter
    from infra.devserver import start_dev_server
    from infra.keys import KeyDirectory
    from worker import WorkerConfig, build_workers, run_workers
    from workflows.review import ModelReview
    from workflows.sandbox import workflow_runner

    with tempfile.TemporaryDirectory(prefix="frontier-review-bench-replay-") as tmp:
        keys = KeyDirectory(Path(tmp) / "keys")
        keys.init_development()
        os.environ["FRONTIER_REVIEW_KEYS_DIR"] = str(keys.path)
        server = await start_dev_server(keyring=keys.payload_keyring(), log_file=Path(tmp) / "temporal.log")
        stop = asyncio.Event()
        workers = asyncio.create_task(
            run_workers(build_workers(server.client, config=WorkerConfig(data_dir=Path(tmp))), stop)
        )
        try:
            side = ProjectSide(server.client)
            histories = {}
            for covered in (False, True):
                outcome = await side.review(covered)
                histories[covered] = await server.client.get_workflow_handle(outcome.workflow_id).fetch_history()
        finally:
            stop.set()
            await workers
            await server.shutdown()
        converter = data_converter(keys.payload_keyring())
    runners = {
        "project sandbox (workflows/sandbox.py)": workflow_runner(),
        "every module passed through": SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_all_modules()
        ),
        "unsandboxed": UnsandboxedWorkflowRunner(),
    }
    lines = []
    for covered, history in histories.items():
        lines.append(f"review, {'covered' if covered else 'not covered'}: {len(history.events)} events")
        for name, runner in runners.items():
            replayer = Replayer(workflows=[ModelReview], data_converter=converter, workflow_runner=runner)
            await replayer.replay_workflow(history)  # imports, caches
            rounds = []
            for _ in range(3):
                start = time.process_time()
                for _ in range(replays):
                    await replayer.replay_workflow(history)
                rounds.append((time.process_time() - start) / replays)
            lines.append(f"  {name:<40} {1000 * min(rounds):6.1f} ms CPU per replay; load {loadavg()}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    parser.add_argument("--replays", type=int, default=10)
    args = parser.parse_args()
    print(asyncio.run(measure(args.replays)))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
