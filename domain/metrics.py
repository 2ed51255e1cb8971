"""Our own Prometheus metrics, beside the Temporal runtime's (`temporal_*`).

Names and descriptions live here so that the workflow, the activities, the README and
the tests agree. Labels carry unclassified values only (policy version, outcome, yes/no).
"""

from __future__ import annotations

from typing import NamedTuple


class Counter(NamedTuple):
    name: str
    description: str


REVIEWS_STARTED = Counter("frontier_review_reviews_started", "Reviews started (disclosures accepted)")
DETERMINATIONS = Counter("frontier_review_determinations", "NSA determinations, by covered and by policy default")
WINDOWS_CLOSED_EARLY = Counter(
    "frontier_review_windows_closed_early", "Review windows closed early: every participating agency concluded"
)
WINDOWS_ELAPSED = Counter("frontier_review_windows_elapsed", "Review windows that ran to their deadline")
REVIEWS_CLOSED = Counter("frontier_review_reviews_closed", "Reviews closed, by outcome")
GRANTS = Counter("frontier_review_grants", "Access grants recorded for trusted partners (a retry is not counted)")

ALL_COUNTERS = (REVIEWS_STARTED, DETERMINATIONS, WINDOWS_CLOSED_EARLY, WINDOWS_ELAPSED, REVIEWS_CLOSED, GRANTS)
