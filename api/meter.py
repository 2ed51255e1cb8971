"""The mission-creep meter: how the process behaves over time, per policy version and quarter.

Read from visibility (search attributes, start and close times, execution status) and from
histories' *shape* only: event types, times, update and activity names. Never a payload, a
query or a decoded field, so nothing classified can reach it, and it needs no key.

Figures are never mixed across policy versions: each cell is one version in one quarter. A cell
of fewer than `SMALL_CELL` reviews, and any figure computed from fewer than `SMALL_CELL` values,
is suppressed (the count stays): it could single out one lab or model.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus

from domain import search_attributes as sa
from domain.clearinghouse import CASE_WORKFLOW, FIX_READY, PUBLISH_ADVISORY, REQUEST_EXTENSION
from domain.policy import Policy, describe
from domain.review import RECORD_DETERMINATION
from domain.status import Outcome, Stage

SMALL_CELL = 3
DAY = 86400.0
# Timers fire on the server's clock and visibility keeps whole seconds (as api/report.py).
MARGIN = timedelta(minutes=1)


class ReviewRun(BaseModel):
    """One run of one review, as visibility and the history's shape hold it."""

    review_id: str
    run_id: str
    lab: str | None = None
    policy_version: str | None = None
    stage: str | None = None
    outcome: str | None = None
    covered: bool | None = None
    execution: str = "RUNNING"  # the run's execution status: COMPLETED, TERMINATED, CANCELED, ...
    started_at: datetime
    closed_at: datetime | None = None
    seconds_to_release: int | None = None
    seconds_delayed: float | None = None
    clock_ran_out: str | None = None
    participants: list[str] = Field(default_factory=list)
    nsa_decided: bool = False  # a record_determination update was accepted
    cancel_requested: bool = False
    reset: bool = False
    refiling: bool = False  # a later run under the same review id


class CaseRun(BaseModel):
    """One clearinghouse case (a `VulnerabilityCase`), visibility and history shape."""

    case_id: str
    policy_version: str | None = None
    status: str | None = None
    priority: int | None = None
    started_at: datetime
    embargo_deadline: datetime | None = None
    fixed_at: datetime | None = None
    disclosed_at: datetime | None = None
    extensions: int = 0


class DayStats(BaseModel):
    count: int
    median_days: float | None = None
    p90_days: float | None = None
    max_days: float | None = None
    suppressed: bool = False

    @classmethod
    def of(cls, days: list[float]) -> DayStats:
        if len(days) < SMALL_CELL:
            return cls(count=len(days), suppressed=bool(days))
        days = sorted(days)
        p90 = statistics.quantiles(days, n=10, method="inclusive")[8]
        return cls(count=len(days), median_days=statistics.median(days), p90_days=p90, max_days=days[-1])


class ReviewCell(BaseModel):
    """One policy version in one quarter. With `suppressed`, only the count is given."""

    policy_version: str
    quarter: str
    reviews: int
    suppressed: bool = False
    covered: int | None = None
    determined: int | None = None
    covered_share: float | None = None
    decided_by_nsa: int | None = None
    policy_defaults: int | None = None
    days_held: DayStats | None = None
    delay_days: DayStats | None = Field(default=None, description="delay imposed on the labs' intended dates")
    delayed: int | None = Field(default=None, description="reviews that let go after the lab's date")
    agency_participation: dict[str, int] | None = None
    withdrawals: int | None = None
    refilings: int | None = None
    windows_elapsed: int | None = None
    windows_concluded_early: int | None = None
    ended_by_max_hold: int | None = None


class CaseCell(BaseModel):
    policy_version: str
    quarter: str
    cases: int
    by_priority: dict[str, int]
    days_to_fix: DayStats
    embargoes_kept: int = Field(description="disclosed by the embargo's deadline")
    embargoes_overrun: int = Field(description="disclosed after it, or still secret past it")
    extensions: int


class Flag(BaseModel):
    """A review the public should look at: held past its policy, or its run cut short or rewritten."""

    review_id: str
    run_id: str
    reasons: list[str]


class Meter(BaseModel):
    generated_at: datetime
    small_cell: int = SMALL_CELL
    reviews: list[ReviewCell]
    clearinghouse: list[CaseCell]
    flags: list[Flag]


