"""`PublishTransparencyReport`: started each week by the report schedule (created by `up`).

The work is one activity on the review office's worker: it reads visibility and histories'
shape (api/report.py, api/meter.py) and writes JSON, Markdown and PNG into the worker's own
report directory. Nothing comes from the start input: anyone who can start this workflow can
only make the office publish the public report once more.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from domain.publication import PUBLISH_ACTIVITY, PUBLISH_HEARTBEAT_TIMEOUT, PUBLISH_WORKFLOW, Publication


@workflow.defn(name=PUBLISH_WORKFLOW)
class PublishTransparencyReport:
    @workflow.run
    async def run(self) -> Publication:
        return await workflow.execute_activity(
            PUBLISH_ACTIVITY,
            result_type=Publication,
            start_to_close_timeout=timedelta(minutes=30),
            # Long work (every review's history): a task the server lost is retried within a minute.
            heartbeat_timeout=PUBLISH_HEARTBEAT_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=10)),
            summary="publish the transparency report (JSON, Markdown, PNG)",
        )
