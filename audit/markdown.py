"""An audit trail as a Markdown document: what an auditor files."""

from __future__ import annotations

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
    lines += interpreter.markdown(trail)
    lines += ["", "## Checks", "", "| check | result | detail |", "| --- | --- | --- |"]
    lines += [f"| {c.name} | {'ok' if c.ok else '**FAILED**'} | {_cell(c.detail)} |" for c in trail.checks]
    lines += ["", "## Timeline", "", "| at | event | actor | what |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {e.at.isoformat(timespec='seconds')} | {e.event_id} | {e.actor} | {_cell(e.text)} |" for e in trail.timeline
    ]
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in trail.notes]
    return "\n".join(lines) + "\n"


def _iso(value) -> str:
    return value.isoformat(timespec="seconds") if value else "—"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
