"""Messages into a running review (updates) and what activities return.

Every message carries its sender and a unique message id: the id doubles as the
Temporal update id, so a retried send is applied once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.agencies import Agency
from domain.vulnerability import VulnerabilityReport

Text = Annotated[str, Field(min_length=1, max_length=4000)]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sender: str
    message_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    # Ed25519 over the canonical bytes (domain/signatures.py); set by the sender's Signer.
    signature: str | None = None
    # The run of the workflow the message is signed for, as the server named it to the sender's
    # client: a message signed for an earlier run (withdrawn and refiled, reset, continued as new)
    # is refused by the workflows that check it (the review, a case).
    run_id: str | None = None


class Determination(Message):
    """The NSA's call: covered or not, and which agencies take part in the review."""

    covered: bool
    agencies: list[Agency] = Field(default_factory=list)
    rationale: Text


class FindingKind(StrEnum):
    VULNERABILITY = "vulnerability"
    CAPABILITY = "capability"
    MITIGATION = "mitigation"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class ReviewFinding(Message):
    """A participating agency's finding during the review window."""

    kind: FindingKind
    severity: Severity
    summary: Text
    # What the clearinghouse needs to open a case: required for, and only for, a vulnerability.
    vulnerability: VulnerabilityReport | None = None

    @model_validator(mode="after")
    def _vulnerability_details(self) -> ReviewFinding:
        if self.kind == FindingKind.VULNERABILITY and self.vulnerability is None:
            raise ValueError(
                "a vulnerability finding needs its details (vulnerability: product, vendor, "
                "affected_versions, cwe, location, cvss_vector)"
            )
        if self.kind != FindingKind.VULNERABILITY and self.vulnerability is not None:
            raise ValueError(f"vulnerability details apply only to kind vulnerability, not {self.kind.value}")
        return self


class Conclusion(Message):
    """A participating agency has finished its review."""

    summary: str = ""


class Withdrawal(Message):
    """The lab leaves the (voluntary) program."""

    reason: Text


class Verdict(StrEnum):
    CONCERN = "concern"
    NO_CONCERN = "no_concern"
    NO_RESPONSE = "no_response"


class StandardsVerdict(BaseModel):
    """One standards body's judgement of a disclosure against its classified standard."""

    agency: Agency
    verdict: Verdict
    rationale: str = ""
    standard_version: str = ""


class Briefing(BaseModel):
    """What the NSA is briefed with before it decides."""

    review_id: str
    verdicts: list[StandardsVerdict]
    determination_deadline: datetime


class BriefingReceipt(BaseModel):
    briefing_id: str
    delivered_at: datetime


class VettingResult(BaseModel):
    partner_id: str
    approved: bool
    reason: str


class AccessGrant(BaseModel):
    review_id: str
    partner_id: str
    grant_id: str
    granted_at: datetime
    already_granted: bool = False
