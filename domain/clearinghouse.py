"""Treasury's clearinghouse: names, the messages parties send, and what the workflows return.

Clearinghouse (one per namespace, id `clearinghouse`) --report--> VulnerabilityCase (one per vulnerability)

RECEIVED -> VALIDATED | INVALID -> TRIAGED -> VENDOR_NOTIFIED -> FIX_READY -> PATCH_DISTRIBUTED
         -> DISCLOSED -> CLOSED
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from domain.messages import Message, ReviewFinding
from domain.policy import ClearinghousePolicy
from domain.sectors import Sector
from domain.vulnerability import CvssRating, Priority, VulnerabilityReport

CLEARINGHOUSE_TASK_QUEUE = "clearinghouse"  # run by Treasury's worker
CLEARINGHOUSE_ID = "clearinghouse"  # one per namespace
CLEARINGHOUSE_WORKFLOW = "Clearinghouse"
CASE_WORKFLOW = "VulnerabilityCase"

# Updates, signals and queries.
REPORT_VULNERABILITY = "report_vulnerability"  # Clearinghouse: one report, as an update (answered at once)
# Clearinghouse, what the API uses: a report handed in as a signal (no cap on signals in flight, and
# the workflow takes a whole batch per workflow task); the receipt is then read with RECEIPTS_QUERY.
SUBMIT_REPORT = "submit_report"
RECEIPTS_QUERY = "receipts"
LINK_REPORT = "link_report"  # signal from the Clearinghouse to a case: a duplicate report
FIX_READY = "fix_ready"  # the vendor
PATCH_DEPLOYED = "patch_deployed"  # operators of affected sectors, the vendor, Treasury
EXPLOITATION_OBSERVED = "exploitation_observed"  # operators, the vendor, Treasury
REQUEST_EXTENSION = "request_extension"  # the vendor
# Clearinghouse and cases: reload the parties' public keys from Treasury's key directory (a party
# enrolled since the workflow loaded them). Anyone may ask; only Treasury's worker supplies keys.
REFRESH_KEYS = "refresh_keys"
CASE_STATUS_QUERY = "status"
# The clearinghouse turns reports away while it continues as new; `api.clearinghouse.report` resends them.
CONTINUING_AS_NEW = "ContinuingAsNew"
CLEARINGHOUSE_STATUS_QUERY = "status"

# Activities, all on the clearinghouse queue.
VALIDATE_REPORT = "validate_report"
TRIAGE_CASE = "triage_case"
NOTIFY_VENDOR = "notify_vendor"
NOTIFY_OPERATORS = "notify_operators"
DISTRIBUTE_PATCH = "distribute_patch"
PUBLISH_ADVISORY = "publish_advisory"
FORWARD_VULNERABILITY = "forward_vulnerability"
LOAD_PUBLIC_KEYS = "load_public_keys"
LOAD_POLICY = "load_clearinghouse_policy"
FIND_CASE = "find_case"  # which workflow holds a vulnerability's case (or whether a stranger squats its id)

# A workflow reloads its keyring at most this often: `refresh_keys` is open to anyone, so a flood
# of them is turned away (writing nothing) instead of spending the run's update budget.
REFRESH_INTERVAL = timedelta(seconds=10)
# refresh_keys turned away because a reload happened moments ago: the sender asks again shortly.
REFRESH_TOO_SOON = "RefreshTooSoon"
# A report applied before, sent again: refused (nothing recorded) with the first receipt as detail.
ALREADY_APPLIED = "AlreadyApplied"
# How long the clearinghouse remembers a report it applied, across continue-as-new, so that the
# reporter's retry (the API keeps trying for a minute) gets the first receipt, not a second case.
RETRY_WINDOW = timedelta(minutes=3)

# workflow.patched id (the cases'; the clearinghouse's own were folded): cases load Treasury's public
# keyring and verify every message's signature (cases started before this change load it on demand).
SIGNED_MESSAGES = "clearinghouse-signed-messages"

Text = Annotated[str, Field(min_length=1, max_length=4000)]
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


# ------------------------------------------------------------------ messages in


class VulnerabilityIntake(Message):
    """A report into the clearinghouse: from a review (relayed), a trusted partner, or an operator."""

    report: VulnerabilityReport
    reference: str = Field("", max_length=200, description="where it came from, e.g. the review id")
    found_by: str = Field("", max_length=100, description="who found it, when relayed (e.g. the agency)")


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


# ------------------------------------------------------------------ workflow inputs and activity I/O


class TreasuryPolicy(BaseModel):
    """The clearinghouse policy Treasury's worker runs under (from its own policy file)."""

    version: str
    policy: ClearinghousePolicy


