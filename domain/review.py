"""The input of a `ModelReview` workflow and the names of the activities it calls.

Activities are called by name: the review workflow never imports an agency's code, so an
agency's classified standard lives only in that agency's worker.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from domain.disclosure import Disclosure, TrustedPartner
from domain.policy import Policy
from domain.signatures import PublicKeyring

WORKFLOW_TYPE = "ModelReview"

# Activity names (each runs on the queue of the party that owns it).
CHECK_STANDARD = "check_standard"  # agency-<body>, one per standards body
BRIEF_NSA = "brief_nsa"  # agency-nsa
VET_PARTNER = "vet_partner"  # review
GRANT_ACCESS = "grant_access"  # review
LOAD_REVIEW_KEYS = "load_review_keys"  # review: the review office's public keyring

# Update and query names (the interface contract).
RECORD_DETERMINATION = "record_determination"
SUBMIT_FINDING = "submit_finding"
CONCLUDE_REVIEW = "conclude_review"
WITHDRAW = "withdraw"
STATUS_QUERY = "status"

# A review's refusal of a message id it has applied (its own error type: a sender's retry that
# meets it knows its earlier attempt got through).
ALREADY_APPLIED = "AlreadyApplied"


class EarlierRun(BaseModel):
    """A run of the same review that ended without an outcome (terminated, failed, timed out):
    recorded in the refiled run's input, so the record says why the review started again."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    status: str  # the Temporal status: TERMINATED, FAILED, TIMED_OUT, CANCELED
    stage: str | None = None  # the last ReviewStage it published
    closed_at: datetime | None = None
    reason: str = ""  # a termination's reason (`frontier-review close --reason`), when it had one


class ReviewInput(BaseModel):
    """Everything a review needs, captured at start so that it never changes under it."""

    model_config = ConfigDict(frozen=True)

    review_id: str
    disclosure: Disclosure
    policy: Policy
    # Superseded: a review now loads the parties' public keys from the review office's key
    # directory (an activity, recorded in history), since anyone who can start a workflow
    # could put their own keys here. Read only by reviews started before that change.
    public_keys: PublicKeyring = Field(default_factory=dict)
    # Set when this run refiles a review whose last run ended without an outcome.
    earlier_run: EarlierRun | None = None


class PartnerRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    review_id: str
    partner: TrustedPartner
    # The review's run: the ledger keys grants by it, so a refile never reuses another run's grant.
    run_id: str = ""
