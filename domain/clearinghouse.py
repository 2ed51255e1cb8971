"""Treasury's clearinghouse: names, the report it takes, and its own models (a case's are in
domain/case.py).

Clearinghouse (one per namespace, id `clearinghouse`) --report--> VulnerabilityCase (one per vulnerability)

RECEIVED -> VALIDATED | INVALID -> TRIAGED -> VENDOR_NOTIFIED -> FIX_READY -> PATCH_DISTRIBUTED
         -> DISCLOSED -> CLOSED
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, Field

from domain.attestation import UnverifiedResult
from domain.messages import Message, ReviewFinding
from domain.policy import ClearinghousePolicy
from domain.vulnerability import VulnerabilityReport

CLEARINGHOUSE_TASK_QUEUE = "clearinghouse"  # run by Treasury's worker: cases, and every clearinghouse activity
# The clearinghouse workflow's own queue (Treasury's worker too, with slots of its own): its workflow
# tasks and the reporters' receipt queries never wait behind the thousands of cases a burst starts.
CLEARINGHOUSE_INTAKE_QUEUE = "clearinghouse-intake"
# The clearinghouse's workflow task timeout (Temporal's default is 10 s). A run the worker must rebuild
# replays its whole history, every report's signature checked again; on a starved machine that took
# 30-50 s, so with 10 s the task timed out, was rebuilt again, and intake stopped for good. With
# this, a slow rebuild finishes (a stall, not a halt); runs are also kept short (EVENTS_PER_RUN).
CLEARINGHOUSE_TASK_TIMEOUT = timedelta(seconds=60)
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
# The `workflow.patched` id since which Treasury signs that keyring and the workflows verify it (runs
# recorded before it loaded a plain one).
ATTESTED_KEYRING = "attested-treasury-keyring"
# The case's Treasury desk (keyring, validation, triage) as local activities of the worker that runs
# the case (was: activity tasks); histories recorded before it replay the old way.
CASE_LOCAL_ACTIVITIES = "case-local-activities"
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


Text = Annotated[str, Field(min_length=1, max_length=4000)]


# ------------------------------------------------------------------ messages in


class VulnerabilityIntake(Message):
    """A report into the clearinghouse: from a review (relayed), a trusted partner, or an operator."""

    report: VulnerabilityReport
    reference: str = Field("", max_length=200, description="where it came from, e.g. the review id")
    found_by: str = Field("", max_length=100, description="who found it, when relayed (e.g. the agency)")


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
    # The parties' public keys the run loaded from Treasury's key directory, handed to the next run
    # (taken only with the rest of the carried state) so that it takes reports at once.
    keyring: dict[str, str] = Field(default_factory=dict)
    # Activity results this chain did not believe (a keyring, policy or case look-up not signed by
    # Treasury: completed by id, or a rogue poller's): the last few, with who was expected and why.
    unverified_results: list[UnverifiedResult] = Field(default_factory=list)
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


class ForwardRequest(BaseModel):
    review_id: str
    finding: ReviewFinding
