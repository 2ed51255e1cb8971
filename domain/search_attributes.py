"""Search attributes: unclassified fields only (they are stored in plaintext)."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

REVIEW_STAGE = SearchAttributeKey.for_keyword("ReviewStage")
LAB = SearchAttributeKey.for_keyword("Lab")
MODEL_NAME = SearchAttributeKey.for_keyword("ModelName")
COVERED = SearchAttributeKey.for_bool("Covered")
WINDOW_DEADLINE = SearchAttributeKey.for_datetime("WindowDeadline")
POLICY_VERSION = SearchAttributeKey.for_keyword("PolicyVersion")

# For the transparency report: how each review ended and how long its clocks ran, in whole
# seconds from the workflow's start (StartTime): to the NSA's determination, and to the
# release (the moment the review lifted its hold and entered RELEASING). Ints, not Datetimes:
# the dev server's SQLite visibility allows only 3 Datetime attributes per namespace.
OUTCOME = SearchAttributeKey.for_keyword("Outcome")
SECONDS_TO_DETERMINATION = SearchAttributeKey.for_int("SecondsToDetermination")
SECONDS_TO_RELEASE = SearchAttributeKey.for_int("SecondsToRelease")
# Whether the review office admitted the review (the lab's signature on its disclosure verified, its
# policy loaded by the office). Anyone starting a workflow may preset both: `GenuineSeal` is the review
# office's signature over (review id, run id) (domain/attestation.py), which readers verify.
GENUINE = SearchAttributeKey.for_bool("Genuine")
GENUINE_SEAL = SearchAttributeKey.for_keyword("GenuineSeal")
# What a namespace user did that the review could not prevent, flagged by the review itself:
# its history was reset (`temporal workflow reset`), a cancellation was requested (and ignored).
INTEGRITY = SearchAttributeKey.for_keyword_list("Integrity")
INTEGRITY_RESET = "reset"
INTEGRITY_CANCEL_REQUESTED = "cancel-requested"

# Who made the determination: the NSA, or the policy's default on the NSA's silence (a watcher
# must never read a default as an NSA decision). Values: DETERMINED_BY_NSA, DETERMINED_BY_DEFAULT.
DETERMINED_BY = SearchAttributeKey.for_keyword("DeterminedBy")
DETERMINED_BY_NSA = "nsa"
DETERMINED_BY_DEFAULT = "policy-default"
# The agencies the review waits for now, space-separated ("dod dhs"): `PendingAgencies = "dod"`
# matches a review waiting for DoD. Text, not KeywordList: the dev server's SQLite visibility allows
# 3 KeywordList attributes per namespace (measured: a 4th refuses to start), and Sectors and the
# other reviews' lists hold them; Text matches word by word, and agency ids are single words.
PENDING_AGENCIES = SearchAttributeKey.for_text("PendingAgencies")

REVIEW_SEARCH_ATTRIBUTES = (
    REVIEW_STAGE,
    LAB,
    MODEL_NAME,
    COVERED,
    WINDOW_DEADLINE,
    POLICY_VERSION,
    OUTCOME,
    SECONDS_TO_DETERMINATION,
    SECONDS_TO_RELEASE,
    DETERMINED_BY,
    PENDING_AGENCIES,
    GENUINE,
    GENUINE_SEAL,
    INTEGRITY,
)

# Vulnerability cases (the clearinghouse). No product, location or vector: only what a list needs.
CASE_STATUS = SearchAttributeKey.for_keyword("CaseStatus")
SEVERITY = SearchAttributeKey.for_keyword("Severity")
SECTORS = SearchAttributeKey.for_keyword_list("Sectors")
CASE_PRIORITY = SearchAttributeKey.for_int("CasePriority")
EMBARGO_DEADLINE = SearchAttributeKey.for_datetime("EmbargoDeadline")

CASE_SEARCH_ATTRIBUTES = (CASE_STATUS, SEVERITY, SECTORS, CASE_PRIORITY, EMBARGO_DEADLINE)

# Every attribute any workflow of ours upserts; registered by `up`, `demo` and the tests.
ALL_SEARCH_ATTRIBUTES = REVIEW_SEARCH_ATTRIBUTES + CASE_SEARCH_ATTRIBUTES
