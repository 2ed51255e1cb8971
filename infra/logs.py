"""structlog for every process: JSON lines, or a console rendering when a person is watching.

Workflow and activity code log through `workflow.logger` / `activity.logger` (stdlib
loggers that stay silent on replay and carry the workflow's context); structlog renders
them here through its `ProcessorFormatter`, so structlog is never called from workflow code.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading

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


def _lift_temporal_context(_: object, __: str, event: dict) -> dict:
    """Put review id, stage and agency first on every line logged inside a workflow or an activity.

    The SDK's loggers attach their context as one nested dict (`temporal_workflow`,
    `temporal_activity`); its useful parts become top-level fields here, and the three keys
    a reader filters by are always present on such lines (null where they do not apply).
    """
    record = event.get("_record")
    if record is None:
        return event
    lifted: dict = {}
    for key in ("temporal_workflow", "temporal_activity"):
        ctx = event.pop(key, None) or getattr(record, key, None)
        if not isinstance(ctx, dict):
            continue
        lifted.setdefault("review_id", ctx.get("workflow_id"))
        activity_type = ctx.get("activity_type")
        if activity_type:
            lifted["activity"] = activity_type
            lifted.setdefault("stage", ACTIVITY_STAGES.get(activity_type))
        queue = ctx.get("task_queue", "")
        if queue.startswith(AGENCY_QUEUE_PREFIX):
            # An agency's worker speaks for that agency.
            lifted.setdefault("agency", queue.removeprefix(AGENCY_QUEUE_PREFIX))
        for field in ("task_queue", "namespace", "attempt"):
            if field in ctx:
                lifted.setdefault(field, ctx[field])
        run_id = ctx.get("run_id") or ctx.get("workflow_run_id")
        if run_id:
            lifted.setdefault("run_id", run_id)
        if ctx.get("update_id"):
            lifted.setdefault("update_id", ctx["update_id"])
    if not lifted:
        return event
    head = {k: event.pop(k) for k in ("timestamp", "level", "event") if k in event}
    keys = {k: event.pop(k, None) or lifted.pop(k, None) for k in ("review_id", "stage", "agency")}
    return {**head, **keys, **event, **lifted}


class _Handler(logging.StreamHandler):
    """Writes lines logged inside the workflow sandbox from a thread of its own, outside it.

    The SDK logs a failed workflow task from inside the sandbox, with the failure's traceback.
    Rendering a traceback reads source files (os.path) and imports lazily, which the sandbox forbids:
    formatting there made the handler itself fail ("Cannot access os.path from inside a workflow")
    and the real failure was never logged. Formatting is not workflow logic, so it is done on a
    plain thread: the record is handed over as it is and rendered there."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._outside: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        threading.Thread(target=self._drain, name="log-writer", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        if workflow.unsafe.in_sandbox():
            self._outside.put(record)
        else:
            super().emit(record)

    def _drain(self) -> None:
        while True:
            super().emit(self._outside.get())


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
            # JSON lines carry a failure's traceback as text (the console renderer draws its own).
            *([structlog.processors.format_exc_info] if json else []),
            renderer,
        ],
    )
    handler = _Handler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The workflow's and activity's context become fields (above), not a dict glued to the message.
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