class IntakeReceipt(BaseModel):
    case_id: str
    fingerprint: str
    duplicate: bool
    case_closed: bool = False


class AppliedReport(BaseModel):
    """A report the clearinghouse applied: what a retry of it, or a look-up, gets back."""

    message_id: str
    sender: str
    receipt: IntakeReceipt
    at: datetime


class ReportSubmission(BaseModel):
    """A report as the API hands it in (the `submit_report` signal): the signed intake, and the id
    of this attempt, unpredictable, under which a refusal is kept. A refusal is never filed under
    the message id: anyone can signal, so a forgery under a genuine report's id must not answer
    for the genuine report."""

    intake: VulnerabilityIntake
    attempt: Annotated[str, Field(min_length=16, max_length=64)]


class ReportRefusal(BaseModel):
    """A submission the clearinghouse turned away (nothing counted), kept for its sender to read."""

    attempt: str
    kind: str  # the error type: Rejected, UnknownSigner, ContinuingAsNew (send again), ...
    reason: str
    at: datetime


class ReceiptLookup(BaseModel):
    """`receipts` query: what became of this sender's message, handed in under this attempt?"""

    sender: str
    message_id: str
    attempt: str


class ReportOutcome(BaseModel):
    """Applied (the receipt, the first one if the message was applied before), refused (why), or
    still pending (handed in, not yet taken: ask again)."""

    receipt: IntakeReceipt | None = None
    refusal: ReportRefusal | None = None

    @property
    def pending(self) -> bool:
        return self.receipt is None and self.refusal is None


class ClearinghouseState(BaseModel):
    """The clearinghouse's one state model: the status query's answer and the continue-as-new
    input (the workflow never completes on its own; each run's end is this state handed on).

    Carried from run to run: the policy, the running totals, the reports applied and the refusals
    made within the retry window (what a reporter's retry or look-up gets back), and the
    submissions handed in but not yet taken. The fingerprint index is the server's own (a case's
    id is derived from its fingerprint), so this stays small.

    Anyone can start the workflow with any input: everything but the policy fields is taken only
    from the run this one continues (`carried_from` is that run's id, which nobody can know before
    the server assigns it); a fresh start begins at zero and says so (`start_input_ignored`)."""

    policy_version: str
    policy: ClearinghousePolicy
    runs: int = 1
    reports: int = 0
    cases_opened: int = 0
    duplicates: int = 0
    refused: int = 0  # submissions turned away (forged, unknown signer, bad reporter, ...)
    reports_this_run: int = 0
    # Case ids a stranger's workflow held when a genuine report came (each case opened elsewhere).
    foreign_case_ids: list[str] = Field(default_factory=list)
    # Someone started this chain with totals or applied reports of their own: ignored (the totals
    # count from this chain's start), and shown here.
    start_input_ignored: bool = False
    applied: list[AppliedReport] = Field(default_factory=list)
    refusals: list[ReportRefusal] = Field(default_factory=list)
    pending: list[ReportSubmission] = Field(default_factory=list)
    carried_from: str | None = None


class CaseLookup(BaseModel):
    """`find_case`: the case id derived from a fingerprint is taken by some workflow; which?"""

    fingerprint: str
    case_id: str
    alternate: str  # an unpredictable id to open the case under if a stranger holds `case_id`


class CaseLocation(BaseModel):
    case_id: str
    exists: bool  # a genuine case already runs (or ran) under `case_id`
    foreign: str | None = None  # what holds the derived id, when it is not a genuine case


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


class ForwardRequest(BaseModel):
    review_id: str
    finding: ReviewFinding


# ------------------------------------------------------------------ what watchers see


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


CaseInput.model_rebuild()
