"""`frontier-review up` as an operator runs it, for the tests that start it: until its "Ctrl-C"
line, then Ctrl-C, and it must be gone within a minute (with its dev server).

Its log goes to a file, never to a pipe nobody reads (a full pipe would block its writes), and
it runs in its own process group: if it does not stop, the test kills the group (no dev server is
left behind holding ports) and fails with the end of that log, which says where it hung.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.test_cli import CLI

STOP_SECONDS = 60


class UpProcess:
    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.seen = ""  # what it printed up to its "Ctrl-C stops everything." line
        self.returncode: int | None = None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    async def until_ready(self) -> None:
        assert self.process.stdout is not None
        while "Ctrl-C" not in self.seen:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout=90)
            assert line, f"up exited early: {self.seen}\n{self.log_tail()}"
            self.seen += line.decode()

    async def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            self.returncode = await asyncio.wait_for(self.process.wait(), timeout=STOP_SECONDS)
        except TimeoutError:
            os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
            stuck = f"up still running {STOP_SECONDS} s after Ctrl-C; its log:\n{self.log_tail()}"
            raise AssertionError(stuck) from None
        return self.returncode


@asynccontextmanager
async def running_up(*args: str, env: dict[str, str], cwd: Path) -> AsyncIterator[UpProcess]:
    log = cwd / "up.log"
    with open(log, "wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            CLI, "up", *args, stdout=asyncio.subprocess.PIPE, stderr=stderr, cwd=cwd, env=env, start_new_session=True
        )
    up = UpProcess(process, log)
    try:
        await up.until_ready()
        yield up
    finally:
        try:
            if process.returncode is None:
                await up.interrupt()
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # whatever it left (a dev server, if it died early)
            except ProcessLookupError:
                pass
