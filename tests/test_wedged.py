"""A review or case whose workflow task fails at every attempt (a worker deployed with broken code, a
payload it cannot read) cannot answer a query: `status` said only "Timeout expired", after 30 s.
It now says what the server knows: how often its task has failed, when last, and why (decoded)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from domain.clearinghouse import CASE_WORKFLOW
from domain.review import WORKFLOW_TYPE
from tests.conftest import ISOLATED_NAMESPACE
from tests.test_audit import run_cli


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
        address = isolated.service_client.config.target_host
        at = ("--address", address, "--namespace", ISOLATED_NAMESPACE)
        shown = await asyncio.to_thread(run_cli, *command, review_id, *at, timeout=60)
        # What its record says: the audit, read from the server, names the stuck task.
        audit = await asyncio.to_thread(run_cli, "audit", review_id, "--json", *at, timeout=60)
    await handle.terminate("test over")
    code, out, text = shown.returncode, shown.stdout, shown.stderr
    assert code == 1, (out, text)
    assert len(text.strip().splitlines()) == 1, text  # one line, no traceback
    assert "\x1b" not in text, text  # no terminal escape reaches the operator's screen
    assert f"{what} {review_id} cannot answer: its workflow task is failing" in text, text
    assert "RuntimeError: the deployed code is broken" in text, text  # the cause, decoded
    assert f"`{record} {review_id}` shows its record" in text, text
    checks = {c["name"]: c for c in json.loads(audit.stdout)["checks"]}
    stuck = checks["the open run is not stuck (its last workflow task did not fail)"]
    assert not stuck["ok"], stuck
    assert "workflow task FAILED (WORKFLOW_WORKER_UNHANDLED_FAILURE): RuntimeError: the deployed" in stuck["detail"]
    assert "\x1b" not in audit.stdout and "\\u001b" not in audit.stdout, "no terminal escape in the trail either"
