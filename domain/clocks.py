"""The clocks a lab can plan on: the bound on the whole hold, the earliest and latest release
under the policy, and the delay a review imposed on the lab's own date.

Pure functions of the policy and what the review has recorded, so the workflow (deterministic),
the CLI (at disclosure) and the tests compute the same dates.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from domain.policy import Policy
from domain.status import ReviewStatus, Stage

# The clocks that can end a review's hold (the policy's field names, so the record names the rule).
STANDARDS_CLOCK = "standards_check_timeout"
DETERMINATION_CLOCK = "determination_deadline"
WINDOW_CLOCK = "review_window"
HOLD_CLOCK = "max_hold"


class PastIntended(StrEnum):
    """Whether the review reaches past the lab's intended release date."""

    NO = "no"  # the latest release under the policy is on or before the lab's date
    POSSIBLY = "possibly"  # only if the review runs long
    YES = "yes"  # the hold has already passed (or ended after) the lab's date


def intended_release_at(intended: date) -> datetime:
    """The lab's date as an instant: the start of that day, UTC (a hold lifted later that day
    counts as delay: the lab meant to release on it)."""
    return datetime.combine(intended, time(), tzinfo=UTC)


def hold_deadline(policy: Policy, disclosed_at: datetime) -> datetime:
    return disclosed_at + policy.hold_bound


def cut(clock: timedelta, now: datetime, deadline: datetime) -> tuple[timedelta, bool]:
    """A stage's clock cut to what is left of the hold: (duration, whether the bound cut it)."""
    left = max(deadline - now, timedelta(0))
    return (left, True) if left < clock else (clock, False)


def latest_release(
    policy: Policy,
    stage: Stage,
    *,
    now: datetime,
    hold_deadline: datetime,
    stage_started_at: datetime,
    determination_deadline: datetime | None,
    window_deadline: datetime | None,
    hold_ended_at: datetime | None,
) -> datetime | None:
    """The latest the model can be released under the policy, from what the review knows now."""
    if hold_ended_at is not None:
        return hold_ended_at if stage != Stage.WITHDRAWN else None
    if stage == Stage.WITHDRAWN:
        return None
    if stage == Stage.UNDER_REVIEW and window_deadline is not None:
        projected = window_deadline
    elif stage == Stage.AWAITING_DETERMINATION and determination_deadline is not None:
        # The NSA may still decide "covered" at its deadline, and the window runs from then.
        projected = determination_deadline + policy.review_window
    elif stage == Stage.STANDARDS_CHECK:
        projected = stage_started_at + policy.every_clock
    else:
        projected = now + policy.every_clock
    return min(projected, hold_deadline)


def earliest_release(stage: Stage, *, now: datetime, hold_ended_at: datetime | None) -> datetime | None:
    """Nothing in the policy holds a model a minimum time: while the review is open the earliest
    release is now (every pending party could answer at once); once the hold lifted, that moment."""
    if stage == Stage.WITHDRAWN:
        return None
    return hold_ended_at if hold_ended_at is not None else now


def past_intended(
    intended: date, earliest: datetime | None, latest: datetime | None, *, released: bool
) -> PastIntended | None:
    if earliest is None or latest is None:
        return None
    at = intended_release_at(intended)
    if earliest > at:
        return PastIntended.YES
    if latest <= at or released:
        return PastIntended.NO
    return PastIntended.POSSIBLY


def delay_seconds(intended: date, hold_ended_at: datetime) -> int:
    """The delay a review imposed on the lab's own date: zero when it let go before it."""
    return max(0, int((hold_ended_at - intended_release_at(intended)).total_seconds()))


def as_of(status: ReviewStatus, now: datetime) -> ReviewStatus:
    """The status with its earliest release brought up to `now`. A workflow's clock in a query is
    the time of its last event, so the status query says "as of the review's last event" (and
    stays the same between two reads); what a reader is shown (the CLI, `LabClient.status`) is
    brought up to the time of reading, or a review that waited quietly for days would show an
    earliest release in the past and miss that the lab's date has gone by."""
    if status.hold_ended_at is not None or status.earliest_release is None or status.latest_release is None:
        return status
    earliest = min(max(status.earliest_release, now), status.latest_release)
    intended = status.intended_release_date
    past = past_intended(intended, earliest, status.latest_release, released=False) if intended else None
    return status.model_copy(
        update={"earliest_release": earliest, "past_intended_release": past.value if past else None}
    )
