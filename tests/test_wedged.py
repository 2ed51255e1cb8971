"""A review or case whose workflow task fails at every attempt (a worker deployed with broken code, a
payload it cannot read) cannot answer a query: `status` said only "Timeout expired", after 30 s.
It now says what the server knows: how often its task has failed, when last, and why (decoded)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from domain.clearinghouse import CASE_WORKFLOW
from domain.review import WORKFLOW_TYPE
from tests.conftest import ISOLATED_NAMESPACE
from tests.test_cli import CLI


class Broken:
    """The workflow as a bad deployment would run it: its code fails before it does anything."""

    async def run(self, *_: object) -> None:
        # What a task failure says is anyone's text (namespace access can fail a task): escapes too.
        raise RuntimeError("the deployed code is broken:\x1b[2J\x1b[31m no attribute\n'window'")


@workflow.defn(name=WORKFLOW_TYPE)
class BrokenReview(Broken):
    @workflow.run
    async def run(self, *_: object) -> None:
        await super().run()


@workflow.defn(name=CASE_WORKFLOW)
class BrokenCase(Broken):
    @workflow.run
    async def run(self, *_: object) -> None:
        await super().run()


BROKEN = {WORKFLOW_TYPE: BrokenReview, CASE_WORKFLOW: BrokenCase}


@pytest.mark.parametrize(
    ("workflow_type", "prefix", "command", "what", "record"),
    [
        (WORKFLOW_TYPE, "review-", ["status"], "review", "frontier-review audit"),
        (CASE_WORKFLOW, "case-", ["vuln", "status"], "case", "frontier-review audit"),
    ],
)
async def test_status_of_a_wedged_workflow_says_its_task_fails_and_why(
    isolated: Client, workflow_type: str, prefix: str, command: list[str], what: str, record: str
) -> None:
    queue = f"wedged-{uuid.uuid4().hex[:8]}"
    review_id = f"{prefix}wedged-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        isolated, task_queue=queue, workflows=[BROKEN[workflow_type]], workflow_runner=UnsandboxedWorkflowRunner()
    )
    async with worker:
        await isolated.start_workflow(workflow_type, id=review_id, task_queue=queue)
        handle = isolated.get_workflow_handle(review_id)
        for _ in range(100):  # until the server has seen the task fail and retried it
            pending = (await handle.describe()).raw_description.pending_workflow_task
            if pending.attempt >= 2:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the workflow task never failed")
        proc = await asyncio.create_subprocess_exec(
            CLI, *command, review_id, "--address", isolated.service_client.config.target_host,
            "--namespace", ISOLATED_NAMESPACE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={
                "PATH": str(Path(sys.executable).parent), "COLUMNS": "200", "TEMPORAL_CONFIG_FILE": "/nonexistent",
                "FRONTIER_REVIEW_KEYS_DIR": os.environ["FRONTIER_REVIEW_KEYS_DIR"],
            },
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    await handle.terminate("test over")
    text = err.decode()
    assert proc.returncode == 1, (out, text)
    assert len(text.strip().splitlines()) == 1, text  # one line, no traceback
    assert "\x1b" not in text, text  # no terminal escape reaches the operator's screen
    assert f"{what} {review_id} cannot answer: its workflow task fails at every attempt" in text, text
    assert "RuntimeError: the deployed code is broken" in text, text  # the cause, decoded
    assert f"`{record} {review_id}` shows its record" in text, text
