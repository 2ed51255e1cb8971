"""The transparency report: how the process behaves, from visibility alone.

Only unclassified fields are read: the search attributes (stage, outcome, covered, policy
version, window deadline, seconds to determination and to release, the clock that ran out, the
delay to the lab's date, the participating agencies) and the workflows' start and close times
and execution status; for the mission-creep meter (api/meter.py), the *shape* of each history
too (event types and times, update and activity names). Nothing here reads a payload or a
query, so nothing classified can reach the report, and it needs no key.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache

from pydantic import BaseModel, Field
from temporalio.client import Client

from api.meter import Meter, case_runs, meter, review_runs
from api.reviews import reader_anchors
from domain import search_attributes as sa
from domain.attestation import seal_verifies
from domain.clearinghouse import CASE_WORKFLOW
from domain.policy import POLICY_DIR, STATUTORY_WINDOW_CAP, Policy, load_policy
from domain.review import WORKFLOW_TYPE
from domain.status import Outcome, Stage
from domain.vulnerability import REVIEW_OFFICE

# The window timer fires at the deadline and the release starts in the workflow task that
# follows; seconds are whole in visibility. Within this margin a release is on time.
ON_TIME_MARGIN = timedelta(minutes=1)


class ReviewFigures(BaseModel):
    """One review's unclassified figures, as visibility holds them."""

    review_id: str
    lab: str | None
    policy_version: str | None
    stage: str | None
    outcome: str | None
    covered: bool | None
    determined_by: str | None = None  # nsa, or policy-default (the NSA silent past its deadline)
    disclosed_at: datetime
    closed_at: datetime | None
    window_deadline: datetime | None
    determined_at: datetime | None
    released_at: datetime | None
    # Not normal outcomes (counted apart): a run the review office never sealed (anyone can start a
    # ModelReview with any search attributes), one that was terminated or failed, or reset.
    genuine: bool | None = None
    execution: str | None = None
    reset: bool = False

    @property
    def abnormal(self) -> str | None:
        if self.genuine is False:
            return "not genuine"
        if self.execution not in (None, "RUNNING", "COMPLETED"):
            return self.execution.lower()
        return "reset" if self.reset else None

    @property
    def to_determination(self) -> timedelta | None:
        return self.determined_at - self.disclosed_at if self.determined_at else None

    @property
    def to_release(self) -> timedelta | None:
        return self.released_at - self.disclosed_at if self.released_at else None

    @property
    def window_used(self) -> timedelta | None:
        """From the determination to the release, for a covered review."""
        if self.covered and self.released_at and self.determined_at:
            return self.released_at - self.determined_at
        return None


class DurationStats(BaseModel):
    count: int
    median_seconds: float | None = None
    p90_seconds: float | None = None
    max_seconds: float | None = None

    @classmethod
    def of(cls, durations: list[timedelta]) -> DurationStats:
        seconds = sorted(d.total_seconds() for d in durations)
        if not seconds:
            return cls(count=0)
        p90 = statistics.quantiles(seconds, n=10, method="inclusive")[8] if len(seconds) > 1 else seconds[0]
        return cls(
            count=len(seconds), median_seconds=statistics.median(seconds), p90_seconds=p90, max_seconds=seconds[-1]
        )


class HoldViolation(BaseModel):
    review_id: str
    rule: str
    detail: str


class HoldCheck(BaseModel):
    """No release waited longer than the policy allows."""

    ok: bool
    checked: int
    not_checkable: int = Field(
        description="released reviews without the timing attributes (closed before they existed)"
    )
    violations: list[HoldViolation]
    rules: list[str]


class TransparencyReport(BaseModel):
    generated_at: datetime
    since: datetime | None
    lab: str | None
    query: str
    # Reviews are review ids: a review withdrawn and refiled is one review of two runs.
    reviews: int
    runs: int = 0
    open: int
    by_stage: dict[str, int]
    by_outcome: dict[str, int]
    by_policy: dict[str, int]
    determined: int
    covered: int
    covered_share: float | None = Field(description="covered / determined")
    determined_by: dict[str, int] = Field(
        default_factory=dict,
        description="who decided: the NSA, or the policy's default on its silence (never counted as the NSA's)",
    )
    disclosure_to_determination: DurationStats
    disclosure_to_release: DurationStats
    determination_to_release_covered: DurationStats
    windows_closed_early: int
    windows_elapsed: int
    holds: HoldCheck
    # The mission-creep meter (api/meter.py): per policy version and quarter, and the flags.
    meter: Meter | None = None
    # Runs left out of every figure above: never admitted, killed (terminated, failed) or reset.
    excluded: dict[str, int] = Field(default_factory=dict)
    figures: list[ReviewFigures] = Field(default_factory=list, exclude=True)


