"""What a watcher reads in the Web UI's current details: made from the review's state alone.

A closed review keeps why it ended: the reason of the stage change that ended the hold (the
agencies that had not concluded when a window elapsed, who decided and how), the stage a lab
withdrew at and its words, the partners refused at vetting.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from domain.policy import describe
from domain.status import ReviewState, Stage

CLOSED = (Stage.RELEASED, Stage.WITHDRAWN)


def details(s: ReviewState, *, reset: bool = False) -> str:
    """The current details (Markdown paragraphs), as of the review's last change."""
    if s.genuine is False:
        return f"**NOT GENUINE**: {s.admission}. This review does nothing."
    lines = [f"**{s.stage.value}**", *_integrity(s, reset), *_decision(s), *_clocks(s), *_progress(s), *_why(s)]
    return "\n\n".join(lines)


def _integrity(s: ReviewState, reset: bool) -> list[str]:
    lines = []
    if reset or s.history_reset:
        lines.append("**history reset**: a namespace user reset this review (see its audit)")
    if s.cancel_requests:
        lines.append(f"cancel requests ignored: {len(s.cancel_requests)} (only the lab withdraws)")
    return lines


def _decision(s: ReviewState) -> list[str]:
    lines = [f"outcome: {s.outcome.value}"] if s.outcome else []
    if s.determination is not None:
        verdict = "covered" if s.determination.covered else "not covered"
        by = "the NSA"
        if s.determination_by_default:
            by = "the policy's default (the NSA did not decide by its deadline)"
        lines.append(f"determination: {verdict}, by {by}")
    return lines


def _at(value: datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC"


def _clocks(s: ReviewState) -> list[str]:
    lines = []
    if s.determination_deadline and s.stage == Stage.AWAITING_DETERMINATION:
        lines.append(f"determination due: {_at(s.determination_deadline)}")
    if s.window_deadline and s.stage == Stage.UNDER_REVIEW:
        lines.append(f"window closes: {_at(s.window_deadline)}")
    if s.stage not in CLOSED and s.latest_release:
        lines.append(f"latest release: {_at(s.latest_release)}")
    if s.past_intended_release:
        lines.append(f"lab's date: {s.intended_release_date} (past it: {s.past_intended_release})")
    if s.delay_seconds is not None:
        lines.append(f"delay to the lab's date: {describe(timedelta(seconds=s.delay_seconds))}")
    return lines


def _progress(s: ReviewState) -> list[str]:
    lines = []
    if s.pending_agencies:
        lines.append("pending: " + ", ".join(a.value for a in s.pending_agencies))
    if s.findings:
        lines.append(f"findings: {len(s.findings)}")
    if s.releases:
        lines.append(f"partners granted: {len(s.partners_granted)}")
    if s.cases:
        lines.append(f"clearinghouse cases: {', '.join(s.cases)}")
    pending = s.clearinghouse_pending
    if pending:
        held = sum(1 for f in s.forwards if f.status == "held")
        lines.append(
            f"findings awaiting the clearinghouse: {len(pending)}"
            + (f" ({held} undelivered past the policy's forward timeout, held)" if held else "")
        )
    if s.clearinghouse_refused:
        lines.append(f"findings refused by the clearinghouse: {len(s.clearinghouse_refused)}")
    return lines


def _why(s: ReviewState) -> list[str]:
    """Why the review stands where it does once the hold is over (it stays after the review closes)."""
    lines = []
    ended = next((t for t in reversed(s.transitions) if t.stage in (Stage.RELEASING, Stage.WITHDRAWN)), None)
    if ended is not None and ended.stage == Stage.WITHDRAWN:
        before = s.transitions[-2].stage.value if len(s.transitions) > 1 else "?"
        lines.append(f"withdrawn at {before} by {ended.actor}: {ended.reason}")
    elif ended is not None:
        lines.append(f"why: {ended.reason} ({ended.actor})")
    refused = s.partners_skipped
    if refused:
        lines.append("not granted: " + "; ".join(f"{p.partner_id} ({p.reason})" for p in refused))
    return lines