def quarter(at: datetime) -> str:
    return f"{at.year}-Q{(at.month - 1) // 3 + 1}"


# ----------------------------------------------------------------- reading


async def review_runs(client: Client, rows: Iterable[WorkflowExecution]) -> list[ReviewRun]:
    """Each review run with its history's shape; later runs under one id are refilings."""
    runs = [await _review_run(client, wf) for wf in rows]
    first: dict[str, datetime] = {}
    for r in runs:
        first[r.review_id] = min(first.get(r.review_id, r.started_at), r.started_at)
    for r in runs:
        r.refiling = r.started_at > first[r.review_id] and not r.reset
    return runs


async def _review_run(client: Client, wf: WorkflowExecution) -> ReviewRun:
    attrs = wf.typed_search_attributes
    run = ReviewRun(
        review_id=wf.id,
        run_id=wf.run_id,
        lab=attrs.get(sa.LAB),
        policy_version=attrs.get(sa.POLICY_VERSION),
        stage=attrs.get(sa.REVIEW_STAGE),
        outcome=attrs.get(sa.OUTCOME),
        covered=attrs.get(sa.COVERED),
        execution=wf.status.name if wf.status else "RUNNING",
        started_at=wf.start_time,
        closed_at=wf.close_time,
        seconds_to_release=attrs.get(sa.SECONDS_TO_RELEASE),
        seconds_delayed=attrs.get(sa.SECONDS_DELAYED),
        clock_ran_out=attrs.get(sa.CLOCK_RAN_OUT),
        participants=list(attrs.get(sa.PARTICIPANTS) or []),
    )
    history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            if (
                e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
                == RECORD_DETERMINATION
            ):
                run.nsa_decided = True
        elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
            run.cancel_requested = True
        elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            cause = e.workflow_task_failed_event_attributes.cause
            if cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW:
                run.reset = True
    return run


async def case_runs(client: Client, query: str = f'WorkflowType = "{CASE_WORKFLOW}"') -> list[CaseRun]:
    cases = []
    async for wf in client.list_workflows(query):
        attrs = wf.typed_search_attributes
        case = CaseRun(
            case_id=wf.id,
            policy_version=attrs.get(sa.POLICY_VERSION),
            status=attrs.get(sa.CASE_STATUS),
            priority=attrs.get(sa.CASE_PRIORITY),
            started_at=wf.start_time,
            embargo_deadline=attrs.get(sa.EMBARGO_DEADLINE),
        )
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        for e in history.events:
            at = e.event_time.ToDatetime().replace(tzinfo=wf.start_time.tzinfo)
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
                name = e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
                if name == FIX_READY and case.fixed_at is None:
                    case.fixed_at = at
                elif name == REQUEST_EXTENSION:
                    case.extensions += 1
            elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                if e.activity_task_scheduled_event_attributes.activity_type.name == PUBLISH_ADVISORY:
                    case.disclosed_at = case.disclosed_at or at
        cases.append(case)
    return cases


# ----------------------------------------------------------------- figures


def meter(runs: list[ReviewRun], cases: list[CaseRun], policies: dict[str, Policy], now: datetime) -> Meter:
    """The figures, from known runs and cases (a pure function: the tests feed it by hand too)."""
    cells: dict[tuple[str, str], list[ReviewRun]] = defaultdict(list)
    for r in runs:
        cells[(r.policy_version or "?", quarter(r.started_at))].append(r)
    case_cells: dict[tuple[str, str], list[CaseRun]] = defaultdict(list)
    for c in cases:
        case_cells[(c.policy_version or "?", quarter(c.started_at))].append(c)
    return Meter(
        generated_at=now,
        reviews=[_review_cell(v, q, rs) for (v, q), rs in sorted(cells.items(), key=_by_quarter)],
        clearinghouse=[_case_cell(v, q, cs, now) for (v, q), cs in sorted(case_cells.items(), key=_by_quarter)],
        flags=[f for r in runs if (f := flag(r, policies.get(r.policy_version or ""), now)) is not None],
    )


def _by_quarter(item: tuple[tuple[str, str], object]) -> tuple[str, str]:
    (version, q), _ = item
    return q, version


