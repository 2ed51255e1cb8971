"""What an agency or the lab sends into a running review, as typed calls.

Each client speaks for one party; the workflow checks that the party may send the
message at this stage and rejects it with the reason otherwise. Every call takes an idempotency
key (`message_id=`); without one, the key is derived from the message's content, its sender and
the review (api/idempotency.py), so a call made again after a lost reply is applied once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from temporalio.client import Client

from api.idempotency import keyed
from api.reviews import send, status
from domain import clocks
from domain.agencies import Agency, parse_agency
from domain.messages import Conclusion, Determination, FindingKind, Message, ReviewFinding, Severity, Withdrawal
from domain.review import CONCLUDE_REVIEW, RECORD_DETERMINATION, SUBMIT_FINDING, WITHDRAW
from domain.signatures import Signer
from domain.status import LabView, Receipt
from domain.vulnerability import VulnerabilityReport, lab_party
from infra.keys import KeyDirectory


class AgencyClient:
    """Speaks for one agency, signing with its key (by default from the installation's
    key directory, infra/keys.py)."""

    def __init__(self, client: Client, agency: Agency | str, signer: Signer | None = None) -> None:
        self.client = client
        self.agency = parse_agency(agency) if isinstance(agency, str) else agency
        self.signer = signer or KeyDirectory().signer(self.agency.value)

    async def determine(
        self,
        review_id: str,
        *,
        covered: bool,
        rationale: str,
        agencies: Iterable[Agency | str] = (),
        message_id: str | None = None,
    ) -> Receipt:
        """The NSA's determination (only the NSA's is accepted)."""
        message = Determination(
            sender=self.agency.value,
            covered=covered,
            agencies=[parse_agency(a) if isinstance(a, str) else a for a in agencies],
            rationale=rationale,
        )
        return await self._send(review_id, RECORD_DETERMINATION, message, message_id)

    async def submit_finding(
        self,
        review_id: str,
        *,
        kind: FindingKind | str,
        severity: Severity | str,
        summary: str,
        vulnerability: VulnerabilityReport | None = None,
        message_id: str | None = None,
    ) -> Receipt:
        """A vulnerability finding carries its details (`vulnerability`); it goes on to Treasury's clearinghouse."""
        message = ReviewFinding(
            sender=self.agency.value,
            kind=FindingKind(kind),
            severity=Severity(severity),
            summary=summary,
            vulnerability=vulnerability,
        )
        return await self._send(review_id, SUBMIT_FINDING, message, message_id)

    async def conclude(self, review_id: str, summary: str = "", *, message_id: str | None = None) -> Receipt:
        message = Conclusion(sender=self.agency.value, summary=summary)
        return await self._send(review_id, CONCLUDE_REVIEW, message, message_id)

    async def _send(self, review_id: str, update: str, message: Message, message_id: str | None) -> Receipt:
        return await send(self.client, review_id, update, keyed(review_id, update, message, message_id), self.signer)


class LabClient:
    """Speaks for a lab (`lab:<id>`): by default with the key of the lab whose review it is sent to
    (a review accepts its withdrawal from its own lab only)."""

    def __init__(self, client: Client, signer: Signer | None = None) -> None:
        self.client = client
        self.signer = signer

    async def status(self, review_id: str) -> LabView:
        """The lab's own view of its review: stage, deadlines, covered or not, participating
        agencies, earliest and latest release; never an agency's verdict, finding or rationale."""
        return LabView.of(clocks.as_of(await status(self.client, review_id), datetime.now(UTC)))

    async def withdraw(self, review_id: str, reason: str, *, message_id: str | None = None) -> Receipt:
        signer = self.signer or KeyDirectory().signer(lab_party((await status(self.client, review_id)).lab))
        message = keyed(review_id, WITHDRAW, Withdrawal(sender=signer.party, reason=reason), message_id)
        return await send(self.client, review_id, WITHDRAW, message, signer)
