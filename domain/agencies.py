"""The parties of a review, their ids and their task queues."""

from __future__ import annotations

from enum import StrEnum


class Agency(StrEnum):
    """Agency ids, as the brief fixes them."""

    WHITEHOUSE = "whitehouse"
    DOD = "dod"
    DHS = "dhs"
    COMMERCE = "commerce"
    TREASURY = "treasury"
    NSA = "nsa"

    @property
    def task_queue(self) -> str:
        return f"agency-{self.value}"

    @property
    def title(self) -> str:
        return AGENCY_TITLES[self]


AGENCY_TITLES = {
    Agency.WHITEHOUSE: "White House",
    Agency.DOD: "DoD",
    Agency.DHS: "DHS",
    Agency.COMMERCE: "Commerce",
    Agency.TREASURY: "Treasury",
    Agency.NSA: "NSA",
}

# The five bodies that write classified standards (the order names them; the NSA decides).
STANDARDS_BODIES: tuple[Agency, ...] = (
    Agency.WHITEHOUSE,
    Agency.DOD,
    Agency.DHS,
    Agency.COMMERCE,
    Agency.TREASURY,
)

LAB = "lab"
REVIEW_TASK_QUEUE = "review"
ALL_TASK_QUEUES: tuple[str, ...] = (REVIEW_TASK_QUEUE, *(a.task_queue for a in Agency))


def parse_agency(value: str) -> Agency:
    """An agency from its id, or a ValueError naming the accepted ids."""
    try:
        return Agency(value.strip().lower())
    except ValueError:
        known = ", ".join(a.value for a in Agency)
        raise ValueError(f"unknown agency {value!r} (known: {known})") from None
