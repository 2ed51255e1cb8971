"""Audit trails rebuilt from event histories: the history is the record.

    trail = await audit_workflow(client, "review-anthropic-mythos-2-0")
    trail = await audit_export(Path("history.json"))      # `temporal workflow show --output json`

Each workflow type has an interpreter (`audit.trail.Interpreter`, registered with
`audit.trail.register`); `ModelReview`'s is in `audit/review.py`. A workflow type without
one still gets a timeline of its activities, timers, messages and visible state.
"""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from api.reviews import earlier_runs as runs_of
from audit import case as _case  # noqa: F401  (registers the VulnerabilityCase interpreter)
from audit import review as _review  # noqa: F401  (registers the ModelReview interpreter)
from audit.history import HistoryFileError, UndecodableHistory, decode, fetch, load_export, refuse_undecodable
from audit.trail import INTERPRETERS, AuditTrail, Interpreter, interpreter_for, register
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
        trail.earlier_runs = [r for r in others if r.started_at and r.started_at < trail.started_at]
    return trail


async def audit_export(path: Path, workflow_id: str | None = None, *, namespace: str = "default") -> AuditTrail:
    """The trail of an exported history (`temporal workflow show --output json`)."""
    history = load_export(path, workflow_id)
    return await audit_history(history, namespace=namespace, source=f"exported history {path}")