Progress = Callable[[int, int | None], None]


def visibility_query(since: datetime | None = None, lab: str | None = None, workflow_type: str = WORKFLOW_TYPE) -> str:
    query = f'WorkflowType = "{workflow_type}"'
    if since is not None:
        query += f' AND StartTime >= "{since.astimezone(UTC).isoformat().replace("+00:00", "Z")}"'
    if lab:
        if any(c in lab for c in "\"\\'"):
            raise ValueError(f"lab {lab!r}: quotes and backslashes cannot be part of a visibility query")
        query += f' AND Lab = "{lab}"'
    return query


async def collect(client: Client, query: str, progress: Progress | None = None) -> list[ReviewFigures]:
    """Every review matching `query`, as unclassified figures."""
    total = (await client.count_workflows(query)).count if progress else None
    rows: list[ReviewFigures] = []
    anchors = reader_anchors()
    async for wf in client.list_workflows(query):
        attrs = wf.typed_search_attributes
        seal = attrs.get(sa.GENUINE_SEAL)
        to_determination = attrs.get(sa.SECONDS_TO_DETERMINATION)
        to_release = attrs.get(sa.SECONDS_TO_RELEASE)
        rows.append(
            ReviewFigures(
                review_id=wf.id,
                lab=attrs.get(sa.LAB),
                policy_version=attrs.get(sa.POLICY_VERSION),
                stage=attrs.get(sa.REVIEW_STAGE),
                outcome=attrs.get(sa.OUTCOME),
                covered=attrs.get(sa.COVERED),
                determined_by=attrs.get(sa.DETERMINED_BY),
                disclosed_at=wf.start_time,
                closed_at=wf.close_time,
                window_deadline=attrs.get(sa.WINDOW_DEADLINE),
                determined_at=wf.start_time + timedelta(seconds=to_determination)
                if to_determination is not None
                else None,
                released_at=wf.start_time + timedelta(seconds=to_release) if to_release is not None else None,
                genuine=None if anchors is None else seal_verifies(anchors, REVIEW_OFFICE, wf.id, wf.run_id, seal),
                execution=wf.status.name if wf.status else None,
                reset=sa.INTEGRITY_RESET in (attrs.get(sa.INTEGRITY) or []),
            )
        )
        if progress:
            progress(len(rows), total)
    return rows


