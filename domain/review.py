"""The input of a `ModelReview` workflow and the names of the activities it calls.

Activities are called by name: the review workflow never imports an agency's code, so an
agency's classified standard lives only in that agency's worker.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from domain.disclosure import Disclosure, TrustedPartner
from domain.messages import Message
from domain.policy import Policy

WORKFLOW_TYPE = "ModelReview"

# Activity names (each runs on the queue of the party that owns it).
CHECK_STANDARD = "check_standard"  # agency-<body>, one per standards body
BRIEF_NSA = "brief_nsa"  # agency-nsa
VET_PARTNER = "vet_partner"  # review
GRANT_ACCESS = "grant_access"  # review
LOAD_REVIEW_KEYS = "load_review_keys"  # review: the review office's public keyring
ADMIT_DISCLOSURE = "admit_disclosure"  # review: the office checks the lab's filing, loads the policy
LEDGER_GRANTS = "ledger_grants"  # review: every grant the ledger holds for a review, whatever its run

# What a lab signs its filing as (the "update name" of domain/signatures.py's canonical bytes).
DISCLOSE = "disclose"
# A filing is admitted only if the review office first sees it (the activity's scheduled time) at
# most this long after the lab signed it: a captured filing cannot be started again later.
FILING_FRESHNESS = timedelta(minutes=10)

# Update and query names (the interface contract).
RECORD_DETERMINATION = "record_determination"
SUBMIT_FINDING = "submit_finding"
CONCLUDE_REVIEW = "conclude_review"
WITHDRAW = "withdraw"
STATUS_QUERY = "status"

# A review's refusal of a message id it has applied (its own error type: a sender's retry that
# meets it knows its earlier attempt got through).
ALREADY_APPLIED = "AlreadyApplied"
# A review's refusal of a message whose signature does not verify against the key it holds for the
# sender; the error's detail is that key: a sender whose key is another has had it replaced since
# the review loaded its keyring, and has the review reload it (`refresh_keys`) before sending again.
KEY_MISMATCH = "KeyMismatch"
# `refresh_keys` (the name the clearinghouse and cases use too): anyone may ask, at most once per
# domain.clearinghouse.REFRESH_INTERVAL; a reload that changed nothing doubles that wait, up to this.
MAX_REFRESH_INTERVAL = timedelta(hours=2)


class Filing(Message):
    """The lab's disclosure, signed by the lab (`lab:<id>`), naming the policy it is filed under.
    The review office admits a review only on a filing that verifies (ADMIT_DISCLOSURE)."""

    disclosure_sha256: str = Field(min_length=64, max_length=64)  # disclosure_digest(the disclosure)
    policy_name: str = Field(min_length=1, max_length=100)
    policy_version: str = Field(min_length=1, max_length=100)
    signed_at: datetime


class EarlierRun(BaseModel):
    """A run of the same review that ended without an outcome (terminated, failed, timed out):
    recorded in the refiled run's input, so the record says why the review started again."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    status: str  # the Temporal status: TERMINATED, FAILED, TIMED_OUT, CANCELED
    stage: str | None = None  # the last ReviewStage it published
    closed_at: datetime | None = None
    reason: str = ""  # a termination's reason (`frontier-review close --reason`), when it had one


def disclosure_digest(disclosure: Disclosure) -> str:
    """What the lab signs for its disclosure (not the disclosure again: the input stays small)."""
    canonical = json.dumps(disclosure.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class ReviewInput(BaseModel):
    """Everything a review needs, captured at start so that it never changes under it. Anyone can
    start a workflow with any input: nothing here decides anything until the review office has
    admitted the filing (the lab's signature) and loaded the policy by name and version itself."""

    model_config = ConfigDict(frozen=True)

    review_id: str
    disclosure: Disclosure
    filing: Filing | None = None
    # Not used: the review runs under the policy the review office loads (`filing.policy_name`).
    policy: Policy | None = None
    # Set when this run refiles a review whose last run ended without an outcome.
    earlier_run: EarlierRun | None = None


class AdmissionRequest(BaseModel):
    review_id: str
    disclosure: Disclosure
    filing: Filing | None = None


class Admission(BaseModel):
    """The review office's answer (signed, like all its results): admitted or why not."""

    admitted: bool
    reason: str
    lab_party: str | None = None
    policy: Policy | None = None
    seal: str | None = None  # the office's seal on this run (search attribute GenuineSeal)


class LedgerGrant(BaseModel):
    """A grant as the review office's ledger holds it: outside the workflow, so a reset (which erases
    the events after its point) cannot erase it."""

    partner_id: str
    grant_id: str
    granted_at: datetime
    run_id: str = ""


class PartnerRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    review_id: str
    partner: TrustedPartner
    # The review's run: the ledger keys grants by it, so a refile never reuses another run's grant.
    run_id: str = ""
