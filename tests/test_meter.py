"""The mission-creep meter's figures, from known reviews and cases (a pure function of what
visibility and the histories' shape hold), including the suppression of small cells."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.meter import CaseRun, ReviewRun, meter
from domain.policy import load_policy

DAY = timedelta(days=1)
JULY = datetime(2026, 7, 1, tzinfo=UTC)
OCTOBER = datetime(2026, 10, 1, tzinfo=UTC)
EO = load_policy("eo-2026")
POLICIES = {EO.version: EO}


def run(rid: str, **fields: object) -> ReviewRun:
    base = dict(review_id=rid, run_id=f"{rid}-run", lab="L", policy_version=EO.version, started_at=JULY)
    return ReviewRun.model_validate({**base, **fields})


def released(rid: str, days: float, delay_days: float, **fields: object) -> ReviewRun:
    return run(
        rid, stage="RELEASED", execution="COMPLETED", closed_at=JULY + days * DAY,
        seconds_to_release=int(days * 86400), seconds_delayed=delay_days * 86400, **fields,
    )  # fmt: skip


def test_figures_per_policy_version_and_quarter() -> None:
    q3 = [
        released("not-covered", 10, 0, covered=False, outcome="NOT_COVERED", nsa_decided=True),
        released(
            "early", 20, 5, covered=True, outcome="CONCLUDED_EARLY", nsa_decided=True, participants=["dod", "dhs"]
        ),
        released(
            "elapsed", 49.5, 30, covered=True, outcome="WINDOW_ELAPSED", participants=["dod"], clock_ran_out="max_hold"
        ),  # covered by the policy's default (no NSA decision), and held half a day past its 49-day bound
        run("withdrawn", stage="WITHDRAWN", outcome="WITHDRAWN", execution="COMPLETED", closed_at=JULY + DAY),
        run(  # refiled after the withdrawal, and withdrawn again
            "withdrawn",
            run_id="refiled",
            stage="WITHDRAWN",
            outcome="WITHDRAWN",
            execution="COMPLETED",
            started_at=JULY + 2 * DAY,
            closed_at=JULY + 3 * DAY,
            refiling=True,
        ),  # fmt: skip
    ]
    # Another reading of the order in the same quarter: two reviews, never mixed with the first.
    other = [run(f"other-{i}", policy_version="eo-2026-from-disclosure.1") for i in range(2)]
    # Next quarter: runs cut short or rewritten, each flagged.
    q4 = [
        run("terminated", started_at=OCTOBER, execution="TERMINATED", closed_at=OCTOBER + DAY),
        run("cancelled", started_at=OCTOBER, execution="CANCELED", closed_at=OCTOBER + DAY, cancel_requested=True),
        run("reset", started_at=OCTOBER, reset=True),
        run("asked-to-cancel", started_at=OCTOBER, cancel_requested=True),
    ]
    m = meter(q3 + other + q4, [], POLICIES, now=OCTOBER + 2 * DAY)
    cells = {(c.policy_version, c.quarter): c for c in m.reviews}
    assert list(cells) == [
        ("eo-2026-from-disclosure.1", "2026-Q3"), ("eo-2026.1", "2026-Q3"), ("eo-2026.1", "2026-Q4"),
    ]  # fmt: skip

    c = cells[("eo-2026.1", "2026-Q3")]
    assert not c.suppressed and c.reviews == 5
    assert (c.covered, c.determined) == (2, 3) and abs(c.covered_share - 2 / 3) < 1e-9
    assert (c.decided_by_nsa, c.policy_defaults) == (2, 1)
    # Days held 10, 20, 49.5: the p90 by linear interpolation, 20 + 0.8 * (49.5 - 20).
    assert (c.days_held.count, c.days_held.median_days, c.days_held.max_days) == (3, 20, 49.5)
    assert abs(c.days_held.p90_days - 43.6) < 1e-9
    assert (c.delay_days.median_days, c.delay_days.max_days, c.delayed) == (5, 30, 2)
    assert c.agency_participation == {"dhs": 1, "dod": 2}
    assert (c.withdrawals, c.refilings) == (2, 1)
    assert (c.windows_elapsed, c.windows_concluded_early, c.ended_by_max_hold) == (1, 1, 1)

    small = cells[("eo-2026-from-disclosure.1", "2026-Q3")]
    assert small.suppressed and small.reviews == 2
    assert small.model_dump(exclude={"policy_version", "quarter", "reviews", "suppressed"}, exclude_none=True) == {}

    flags = {f.review_id: f.reasons for f in m.flags}
    assert flags == {
        "elapsed": ["held 49.5 days: past its policy's 49 days bound"],
        "terminated": ["run terminated"],
        "cancelled": ["run cancelled"],
        "reset": ["run reset"],
        "asked-to-cancel": ["cancellation requested"],
    }


def test_a_figure_from_fewer_than_three_values_is_suppressed_even_in_a_large_cell() -> None:
    runs = [released("one", 12, 3, covered=False, outcome="NOT_COVERED", nsa_decided=True)]
    runs += [run(f"open-{i}") for i in range(3)]
    c = meter(runs, [], POLICIES, now=JULY + DAY).reviews[0]
    assert not c.suppressed and c.reviews == 4
    # One review's hold and delay would be that lab's own figures.
    assert c.days_held.suppressed and c.days_held.count == 1 and c.days_held.median_days is None
    assert c.delay_days.suppressed and c.delay_days.max_days is None


def test_clearinghouse_figures() -> None:
    def case(cid: str, priority: int, fixed: float | None, disclosed: float | None, **fields: object) -> CaseRun:
        values = dict(
            case_id=cid, policy_version=EO.version, priority=priority, started_at=JULY,
            embargo_deadline=JULY + 45 * DAY,
            fixed_at=JULY + fixed * DAY if fixed is not None else None,
            disclosed_at=JULY + disclosed * DAY if disclosed is not None else None,
        )  # fmt: skip
        return CaseRun.model_validate({**values, **fields})

    cases = [
        case("kept", 1, fixed=2, disclosed=10),
        case("late", 1, fixed=4, disclosed=50, extensions=2),
        case("secret", 3, fixed=10, disclosed=None),  # still embargoed past its deadline
        case("young", 4, fixed=None, disclosed=None, embargo_deadline=JULY + 90 * DAY),
    ]
    cell = meter([], cases, POLICIES, now=JULY + 60 * DAY).clearinghouse[0]
    assert cell.cases == 4 and cell.by_priority == {"P1": 2, "P3": 1, "P4": 1}
    assert (cell.days_to_fix.count, cell.days_to_fix.median_days) == (3, 4)
    assert (cell.embargoes_kept, cell.embargoes_overrun, cell.extensions) == (1, 2, 2)
