"""A vulnerability case: its statuses, the messages its parties send, its activities' inputs and
results, and its state (what it carries, returns and shows).

RECEIVED -> VALIDATED | INVALID -> TRIAGED -> VENDOR_NOTIFIED -> FIX_READY -> PATCH_DISTRIBUTED
         -> DISCLOSED -> CLOSED
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, computed_field

from domain.attestation import UnverifiedResult
from domain.clearinghouse import VulnerabilityIntake
from domain.messages import Message, Text
from domain.policy import ClearinghousePolicy
from domain.sectors import Sector
from domain.vulnerability import (
    TREASURY,
    CvssRating,
    Priority,
    VulnerabilityReport,
    cvss_score,
    priority,
    priority_reason,
)

# What a case writes into its history (its input, results, messages, state) is read back by every
# later replay and audit: a field a later version drops is ignored there, never an error. Input
# from outside is held strictly at the door (domain/inputs.py), before it reaches a case.
IN_HISTORY = ConfigDict(extra="ignore")
# A report relayed from a model review names the review (domain/ids.review_id) as its reference.
REVIEW_PREFIX = "review-"

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


class CaseMessage(Message):
    """A signed message to a case (strict at the door, tolerant once in the history)."""

    model_config = IN_HISTORY


class FixReady(CaseMessage):
    """The vendor has a fix."""

    fixed_versions: Versions
    advisory: Annotated[str, Field(max_length=4000)] = ""


class PatchDeployed(CaseMessage):
    """The fix is deployed: by the operators of one sector, or everywhere (the vendor or Treasury)."""

    note: Annotated[str, Field(max_length=4000)] = ""


class ExploitationObserved(CaseMessage):
    evidence: Text


class ExtensionRequest(CaseMessage):
    """The vendor asks for more time before public disclosure; the policy caps the total."""

    extension: Annotated[timedelta, Field(gt=timedelta(0), le=MAX_EXTENSION_REQUEST)]
    reason: Text


class Validation(BaseModel):
    model_config = IN_HISTORY

    valid: bool
    reason: str


class Triage(BaseModel):
    model_config = IN_HISTORY

    cvss_version: str
    cvss_vector: str
    base_score: float
    severity: CvssRating
    priority: Priority
    critical_sectors: list[Sector]


def validation_of(report: VulnerabilityReport) -> Validation:
    """Treasury's validation of a report: what its CVSS vector scores. A pure function of the report,
    so the audit recomputes it (a doctored result in an exported history does not match)."""
    score = cvss_score(report.cvss_vector)
    if score.base_score == 0.0:
        return Validation(valid=False, reason=f"CVSS base score 0.0 ({score.vector}): the vector describes no impact")
    return Validation(valid=True, reason=f"CVSS {score.version} vector scores {score.base_score}")


def triage_of(report: VulnerabilityReport) -> Triage:
    """Treasury's triage of a report: its CVSS score and rating, and the priority they and the
    sectors give it. Pure, as `validation_of`, for the same reason."""
    score = cvss_score(report.cvss_vector)
    return Triage(
        cvss_version=score.version,
        cvss_vector=score.vector,
        base_score=score.base_score,
        severity=score.rating,
        priority=priority(score.rating, report.sectors, report.exploited),
        critical_sectors=report.critical_sectors,
    )


class NoticeKind(StrEnum):
    VENDOR_NOTICE = "vendor-notice"  # embargoed, to the vendor
    OPERATOR_ADVISORY = "operator-advisory"  # embargoed, to operators of a critical-infrastructure sector
    PATCH = "patch"  # the fix, to operators of an affected sector
    PUBLIC_ADVISORY = "public-advisory"  # the disclosure


class Notice(BaseModel):
    model_config = IN_HISTORY

    case_id: str
    kind: NoticeKind
    recipient: str  # a party: vendor:<id>, operator:<sector>, public
    sector: Sector | None = None
    subject: str
    body: str


class NoticeReceipt(BaseModel):
    model_config = IN_HISTORY

    case_id: str
    kind: NoticeKind
    recipient: str
    recipients: list[str] = Field(default_factory=list, description="registered organisations reached too")
    sent_at: datetime
    already_sent: bool = False


class CaseTransition(BaseModel):
    model_config = IN_HISTORY

    status: CaseStatus
    at: datetime
    actor: str  # who caused it: the verified sender of the message (the vendor's fix), else treasury
    reason: str


class LinkedReport(BaseModel):
    model_config = IN_HISTORY

    message_id: str
    sender: str
    reference: str = ""  # where it came from: the review id, for a review's finding
    found_by: str = ""
    received_at: datetime


class NoticeRecord(BaseModel):
    model_config = IN_HISTORY

    kind: NoticeKind
    recipient: str
    delivered: bool
    at: datetime
    detail: str = ""


class CaseState(BaseModel):
    """The case's one state: its `status` query's answer, its result, what it carries into its next
    run, and its record (each status change with its actor and reason, each notice, each message
    applied). Only the case workflow writes it; the audit reads it back from the history."""

    model_config = IN_HISTORY

    case_id: str
    fingerprint: str
    policy_version: str
    report: VulnerabilityReport  # the report that opened the case
    status: CaseStatus = CaseStatus.RECEIVED
    received_at: datetime
    reports: list[LinkedReport]  # the opening report, then each duplicate linked to the case
    applied: list[str] = Field(default_factory=list)  # message ids applied, each once across runs
    sectors: list[Sector]
    exploited: bool
    exploitation: list[ExploitationObserved] = Field(default_factory=list)
    triage: Triage | None = None
    invalid_reason: str | None = None
    vendor_notified_at: datetime | None = None
    embargo_deadline: datetime | None = None
    deadline_cause: str = ""
    extended_by: timedelta = timedelta(0)
    extensions: list[ExtensionRequest] = Field(default_factory=list)
    fix: FixReady | None = None
    advised: list[Sector] = Field(default_factory=list)  # critical-infrastructure sectors given the advisory
    patched_sectors: list[Sector] = Field(default_factory=list)  # sectors the patch was sent to
    deployed_sectors: list[Sector] = Field(default_factory=list)
    deployed_everywhere: bool = False
    deployed_by: list[str] = Field(default_factory=list)
    disclosed_at: datetime | None = None
    disclosure_reason: str | None = None
    notices: list[NoticeRecord] = Field(default_factory=list)
    transitions: list[CaseTransition] = Field(default_factory=list)
    # Messages the case dropped without acting on them (a linked report of another vulnerability,
    # or one that does not verify): the last few, with why, and how many in all.
    refused: list[str] = Field(default_factory=list)
    refused_total: int = 0
    # Activity results the case did not believe (a keyring not signed by Treasury: completed by id,
    # or a rogue poller's): which activity, whose signature was expected, why.
    unverified_results: list[UnverifiedResult] = Field(default_factory=list)
    runs: int = 1

    @computed_field  # type: ignore[prop-decorator]
    @property
    def priority(self) -> Priority | None:
        return priority(self.triage.severity, self.sectors, self.exploited) if self.triage else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def priority_reason(self) -> str | None:
        return priority_reason(self.triage.severity, self.sectors, self.exploited) if self.triage else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reviews(self) -> list[str]:
        """The model reviews whose findings opened or joined this case: the reports Treasury relayed
        from a review (anyone else's `reference` is their own word, not a link)."""
        relayed = (r.reference for r in self.reports if r.sender == TREASURY and r.reference.startswith(REVIEW_PREFIX))
        return list(dict.fromkeys(relayed))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def vendor_party(self) -> str:
        return self.report.vendor_party

    @computed_field  # type: ignore[prop-decorator]
    @property
    def severity(self) -> CvssRating | None:
        return self.triage.severity if self.triage else None

    @property
    def base_score(self) -> float | None:
        return self.triage.base_score if self.triage else None

    @property
    def title(self) -> str:
        r = self.report
        return f"{r.cwe} in {r.product} {', '.join(r.affected_versions)} ({r.location})"


class CaseInput(BaseModel):
    """What the clearinghouse starts a case with; a case continuing as new adds its state
    (`carried`), taken only when `carried_from` is the id of the run it continues."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    case_id: str
    fingerprint: str
    intake: VulnerabilityIntake
    policy_version: str
    policy: ClearinghousePolicy
    carried: CaseState | None = None
    carried_from: str | None = None
