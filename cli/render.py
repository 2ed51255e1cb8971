"""How reviews look in a terminal (rich) and in JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import timedelta

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from api.reviews import ReviewSummary
from domain.policy import describe
from domain.status import LabView, Receipt, ReviewStatus

# A terminal gets tables at its width; a pipe or a file gets every value whole (ids are never cut
# to 80 columns for a script to misread).
console = Console() if sys.stdout.isatty() else Console(width=100_000, soft_wrap=True)


def as_json(value: BaseModel | Iterable[BaseModel]) -> str:
    if isinstance(value, BaseModel):
        return value.model_dump_json(indent=2)
    return json.dumps([v.model_dump(mode="json") for v in value], indent=2)


def status_view(s: ReviewStatus) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("review", s.review_id)
    if s.run_id:
        table.add_row("run", s.run_id)
    table.add_row("model", f"{s.lab} {s.model_name} {s.model_version}")
    table.add_row("stage", f"[bold]{s.stage.value}[/bold]" + (f"  ({s.outcome.value})" if s.outcome else ""))
    table.add_row("policy", s.policy_version)
    if s.covered is not None:
        by_default = " (policy default on NSA silence)" if s.determination_by_default else ""
        table.add_row("covered", f"{'yes' if s.covered else 'no'}{by_default}")
    if s.determination_deadline:
        table.add_row("determination due", s.determination_deadline.isoformat(timespec="seconds"))
    if s.window_deadline:
        table.add_row("window closes", s.window_deadline.isoformat(timespec="seconds"))
    if s.participating_agencies:
        table.add_row("participating", ", ".join(s.participating_agencies))
    if s.pending_agencies:
        table.add_row("pending", ", ".join(s.pending_agencies))
    _clock_rows(table, s)
    for v in s.standards:
        table.add_row(f"standard: {v.agency.value}", f"{v.verdict.value}  {v.rationale}")
    for f in s.findings:
        table.add_row(f"finding: {f.sender}", f"{f.kind.value}/{f.severity.value}  {f.summary}")
        if f.message_id in s.clearinghouse_cases:
            table.add_row("", f"-> clearinghouse case {s.clearinghouse_cases[f.message_id]}")
    if s.partners_granted:
        table.add_row("granted", ", ".join(s.partners_granted))
    for p in s.partners_skipped:
        table.add_row(f"skipped: {p.partner_id}", p.reason)
    if s.withdrawal_reason:
        table.add_row("withdrawn", s.withdrawal_reason)
    for r in s.earlier_runs:
        ended = r.status if r.status != "COMPLETED" else (r.outcome or r.stage or r.status)
        closed = r.closed_at.isoformat(timespec="seconds") if r.closed_at else "?"
        table.add_row(f"earlier run: {r.run_id}", f"{ended}  (last stage {r.stage or '?'}, closed {closed})")
    console.print(table)


def receipt_view(r: Receipt) -> None:
    """What an update printed: the message as applied and the stage after it."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("review", r.review_id)
    at = r.applied_at.isoformat(timespec="seconds")
    table.add_row("applied", f"{r.update} from {r.sender}, message {r.message_id}, at {at}")
    stage = f"[bold]{r.stage.value}[/bold]" + (f"  ({r.outcome.value})" if r.outcome else "")
    table.add_row("stage", f"{r.stage_before.value} -> {stage}" if r.moved else f"{stage} (unchanged)")
    if r.pending_agencies:
        table.add_row("pending", ", ".join(r.pending_agencies))
    if r.follows:
        table.add_row("follows", r.follows)
    console.print(table)


def lab_view(s: LabView) -> None:
    """A lab's own view: no verdict, finding or rationale is in a LabView to show."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("review", s.review_id)
    table.add_row("model", f"{s.lab} {s.model_name} {s.model_version}")
    table.add_row("stage", f"[bold]{s.stage.value}[/bold]" + (f"  ({s.outcome.value})" if s.outcome else ""))
    table.add_row("policy", s.policy_version)
    table.add_row("covered", "not yet determined" if s.covered is None else ("yes" if s.covered else "no"))
    if s.determination_deadline:
        table.add_row("determination due", s.determination_deadline.isoformat(timespec="seconds"))
    if s.window_deadline:
        table.add_row("window closes", s.window_deadline.isoformat(timespec="seconds"))
    if s.participating_agencies:
        table.add_row("participating", ", ".join(s.participating_agencies))
    _clock_rows(table, s)
    if s.partners_granted:
        table.add_row("granted", ", ".join(s.partners_granted))
    console.print(table)


def _clock_rows(table: Table, s: ReviewStatus | LabView) -> None:
    """The clocks a lab can plan on (domain/clocks.py)."""
    if s.hold_deadline:
        table.add_row("longest hold", f"until {s.hold_deadline.isoformat(timespec='seconds')} (policy max_hold)")
    if s.earliest_release and s.latest_release:
        table.add_row(
            "release",
            f"earliest {s.earliest_release.isoformat(timespec='seconds')}, "
            f"latest {s.latest_release.isoformat(timespec='seconds')}",
        )
    if s.intended_release_date:
        past = f"  (review reaches past it: {s.past_intended_release})" if s.past_intended_release else ""
        table.add_row("lab's date", f"{s.intended_release_date}{past}")
    if s.clock_ran_out:
        table.add_row("clock ran out", s.clock_ran_out)
    if s.delay_seconds is not None:
        table.add_row("delay to lab's date", describe(timedelta(seconds=s.delay_seconds)))


def list_view(rows: list[ReviewSummary]) -> None:
    """One row per run. `stage` is where the review stands; a run ended from outside (terminated,
    failed, cancelled) shows that instead of the stage it was cut short at. `run` is Temporal's status."""
    table = Table()
    table.add_column("review", no_wrap=True, overflow="fold")  # on a narrow terminal a long id folds, never cut
    headings = ("version", "stage", "outcome", "determined by", "pending", "window closes", "lab", "model", "policy")
    for heading in (*headings, "status", "run"):
        table.add_column(heading)
    for r in rows:
        table.add_row(
            r.review_id,
            r.model_version or "",
            r.where,
            r.outcome or "",
            {"policy-default": "policy default"}.get(r.determined_by or "", r.determined_by or ""),
            ",".join(r.pending_agencies),
            r.window_deadline.isoformat(timespec="seconds") if r.window_deadline else "",
            r.lab or "",
            r.model_name or "",
            r.policy_version or "",
            r.status or "",
            r.run_id or "",
        )
    console.print(table)
    console.print(f"{len(rows)} review run(s)")
