"""structlog for every process: JSON lines, or a console rendering when a person is watching.

Workflow and activity code log through `workflow.logger` / `activity.logger` (stdlib
loggers that stay silent on replay and carry the workflow's context); structlog renders
them here through its `ProcessorFormatter`, so structlog is never called from workflow code.
"""

from __future__ import annotations

import logging
import sys

import structlog
from temporalio import activity, workflow

from domain.review import BRIEF_NSA, CHECK_STANDARD, GRANT_ACCESS, VET_PARTNER
from domain.status import Stage

# The stage each activity serves, so an activity's lines carry it too (extend for new activities).
ACTIVITY_STAGES: dict[str, str] = {
    CHECK_STANDARD: Stage.STANDARDS_CHECK.value,
    BRIEF_NSA: Stage.AWAITING_DETERMINATION.value,
    VET_PARTNER: Stage.RELEASING.value,
    GRANT_ACCESS: Stage.RELEASING.value,
}
AGENCY_QUEUE_PREFIX = "agency-"

_CONTEXT_KEYS = ("review_id", "stage", "agency", "partner_id", "verdict", "covered", "actor", "reason")


def _lift_temporal_context(_: object, __: str, event: dict) -> dict:
    """Bring the fields the SDK's loggers attach (temporal_workflow, temporal_activity) to the top."""
    record = event.get("_record")
    if record is None:
        return event
    for key in ("temporal_workflow", "temporal_activity"):
        ctx = getattr(record, key, None)
        if isinstance(ctx, dict):
            if "workflow_id" in ctx:
                event.setdefault("review_id", ctx["workflow_id"])
            if "activity_type" in ctx:
                event.setdefault("activity", ctx["activity_type"])
                if ctx["activity_type"] in ACTIVITY_STAGES:
                    event.setdefault("stage", ACTIVITY_STAGES[ctx["activity_type"]])
            if "task_queue" in ctx:
                event.setdefault("task_queue", ctx["task_queue"])
                if ctx["task_queue"].startswith(AGENCY_QUEUE_PREFIX):
                    # An agency's worker speaks for that agency.
                    event.setdefault("agency", ctx["task_queue"].removeprefix(AGENCY_QUEUE_PREFIX))
    for key in _CONTEXT_KEYS:
        if hasattr(record, key):
            event.setdefault(key, getattr(record, key))
    return event


def configure(level: str = "INFO", *, json: bool | None = None, stream=None) -> None:
    stream = stream or sys.stderr
    if json is None:
        json = not stream.isatty()
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            _lift_temporal_context,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The workflow's and activity's context become fields (above), not a dict glued to the message.
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
