"""One worker process of the chaos test: some roles (`review`, agency ids) against one server,
until it is stopped or killed. `python -m tests.chaos_worker ADDRESS DATA_DIR ROLE[,ROLE...]`"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from infra.connection import Target, connect
from worker import WorkerConfig, build_workers, run_workers, stop_on_signals


async def main(address: str, data_dir: str, roles: str) -> None:
    client = await connect(Target(address=address))
    config = WorkerConfig(data_dir=Path(data_dir), clearinghouse_policy="demo")
    await run_workers(build_workers(client, roles.split(","), config), stop_on_signals())


if __name__ == "__main__":
    try:
        asyncio.run(main(*sys.argv[1:4]))
        code = 0
    except Exception as e:  # the server away at start: the chaos test starts the process again
        print(f"chaos worker {sys.argv[3]}: {e}", file=sys.stderr)
        code = 1
    sys.stderr.flush()
    os._exit(code)
