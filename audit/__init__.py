"""Audit trails rebuilt from event histories: the history is the record.

    trail = await audit_workflow(client, "review-anthropic-mythos-2-0")
    trail = await audit_export(Path("history.json"))      # `temporal workflow show --output json`

Each workflow type has an interpreter (`audit.trail.Interpreter`, registered with
`audit.trail.register`); `ModelReview`'s is in `audit/review.py`. A workflow type without
one still gets a timeline of its activities, timers, messages and visible state.
"""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from api.reviews import earlier_runs as runs_of
from audit import case as _case  # noqa: F401  (registers the VulnerabilityCase interpreter)
from audit import review as _review  # noqa: F401  (registers the ModelReview interpreter)
from audit.history import HistoryFileError, UndecodableHistory, decode, fetch, load_export, refuse_undecodable
from audit.trail import INTERPRETERS, AuditCheck, AuditTrail, Interpreter, interpreter_for, register
from domain.review import WORKFLOW_TYPE
from infra.connection import data_converter

__all__ = [
    "INTERPRETERS",
    "AuditTrail",
    "HistoryFileError",
    "Interpreter",
    "UndecodableHistory",
    "UnknownWorkflow",
    "audit_export",
    "audit_history",
    "audit_workflow",
    "open_export_check",
    "register",
]


class UnknownWorkflow(LookupError):
    pass


async def audit_history(history: WorkflowHistory, *, namespace: str = "default", source: str = "") -> AuditTrail:
    decoded = await decode(history, data_converter(), namespace=namespace, source=source)
    refuse_undecodable(decoded)
    interpreter = interpreter_for(decoded.workflow_type)
    load = getattr(interpreter, "load", None)
    if load is not None:  # a record read asynchronously first (a review's: its result, or a replay)
        await load(decoded)
    return interpreter.interpret(decoded)


async def audit_workflow(client: Client, workflow_id: str, run_id: str | None = None) -> AuditTrail:
    """The trail of a workflow on the server (its latest run unless `run_id`)."""
    try:
        history = await fetch(client, workflow_id, run_id)
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise UnknownWorkflow(f"no workflow with id {workflow_id!r}") from None
        raise
    source = f"{client.service_client.config.target_host}, namespace {client.namespace}"
    trail = await audit_history(history, namespace=client.namespace, source=source)
    if trail.workflow_type == WORKFLOW_TYPE:
        others = await runs_of(client, workflow_id, trail.run_id)
        # `<=`: a reset run's history begins with its original's start event (same time).
        trail.earlier_runs = [r for r in others if r.started_at and r.started_at <= trail.started_at]
    return trail


async def audit_export(
    path: Path, workflow_id: str | None = None, *, namespace: str = "default", client: Client | None = None
) -> AuditTrail:
    """The trail of an exported history (`temporal workflow show --output json`). An export that ends
    without the run's close cannot say whether the run was open or the export was cut: a check says
    so, and fails, unless `client` (the server, when reachable) has the run open with no more events."""
    history = load_export(path, workflow_id)
    trail = await audit_history(history, namespace=namespace, source=f"exported history {path}")
    if trail.closed_at is None:
        trail.checks.append(await open_export_check(trail, client))
    return trail


OPEN_EXPORT_CHECK = "the export holds the whole history (it ends with the run's close, or the server has no more)"


async def open_export_check(trail: AuditTrail, client: Client | None) -> AuditCheck:
    said = (
        f"the export ends at event {trail.events} without a close: the run was open when exported, or the "
        "export is incomplete"
    )
    if client is None:
        return AuditCheck(name=OPEN_EXPORT_CHECK, ok=False, detail=f"{said} (no server to compare with)")
    try:
        live = await client.get_workflow_handle(trail.workflow_id, run_id=trail.run_id).describe()
    except RPCError as e:
        return AuditCheck(name=OPEN_EXPORT_CHECK, ok=False, detail=f"{said}; the server could not say ({e.message})")
    if (
        live.status == WorkflowExecutionStatus.RUNNING
        and live.raw_description.workflow_execution_info.history_length == trail.events
    ):
        return AuditCheck(
            name=OPEN_EXPORT_CHECK,
            ok=True,
            detail=f"the run is open on the server with {trail.events} events, as exported",
        )
    length = live.raw_description.workflow_execution_info.history_length
    status = live.status.name if live.status else "?"
    return AuditCheck(
        name=OPEN_EXPORT_CHECK, ok=False, detail=f"{said}: the server has {length} events for this run ({status})"
    )
