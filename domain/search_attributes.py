"""Search attributes: unclassified fields only (they are stored in plaintext)."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

REVIEW_STAGE = SearchAttributeKey.for_keyword("ReviewStage")
LAB = SearchAttributeKey.for_keyword("Lab")
MODEL_NAME = SearchAttributeKey.for_keyword("ModelName")
COVERED = SearchAttributeKey.for_bool("Covered")
WINDOW_DEADLINE = SearchAttributeKey.for_datetime("WindowDeadline")
POLICY_VERSION = SearchAttributeKey.for_keyword("PolicyVersion")

REVIEW_SEARCH_ATTRIBUTES = (REVIEW_STAGE, LAB, MODEL_NAME, COVERED, WINDOW_DEADLINE, POLICY_VERSION)

# Vulnerability cases (the clearinghouse). No product, location or vector: only what a list needs.
CASE_STATUS = SearchAttributeKey.for_keyword("CaseStatus")
SEVERITY = SearchAttributeKey.for_keyword("Severity")
SECTORS = SearchAttributeKey.for_keyword_list("Sectors")
CASE_PRIORITY = SearchAttributeKey.for_int("CasePriority")
EMBARGO_DEADLINE = SearchAttributeKey.for_datetime("EmbargoDeadline")

CASE_SEARCH_ATTRIBUTES = (CASE_STATUS, SEVERITY, SECTORS, CASE_PRIORITY, EMBARGO_DEADLINE)

# Every attribute any workflow of ours upserts; registered by `up`, `demo` and the tests.
ALL_SEARCH_ATTRIBUTES = REVIEW_SEARCH_ATTRIBUTES + CASE_SEARCH_ATTRIBUTES