def _review_cell(version: str, q: str, runs: list[ReviewRun]) -> ReviewCell:
    if len(runs) < SMALL_CELL:
        return ReviewCell(policy_version=version, quarter=q, reviews=len(runs), suppressed=True)
    determined = [r for r in runs if r.covered is not None]
    covered = [r for r in determined if r.covered]
    outcomes = Counter(r.outcome for r in runs)
    held = [r.seconds_to_release / DAY for r in runs if r.seconds_to_release is not None]
    delays = [r.seconds_delayed / DAY for r in runs if r.seconds_delayed is not None]
    participation = Counter(a for r in covered for a in r.participants)
    return ReviewCell(
        policy_version=version,
        quarter=q,
        reviews=len(runs),
        covered=len(covered),
        determined=len(determined),
        covered_share=len(covered) / len(determined) if determined else None,
        decided_by_nsa=sum(1 for r in determined if r.nsa_decided),
        policy_defaults=sum(1 for r in determined if not r.nsa_decided),
        days_held=DayStats.of(held),
        delay_days=DayStats.of(delays),
        delayed=sum(1 for d in delays if d > 0),
        agency_participation=dict(sorted(participation.items())),
        withdrawals=outcomes.get(Outcome.WITHDRAWN.value, 0),
        refilings=sum(1 for r in runs if r.refiling),
        windows_elapsed=outcomes.get(Outcome.WINDOW_ELAPSED.value, 0),
        windows_concluded_early=outcomes.get(Outcome.CONCLUDED_EARLY.value, 0),
        ended_by_max_hold=sum(1 for r in runs if r.clock_ran_out == "max_hold"),
    )


def _case_cell(version: str, q: str, cases: list[CaseRun], now: datetime) -> CaseCell:
    kept = overrun = 0
    for c in cases:
        if c.embargo_deadline is None:
            continue
        if c.disclosed_at is not None:
            kept, overrun = (
                (kept + 1, overrun) if c.disclosed_at <= c.embargo_deadline + MARGIN else (kept, overrun + 1)
            )
        elif now > c.embargo_deadline + MARGIN:
            overrun += 1
    return CaseCell(
        policy_version=version,
        quarter=q,
        cases=len(cases),
        by_priority=dict(sorted(Counter(f"P{c.priority}" if c.priority else "untriaged" for c in cases).items())),
        days_to_fix=DayStats.of([(c.fixed_at - c.started_at).total_seconds() / DAY for c in cases if c.fixed_at]),
        embargoes_kept=kept,
        embargoes_overrun=overrun,
        extensions=sum(c.extensions for c in cases),
    )


def flag(r: ReviewRun, policy: Policy | None, now: datetime) -> Flag | None:
    """Why this run needs a look, if it does: each reason names the rule."""
    reasons = []
    if policy is not None:
        bound = policy.hold_bound + MARGIN
        if r.seconds_to_release is not None and timedelta(seconds=r.seconds_to_release) > bound:
            reasons.append(
                f"held {r.seconds_to_release / DAY:.1f} days: past its policy's {describe(policy.hold_bound)} bound"
            )
        elif r.seconds_to_release is None and r.closed_at is None and now - r.started_at > bound:
            reasons.append(f"still held past its policy's {describe(policy.hold_bound)} bound")
    if r.execution == WorkflowExecutionStatus.TERMINATED.name:
        reasons.append("run terminated")
    if r.execution == WorkflowExecutionStatus.CANCELED.name:
        reasons.append("run cancelled")
    elif r.cancel_requested:
        reasons.append("cancellation requested")
    if r.reset:
        reasons.append("run reset")
    if r.execution in ("FAILED", "TIMED_OUT"):
        reasons.append(f"run {r.execution.lower().replace('_', ' ')}")
    if r.stage == Stage.RELEASED and r.seconds_to_release is None:
        reasons.append("released without a recorded hold")
    return Flag(review_id=r.review_id, run_id=r.run_id, reasons=reasons) if reasons else None


def days_text(stats: DayStats | None, *fields: str) -> str:
    """Day figures for a table cell: a dash when nothing was counted, a count alone when suppressed."""
    if stats is None or stats.count == 0:
        return "—"
    if stats.suppressed:
        return f"suppressed ({stats.count})"
    return ", ".join(f"{getattr(stats, f):.1f}" for f in fields)
