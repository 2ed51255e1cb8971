"""What an agency or the lab sends into a running review, as typed calls.

Each client speaks for one party; the workflow checks that the party may send the
message at this stage and rejects it with the reason otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable

from temporalio.client import Client

from api.reviews import send
from domain.agencies import LAB, Agency, parse_agency
from domain.messages import Conclusion, Determination, FindingKind, ReviewFinding, Severity, Withdrawal
from domain.review import CONCLUDE_REVIEW, RECORD_DETERMINATION, SUBMIT_FINDING, WITHDRAW
from domain.status import ReviewStatus
from domain.vulnerability import VulnerabilityReport


class AgencyClient:
    def __init__(self, client: Client, agency: Agency | str) -> None:
        self.client = client
        self.agency = parse_agency(agency) if isinstance(agency, str) else agency

    async def determine(
        self, review_id: str, *, covered: bool, rationale: str, agencies: Iterable[Agency | str] = ()
    ) -> ReviewStatus:
        """The NSA's determination (only the NSA's is accepted)."""
        message = Determination(
            sender=self.agency.value,
            covered=covered,
            agencies=[parse_agency(a) if isinstance(a, str) else a for a in agencies],
            rationale=rationale,
        )
        return await send(self.client, review_id, RECORD_DETERMINATION, message)

    async def submit_finding(
        self,
        review_id: str,
        *,
        kind: FindingKind | str,
        severity: Severity | str,
        summary: str,
        vulnerability: VulnerabilityReport | None = None,
    ) -> ReviewStatus:
        """A vulnerability finding carries its details (`vulnerability`); it goes on to Treasury's clearinghouse."""
        message = ReviewFinding(
            sender=self.agency.value,
            kind=FindingKind(kind),
            severity=Severity(severity),
            summary=summary,
            vulnerability=vulnerability,
        )
        return await send(self.client, review_id, SUBMIT_FINDING, message)

    async def conclude(self, review_id: str, summary: str = "") -> ReviewStatus:
        return await send(
            self.client, review_id, CONCLUDE_REVIEW, Conclusion(sender=self.agency.value, summary=summary)
        )


class LabClient:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def withdraw(self, review_id: str, reason: str) -> ReviewStatus:
        return await send(self.client, review_id, WITHDRAW, Withdrawal(sender=LAB, reason=reason))
