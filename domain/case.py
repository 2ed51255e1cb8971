"""A vulnerability case: its statuses, the messages its parties send, its activities' inputs and
results, and its state (what it carries, returns and shows).

RECEIVED -> VALIDATED | INVALID -> TRIAGED -> VENDOR_NOTIFIED -> FIX_READY -> PATCH_DISTRIBUTED
         -> DISCLOSED -> CLOSED
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from domain.clearinghouse import Text, VulnerabilityIntake
from domain.messages import Message
from domain.policy import ClearinghousePolicy
from domain.sectors import Sector
from domain.vulnerability import CvssRating, Priority

Versions = Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]], Field(min_length=1, max_length=100)]


# No embargo runs for years: the policy caps the total far below (max_extension); this bounds the
# value so that a deadline computed from it always exists (`--days 1000000000` overflowed).
MAX_EXTENSION_REQUEST = timedelta(days=3650)


class CaseStatus(StrEnum):
    RECEIVED = "RECEIVED"
    VALIDATED = "VALIDATED"
    INVALID = "INVALID"
    TRIAGED = "TRIAGED"
    VENDOR_NOTIFIED = "VENDOR_NOTIFIED"
    FIX_READY = "FIX_READY"
    PATCH_DISTRIBUTED = "PATCH_DISTRIBUTED"
    DISCLOSED = "DISCLOSED"
    CLOSED = "CLOSED"


# While the embargo runs, the vendor may ask for more time and the fix may arrive.
EMBARGO_STATUSES = (CaseStatus.VENDOR_NOTIFIED, CaseStatus.FIX_READY, CaseStatus.PATCH_DISTRIBUTED)


class FixReady(Message):
    """The vendor has a fix."""

    fixed_versions: Versions
    advisory: Annotated[str, Field(max_length=4000)] = ""


class PatchDeployed(Message):
    """The fix is deployed: by the operators of one sector, or everywhere (the vendor or Treasury)."""

    note: Annotated[str, Field(max_length=4000)] = ""


class ExploitationObserved(Message):
    evidence: Text


class ExtensionRequest(Message):
    """The vendor asks for more time before public disclosure; the policy caps the total."""

    extension: Annotated[timedelta, Field(gt=timedelta(0), le=MAX_EXTENSION_REQUEST)]
    reason: Text


class Validation(BaseModel):
    valid: bool
    reason: str


class Triage(BaseModel):
    cvss_version: str
    cvss_vector: str
    base_score: float
    severity: CvssRating
    priority: Priority
    critical_sectors: list[Sector]


class NoticeKind(StrEnum):
    VENDOR_NOTICE = "vendor-notice"  # embargoed, to the vendor
    OPERATOR_ADVISORY = "operator-advisory"  # embargoed, to operators of a critical-infrastructure sector
    PATCH = "patch"  # the fix, to operators of an affected sector
    PUBLIC_ADVISORY = "public-advisory"  # the disclosure


class Notice(BaseModel):
    case_id: str
    kind: NoticeKind
    recipient: str  # a party: vendor:<id>, operator:<sector>, public
    sector: Sector | None = None
    subject: str
    body: str


class NoticeReceipt(BaseModel):
    case_id: str
    kind: NoticeKind
    recipient: str
    recipients: list[str] = Field(default_factory=list, description="registered organisations reached too")
    sent_at: datetime
    already_sent: bool = False


class CaseTransition(BaseModel):
    status: CaseStatus
    at: datetime
    actor: str
    reason: str


class LinkedReport(BaseModel):
    message_id: str
    sender: str
    reference: str = ""
    found_by: str = ""
    received_at: datetime


class NoticeRecord(BaseModel):
    kind: NoticeKind
    recipient: str
    delivered: bool
    at: datetime
    detail: str = ""


class CaseState(BaseModel):
    """A case's state, carried from run to run when it continues as new."""

    status: CaseStatus
    received_at: datetime
    reports: list[LinkedReport]
    applied: list[str]
    sectors: list[Sector]
    exploited: bool
    exploitation: list[ExploitationObserved]
    triage: Triage | None
    invalid_reason: str | None
    vendor_notified_at: datetime | None
    deadline: datetime | None
    deadline_cause: str
    extended: timedelta
    extensions: list[ExtensionRequest]
    fix: FixReady | None
    advised: list[Sector]
    patched: list[Sector]
    deployed_sectors: list[Sector]
    deployed_everywhere: bool
    deployed_by: list[str]
    disclosed_at: datetime | None
    disclosure_reason: str | None
    notices: list[NoticeRecord]
    transitions: list[CaseTransition]
    refused: list[str]
    refused_total: int
    runs: int


class CaseView(BaseModel):
    case_id: str
    fingerprint: str
    status: CaseStatus
    policy_version: str
    product: str
    vendor: str
    vendor_party: str
    affected_versions: list[str]
    cwe: str
    location: str
    summary: str
    cvss_vector: str
    cvss_version: str | None = None
    base_score: float | None = None
    severity: CvssRating | None = None
    priority: Priority | None = None
    priority_reason: str | None = None
    sectors: list[Sector]
    exploited: bool
    exploitation: list[ExploitationObserved] = Field(default_factory=list)
    reports: list[LinkedReport]
    received_at: datetime
    invalid_reason: str | None = None
    vendor_notified_at: datetime | None = None
    embargo_deadline: datetime | None = None
    extended_by: timedelta = timedelta(0)
    extensions: list[ExtensionRequest] = Field(default_factory=list)
    fix: FixReady | None = None
    patched_sectors: list[Sector] = Field(default_factory=list)
    deployed_by: list[str] = Field(default_factory=list)
    disclosed_at: datetime | None = None
    disclosure_reason: str | None = None
    notices: list[NoticeRecord] = Field(default_factory=list)
    transitions: list[CaseTransition] = Field(default_factory=list)
    # Messages the case dropped without acting on them (a linked report of another vulnerability,
    # or one that does not verify): the last few, with why, and how many in all.
    refused: list[str] = Field(default_factory=list)
    refused_total: int = 0
    runs: int = 1


class CaseInput(BaseModel):
    """What the clearinghouse starts a case with; a case continuing as new adds its state
    (`carried`), taken only when `carried_from` is the id of the run it continues."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    fingerprint: str
    intake: VulnerabilityIntake
    policy_version: str
    policy: ClearinghousePolicy
    carried: CaseState | None = None
    carried_from: str | None = None
