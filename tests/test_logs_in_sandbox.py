"""A workflow task failure is logged with its cause; the log handler never fails inside the
workflow sandbox (the issue: "Cannot access os.path from inside a workflow", 28 times in one log)."""

from __future__ import annotations

import asyncio
import io
import logging
import uuid

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from infra import logs
from tests.broken_workflow import BrokenForLogs
from workflows.sandbox import workflow_runner


async def test_a_failing_workflow_task_is_logged_not_lost(isolated: Client, capsys: pytest.CaptureFixture) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    logs.configure(stream=stream, json=True)
    queue = f"broken-{uuid.uuid4().hex[:8]}"
    try:
        async with Worker(isolated, task_queue=queue, workflows=[BrokenForLogs], workflow_runner=workflow_runner()):
            handle = await isolated.start_workflow("BrokenForLogs", id=queue, task_queue=queue)
            for _ in range(100):
                if "a bug in workflow code" in stream.getvalue():
                    break
                await asyncio.sleep(0.1)
            await handle.terminate(reason="test done")
    finally:
        root.handlers[:], root.level = saved
    lines = stream.getvalue()
    assert "Failed activation on workflow BrokenForLogs" in lines
    assert "RuntimeError: a bug in workflow code" in lines, "the real failure, with its traceback as text"
    assert "restricted" not in lines and "Cannot access" not in lines
    assert "Logging error" not in capsys.readouterr().err
