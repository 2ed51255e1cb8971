"""A workflow's state where its history ends, read by replaying the history with the workflow's own
code: the SDK's Replayer, in this process, with no server and no worker.

For a run that has no result to read (open, terminated, failed, reset), this is how its own record
is read back rather than rebuilt; and a history that the code would not have written (doctored, or
from another version) fails the replay, which the caller reports.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import Interceptor, Replayer, UnsandboxedWorkflowRunner, WorkflowInboundInterceptor

from audit.history import RESET_CAUSE, DecodedHistory
from domain import attestation


class _Capture(Interceptor):
    """Keeps the workflow instance the replay runs, to read it where the history ends."""

    def __init__(self) -> None:
        self.instances: dict[str, Any] = {}

    def workflow_interceptor_class(self, input: Any) -> type[WorkflowInboundInterceptor]:
        instances = self.instances

        class Inbound(WorkflowInboundInterceptor):
            async def execute_workflow(self, input: Any) -> Any:
                instances[workflow.info().run_id] = workflow.instance()
                return await super().execute_workflow(input)

        return Inbound


async def replayed(history: DecodedHistory, workflow_class: type) -> tuple[Any | None, str]:
    """The workflow instance as the history leaves it, or None and why (the replay failed)."""
    from infra.connection import data_converter

    capture = _Capture()
    # Unsandboxed: the instance is read from outside the replay (determinism is still checked).
    replayer = Replayer(
        workflows=[workflow_class], data_converter=data_converter(), interceptors=[capture],
        workflow_runner=UnsandboxedWorkflowRunner(), runtime=_quiet_runtime(),
    )  # fmt: skip
    raw = WorkflowHistory(history.workflow_id, [e.raw for e in history.events])
    attestation.replaying(_runs(history))
    # A replay that fails is a finding the audit reports in one line (its checks); the SDK would also
    # print it, a traceback from its worker logger and a warning from its core, onto the reader's
    # terminal (red team: 45 lines ahead of the audit's own).
    sdk = logging.getLogger("temporalio.worker")
    was = sdk.disabled
    sdk.disabled = True
    try:
        result = await replayer.replay_workflow(raw, raise_on_replay_failure=False)
    finally:
        sdk.disabled = was
        attestation.replaying(frozenset())
    instance = capture.instances.get(history.run_id) or next(iter(capture.instances.values()), None)
    if result.replay_failure is not None or instance is None:
        return None, f"replay failed: {result.replay_failure}"
    return instance, ""


@functools.cache
def _quiet_runtime() -> Runtime:
    """The SDK's runtime for the audit's replays, its core logging only errors."""
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=TelemetryFilter("ERROR", "ERROR"))))


def _runs(history: DecodedHistory) -> frozenset[str]:
    """The runs this history's results were signed for: its original run and each run a reset made."""
    first = history.events[0].attributes
    resets = [e.attributes.new_run_id for e in history.events if e.type == "WORKFLOW_TASK_FAILED"
              and e.attributes.cause == RESET_CAUSE]  # fmt: skip
    return frozenset([getattr(first, "original_execution_run_id", ""), history.run_id, *resets]) - {""}