async def transparency_report(
    client: Client,
    *,
    since: datetime | None = None,
    lab: str | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> TransparencyReport:
    query = visibility_query(since, lab)
    rows = await collect(client, query, progress)
    now = now or datetime.now(UTC)
    report = summarise(rows, query=query, since=since, lab=lab, now=now)
    runs = await review_runs(client, [wf async for wf in client.list_workflows(query)])
    # Cases belong to no lab: a lab's report leaves the clearinghouse out.
    cases = [] if lab else await case_runs(client, visibility_query(since, None, CASE_WORKFLOW))
    report.meter = meter(runs, cases, _policies(), now)
    return report


def summarise(
    rows: list[ReviewFigures], *, query: str, since: datetime | None, lab: str | None, now: datetime
) -> TransparencyReport:
    excluded = Counter(r.abnormal for r in rows if r.abnormal)
    rows = [r for r in rows if not r.abnormal]
    outcomes = Counter(r.outcome for r in rows if r.outcome)
    determined = [r for r in rows if r.covered is not None]
    covered = [r for r in determined if r.covered]
    return TransparencyReport(
        generated_at=now,
        since=since,
        lab=lab,
        query=query,
        reviews=len({r.review_id for r in rows}),
        runs=len(rows),
        open=sum(1 for r in rows if r.closed_at is None),
        by_stage=dict(sorted(Counter(r.stage or "?" for r in rows).items(), key=lambda kv: _stage_order(kv[0]))),
        by_outcome={o.value: outcomes.get(o.value, 0) for o in Outcome},
        by_policy=dict(sorted(Counter(r.policy_version or "?" for r in rows).items())),
        determined=len(determined),
        covered=len(covered),
        covered_share=len(covered) / len(determined) if determined else None,
        determined_by=dict(sorted(Counter(r.determined_by or "unrecorded" for r in determined).items())),
        disclosure_to_determination=DurationStats.of([d for r in rows if (d := r.to_determination) is not None]),
        disclosure_to_release=DurationStats.of([d for r in rows if (d := r.to_release) is not None]),
        determination_to_release_covered=DurationStats.of([d for r in rows if (d := r.window_used) is not None]),
        windows_closed_early=outcomes.get(Outcome.CONCLUDED_EARLY.value, 0),
        windows_elapsed=outcomes.get(Outcome.WINDOW_ELAPSED.value, 0),
        holds=check_holds(rows, now),
        excluded=dict(sorted(excluded.items())),
        figures=rows,
    )


HOLD_RULES = [
    "a covered review's release began by its WindowDeadline",
    "a covered review's window (determination to WindowDeadline) was at most the order's 30 days",
    "a not-covered review's release began when the determination took effect",
    "the determination came within the policy's standards-check and determination deadlines of the disclosure",
    "an open review is not held past its WindowDeadline",
]


def check_holds(rows: list[ReviewFigures], now: datetime) -> HoldCheck:
    violations: list[HoldViolation] = []
    checked = not_checkable = 0

    def flag(r: ReviewFigures, rule: int, detail: str) -> None:
        violations.append(HoldViolation(review_id=r.review_id, rule=HOLD_RULES[rule], detail=detail))

    for r in rows:
        if r.stage == Stage.UNDER_REVIEW and r.window_deadline and now > r.window_deadline + ON_TIME_MARGIN:
            checked += 1
            flag(
                r, 4, f"still UNDER_REVIEW {_ago(now - r.window_deadline)} after its deadline {_iso(r.window_deadline)}"
            )
            continue
        if r.stage not in (Stage.RELEASING, Stage.RELEASED):
            continue
        if r.released_at is None or r.determined_at is None or r.covered is None:
            not_checkable += 1
            continue
        checked += 1
        if r.covered:
            if r.window_deadline is None:
                flag(r, 0, "covered but no WindowDeadline recorded")
            else:
                if r.released_at > r.window_deadline + ON_TIME_MARGIN:
                    flag(r, 0, f"release {_iso(r.released_at)} after the deadline {_iso(r.window_deadline)}")
                if r.window_deadline - r.determined_at > STATUTORY_WINDOW_CAP + ON_TIME_MARGIN:
                    flag(r, 1, f"window of {r.window_deadline - r.determined_at}")
        elif r.released_at > r.determined_at + ON_TIME_MARGIN:
            flag(r, 2, f"release {_iso(r.released_at)}, determination {_iso(r.determined_at)}")
        policy = _policy(r.policy_version)
        if policy is not None and r.to_determination is not None:
            allowed = policy.standards_check_timeout + policy.determination_deadline
            if r.to_determination > allowed + ON_TIME_MARGIN:
                flag(
                    r, 3, f"determined {r.to_determination} after disclosure; policy {policy.version} allows {allowed}"
                )
    return HoldCheck(
        ok=not violations, checked=checked, not_checkable=not_checkable, violations=violations, rules=HOLD_RULES
    )


@cache
def _policies() -> dict[str, Policy]:
    found = {}
    for path in POLICY_DIR.glob("*.toml"):
        try:
            policy = load_policy(path)
        except ValueError:
            continue
        found[policy.version] = policy
    return found


def _policy(version: str | None) -> Policy | None:
    """The published policy of that version, when it is one of ours (a test's ad-hoc policy is not)."""
    return _policies().get(version or "")


def _stage_order(stage: str) -> int:
    order = [s.value for s in Stage]
    return order.index(stage) if stage in order else len(order)


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def _ago(delta: timedelta) -> str:
    return str(delta).split(".")[0]
