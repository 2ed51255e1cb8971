"""A dev server of a test's own, on its own file and port, that the test can kill and start again
(the session's server is never touched)."""

from __future__ import annotations

import signal
from pathlib import Path

from temporalio.client import Client
from temporalio.service import RetryConfig

from infra.connection import data_converter
from infra.devserver import DevServer, free_port, start_dev_server
from infra.keys import KeyDirectory


class RestartableServer:
    def __init__(self, directory: Path) -> None:
        self.db = directory / "temporal.db"
        self.log = directory / "temporal.log"
        self.port = free_port()
        self.server: DevServer | None = None
        self.restarts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await start_dev_server(
            db_file=self.db, port=self.port, keyring=KeyDirectory().payload_keyring(), log_file=self.log
        )

    async def kill(self) -> None:
        """SIGKILL: no shutdown, whatever was in flight is cut."""
        assert self.server is not None
        self.server.process.send_signal(signal.SIGKILL)
        await self.server.process.wait()
        self.server = None

    async def restart(self) -> None:
        if self.server is not None:
            await self.kill()
        await self.start()
        self.restarts += 1

    async def client(self, namespace: str = "default", *, impatient: bool = False) -> Client:
        """`impatient`: the SDK's own retries of an unreachable server give up after about a second
        instead of ten, so a short outage in a test stands for a long one."""
        retry = RetryConfig(max_elapsed_time_millis=1000, max_retries=3) if impatient else RetryConfig()
        return await Client.connect(
            self.address,
            namespace=namespace,
            data_converter=data_converter(KeyDirectory().payload_keyring()),
            retry_config=retry,
        )

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None
