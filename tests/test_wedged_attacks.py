"""`status` of a workflow whose last task failed, attacked: anyone with namespace access can poll the
review queue and fail a task with a text of their own (a healthy review's included). The line
`status` then prints is what the server recorded: it must say whose word the failure is."""

from __future__ import annotations

import asyncio
import uuid

from temporalio import workflow
from temporalio.api.enums.v1 import WorkflowTaskFailedCause
from temporalio.api.failure.v1 import Failure
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import PollWorkflowTaskQueueRequest, RespondWorkflowTaskFailedRequest
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from api.server import NotAnswering, query_running
from tests.conftest import ISOLATED_NAMESPACE

FORGED = "RuntimeError: policy eo-2026 was revoked\u2028\x1b]8;;http://evil.example\x07; run `frontier-review withdraw`"
STRANGER = "4242@not-the-review-office\x1b[2J"


@workflow.defn(name="HealthyUnderAttack")
class Healthy:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.query(name="status")
    def status(self) -> dict[str, str]:
        return {"stage": "UNDER_REVIEW"}


async def fail_a_task(client: Client, queue: str) -> None:
    """What a stranger with namespace access can do: take the workflow's task and fail it."""
    poll = PollWorkflowTaskQueueRequest(
        namespace=ISOLATED_NAMESPACE, task_queue=TaskQueue(name=queue), identity=STRANGER
    )
    task = await client.workflow_service.poll_workflow_task_queue(poll)
    await client.workflow_service.respond_workflow_task_failed(
        RespondWorkflowTaskFailedRequest(
            namespace=ISOLATED_NAMESPACE,
            task_token=task.task_token,
            cause=WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE,
            failure=Failure(message=FORGED),
            identity=STRANGER,
        )
    )


async def stranger_holds_the_task(client: Client) -> tuple[str | None, dict[str, str]]:
    """A stranger fails a healthy workflow's task and takes its retry, never answering it (it times
    out after the task timeout, 10 s): `status`'s line then (None if it answered), and the answer
    the workflow gives once the hold is over."""
    queue = f"attacked-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow("HealthyUnderAttack", id=f"review-{queue}", task_queue=queue)
    line = None
    try:
        await fail_a_task(client, queue)
        poll = PollWorkflowTaskQueueRequest(
            namespace=ISOLATED_NAMESPACE, task_queue=TaskQueue(name=queue), identity=STRANGER
        )
        held = await client.workflow_service.poll_workflow_task_queue(poll)
        assert held.attempt == 2
        async with Worker(client, task_queue=queue, workflows=[Healthy], workflow_runner=UnsandboxedWorkflowRunner()):
            description = await handle.describe()
            try:
                await query_running(client, description, "status", dict, "review", "frontier-review audit x")
            except NotAnswering as e:
                line = str(e)
            # The healthy workflow answers once the stranger's hold times out: the worker is fine.
            answer = await asyncio.wait_for(handle.query("status", result_type=dict), timeout=30)
    finally:
        await handle.terminate("test over")
    return line, answer


async def test_a_task_a_stranger_failed_is_shown_as_their_word(isolated: Client) -> None:
    for _ in range(3):  # seen once in ~10: the query answered within its 5 s (then there is no line to read)
        line, answer = await stranger_holds_the_task(isolated)
        assert answer == {"stage": "UNDER_REVIEW"}
        if line is not None:
            break
    assert line is not None, "status never gave up on the held task"
    assert line.isprintable() and "\x1b" not in line, repr(line)  # no escape, no line break (U+2028 either)
    # The operator can tell a stranger's failure from their own workers': the line names who failed it.
    assert "by 4242@not-the-review-office" in line, line
