"""An audit trail as a Markdown document: what an auditor files."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel

from audit.trail import AuditTrail, interpreter_for


def to_markdown(trail: AuditTrail) -> str:
    interpreter = interpreter_for(trail.workflow_type)
    closed = trail.closed_at.isoformat(timespec="seconds") if trail.closed_at else "(running)"
    lines = [
        f"# Audit trail: {trail.workflow_id}",
        "",
        f"Rebuilt from the event history ({trail.events} events) of run `{trail.run_id}`, "
        f"workflow type `{trail.workflow_type}`, source: {trail.source or 'server'}.",
        "",
        f"Status **{trail.status}**; started {trail.started_at.isoformat(timespec='seconds')}; closed {closed}.",
        "",
    ]
    if trail.earlier_runs:
        lines += ["## Earlier runs under this id", "", "| run | started | closed | ended | last stage | outcome |"]
        lines += ["| --- | --- | --- | --- | --- | --- |"]
        lines += [
            f"| `{r.run_id}` | {_iso(r.started_at)} | {_iso(r.closed_at)} | {r.status} | {r.stage or ''} "
            f"| {r.outcome or ''} |"
            for r in trail.earlier_runs
        ]
        lines.append("")
    lines += interpreter.markdown(trail) or record_markdown(trail.record)
    lines += ["", "## Checks", "", "| check | result | detail |", "| --- | --- | --- |"]
    lines += [f"| {c.name} | {'ok' if c.ok else '**FAILED**'} | {_cell(c.detail)} |" for c in trail.checks]
    lines += ["", "## Timeline", "", "| at | event | actor | what |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {e.at.isoformat(timespec='seconds')} | {e.event_id} | {e.actor} | {_cell(e.text)} |" for e in trail.timeline
    ]
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in trail.notes]
    return "\n".join(lines) + "\n"


def record_markdown(record: BaseModel | None) -> list[str]:
    """A record as tables: its plain fields in one, then one per list of entries (status changes,
    notices, ...). A nested record (a case's whole state) is left to the JSON trail."""
    if record is None:
        return []
    fields = [(name, value) for name, value in record if not isinstance(value, BaseModel)]
    lists = [(n, v) for n, v in fields if isinstance(v, list) and v and isinstance(v[0], BaseModel)]
    lines = ["## Record", "", "| | |", "| --- | --- |"]
    lines += [f"| {_title(n)} | {_cell(_text(v))} |" for n, v in fields if (n, v) not in lists]
    for name, entries in lists:
        columns = list(type(entries[0]).model_fields)
        lines += ["", f"## {_title(name).capitalize()}", "", f"| {' | '.join(map(_title, columns))} |"]
        lines += ["|" + " --- |" * len(columns)]
        lines += [f"| {' | '.join(_cell(_text(getattr(e, c))) for c in columns)} |" for e in entries]
    return lines


def fields_table(title: str, record: Any, names: list[str]) -> list[str]:
    """A section: some of a record's fields, one row each."""
    rows = [f"| {_title(n)} | {_cell(_text(getattr(record, n)))} |" for n in names]
    return [f"## {title}", "", "| | |", "| --- | --- |", *rows, ""]


def entries_table(title: str, entries: list[Any], columns: list[str]) -> list[str]:
    """A section: a table of entries (models, or anything with those attributes), or "None."."""
    if not entries:
        return [f"## {title}", "", "None.", ""]
    lines = [f"## {title}", "", f"| {' | '.join(map(_title, columns))} |", "|" + " --- |" * len(columns)]
    return [*lines, *(f"| {' | '.join(_cell(_text(getattr(e, c))) for c in columns)} |" for e in entries), ""]


def _title(name: str) -> str:
    return name.replace("_", " ")


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(_text, value)) or "—"
    if isinstance(value, Enum):
        return str(value.value)
    return _iso(value) if isinstance(value, datetime) else ("—" if value in (None, "") else str(value))


def _iso(value) -> str:
    return value.isoformat(timespec="seconds") if value else "—"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
