"""Messages into a running review (updates) and what activities return.

Every message carries its sender and a unique message id: the id doubles as the
Temporal update id, so a retried send is applied once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, model_validator

from domain.agencies import STANDARDS_BODIES, Agency
from domain.persisted import PERSISTED
from domain.vulnerability import VulnerabilityReport

Text = Annotated[str, Field(min_length=1, max_length=4000)]
# Sender ids are party ids (`nsa`, `vendor:acme-...`); message ids double as update ids.
PartyId = Annotated[str, Field(min_length=1, max_length=200)]
MessageId = Annotated[str, Field(min_length=1, max_length=200)]


class Message(BaseModel):
    # Persisted in histories (update arguments): unknown fields are ignored there, refused at the door.
    model_config = PERSISTED

    sender: PartyId
    message_id: MessageId = Field(default_factory=lambda: uuid.uuid4().hex)
    # Ed25519 over the canonical bytes (domain/signatures.py); set by the sender's Signer.
    signature: Annotated[str, Field(max_length=200)] | None = None
    # The run of the workflow the message is signed for, as the server named it to the sender's
    # client: a message signed for an earlier run (withdrawn and refiled, reset, continued as new)
    # is refused by the workflows that check it (the review, a case).
    run_id: Annotated[str, Field(max_length=100)] | None = None


class Determination(Message):
    """The NSA's call: covered or not, and which agencies take part in the review."""

    covered: Annotated[bool, Field(strict=True)]
    # The review's participants are standards bodies: the NSA decides, it does not take part
    # (as the policy's default_participants).
    agencies: list[Agency] = Field(default_factory=list, max_length=len(STANDARDS_BODIES))
    rationale: Text

    @model_validator(mode="after")
    def _participants_are_standards_bodies(self) -> Determination:
        others = [a.value for a in self.agencies if a not in STANDARDS_BODIES]
        if others:
            known = ", ".join(a.value for a in STANDARDS_BODIES)
            raise ValueError(f"participating agencies are standards bodies ({known}), not {', '.join(others)}")
        if len(set(self.agencies)) != len(self.agencies):
            raise ValueError("an agency is named twice among the participants")
        return self


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

    summary: Annotated[str, Field(max_length=4000)] = ""


class Withdrawal(Message):
    """The lab leaves the (voluntary) program."""

    reason: Text


class Verdict(StrEnum):
    CONCERN = "concern"
    NO_CONCERN = "no_concern"
    NO_RESPONSE = "no_response"
    # The disclosure lacks something a rule of the standard needs (an evaluation it does not report):
    # the standard cannot tell, which counts as a concern, never as "no concern".
    INSUFFICIENT_INFORMATION = "insufficient_information"

    @property
    def is_concern(self) -> bool:
        return self in (Verdict.CONCERN, Verdict.INSUFFICIENT_INFORMATION)


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
