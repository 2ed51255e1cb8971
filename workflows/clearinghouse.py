"""`Clearinghouse`: Treasury's intake, one per namespace (id `clearinghouse`), running for as long
as there are reports.

Each report is deduplicated by its fingerprint: a new vulnerability becomes a `VulnerabilityCase`
child (abandoned on close, so cases outlive the clearinghouse's runs); a duplicate is linked to
its case. The case id is derived from the fingerprint, so the server's own rule (one workflow
per id) is the index and nothing unbounded is carried across continue-as-new.

Every report is signed by its sender (for `clearinghouse` and `report_vulnerability`). Each run
loads the parties' public keys from Treasury's key directory (an activity on Treasury's worker,
recorded in history) before it takes a report; a party enrolled later is known after a
`refresh_keys` update (the API asks for one when a sender is unknown). Nobody who starts the
workflow or sends it a message can add a key.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, FailureError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from domain import search_attributes as sa
    from domain.agencies import LAB, Agency
    from domain.attestation import Unverifiable, UnverifiedResult
    from domain.clearinghouse import (
        CASE_WORKFLOW,
        CLEARINGHOUSE_STATUS_QUERY,
        CLEARINGHOUSE_TASK_QUEUE,
        CLEARINGHOUSE_WORKFLOW,
        CONTINUING_AS_NEW,
        LINK_REPORT,
        LOAD_POLICY,
        POLICY_FROM_TREASURY,
        REFRESH_KEYS,
        REPORT_VULNERABILITY,
        SIGNED_MESSAGES,
        CaseInput,
        ClearinghouseInput,
        ClearinghouseView,
        IntakeReceipt,
        TreasuryPolicy,
        VulnerabilityIntake,
    )
    from domain.signatures import KEYS_LOADING, PublicKeyring
    from domain.vulnerability import PARTY_KINDS, REVIEW_OFFICE, TREASURY, case_id_for, is_party
    from workflows.attested import ResetWatch, attested, model
    from workflows.messages import authenticate, load_public_keys, reject_unless

REPORTERS = {a.value for a in Agency} | {LAB, REVIEW_OFFICE}


@workflow.defn(name=CLEARINGHOUSE_WORKFLOW)
class Clearinghouse:
    @workflow.init
    def __init__(self, state: ClearinghouseInput) -> None:
        self._state = state
        self._policy = state.policy
        self._policy_version = state.policy_version
        self._reports = state.reports
        self._cases_opened = state.cases_opened
        self._duplicates = state.duplicates
        self._this_run = 0
        self._refreshes = 0
        self._known: set[str] = set()  # case ids started or seen in this run
        self._seen: set[str] = set()  # message ids of the reports taken in this run
        # A run started before messages were signed loads its keyring on demand (refresh_keys);
        # until a run has loaded it, reports are turned away to be sent again.
        self._signed = workflow.patched(SIGNED_MESSAGES)
        self._keys: PublicKeyring | None = None if self._signed else {}
        # Activity results are believed only when signed (workflows/attested.py).
        self._watch = ResetWatch()
        self._unverified: list[UnverifiedResult] = []

    @workflow.run
    async def run(self, state: ClearinghouseInput) -> None:
        if workflow.patched(POLICY_FROM_TREASURY):
            # Whoever starts the clearinghouse (anyone with a client can) does not choose its
            # embargo clocks: each run applies Treasury's policy, read on Treasury's worker.
            # Reports are taken only once the keys are loaded, after this.
            # The result counts only with Treasury's signature, verified against this worker's trust
            # anchors (anyone can complete an activity by id); without one the run takes no report.
            try:
                treasury = await attested(
                    LOAD_POLICY,
                    party=TREASURY,
                    activity_id="treasury-policy",
                    parse=model(TreasuryPolicy),
                    watch=self._watch,
                    refused=self._unverified,
                    task_queue=CLEARINGHOUSE_TASK_QUEUE,
                    start_to_close_timeout=timedelta(seconds=30),
                    summary="load Treasury's clearinghouse policy",
                )
            except Unverifiable as e:
                raise ApplicationError(
                    f"Treasury's clearinghouse policy could not be verified: {e}; refused: "
                    + "; ".join(f"{u.activity_id}: {u.reason}" for u in self._unverified),
                    type="Unverifiable",
                    non_retryable=True,
                ) from None
            self._policy, self._policy_version = treasury.policy, treasury.version
        if self._signed:
            self._keys = await load_public_keys()
        self._publish_details()
        # Keep each run's history bounded: after enough reports (or when the server suggests it)
        # take no new report, let those in flight finish, then continue as new. Reports turned
        # away meanwhile are sent again by the reporter and land on the new run.
        await workflow.wait_condition(self._run_is_full)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.logger.info("continuing as new", extra={"reports": self._reports})
        workflow.continue_as_new(
            ClearinghouseInput(
                policy_version=self._policy_version,
                policy=self._policy,
                reports=self._reports,
                cases_opened=self._cases_opened,
                duplicates=self._duplicates,
                runs=state.runs + 1,
            )
        )

    @workflow.update(name=REPORT_VULNERABILITY)
    async def report_vulnerability(self, intake: VulnerabilityIntake) -> IntakeReceipt:
        self._seen.add(intake.message_id)
        self._reports += 1
        self._this_run += 1
        fingerprint = intake.report.fingerprint
        case_id = case_id_for(fingerprint)
        opened = case_id not in self._known and await self._open_case(case_id, fingerprint, intake)
        self._known.add(case_id)
        closed = False
        if not opened:
            self._duplicates += 1
            try:
                await workflow.get_external_workflow_handle(case_id).signal(LINK_REPORT, intake)
            except FailureError:
                # The case has closed: the report is acknowledged as a duplicate of a closed case.
                closed = True
        workflow.logger.info("report", extra={"case_id": case_id, "duplicate": not opened})
        self._publish_details()
        return IntakeReceipt(case_id=case_id, fingerprint=fingerprint, duplicate=not opened, case_closed=closed)

    @report_vulnerability.validator
    def _validate_report(self, intake: VulnerabilityIntake) -> None:
        if self._run_is_full():
            # Not a refusal of the report: nothing is recorded, and the sender tries again.
            raise ApplicationError("the clearinghouse is continuing as new; send again", type=CONTINUING_AS_NEW)
        authenticate(self._keys, workflow.info().workflow_id, REPORT_VULNERABILITY, intake, target="clearinghouse")
        reject_unless(intake.message_id not in self._seen, f"message {intake.message_id} was already applied")
        kind, sep, _ = intake.sender.partition(":")
        reject_unless(
            intake.sender in REPORTERS or (sep == ":" and kind in PARTY_KINDS),
            f"unknown reporter {intake.sender!r} (an agency, lab, vendor:<id>, operator:<sector>, partner:<id>)",
        )

    async def _open_case(self, case_id: str, fingerprint: str, intake: VulnerabilityIntake) -> bool:
        """Start the case; False if it already exists (from an earlier run or report)."""
        r = intake.report
        try:
            await workflow.start_child_workflow(
                CASE_WORKFLOW,
                CaseInput(
                    case_id=case_id,
                    fingerprint=fingerprint,
                    intake=intake,
                    policy_version=self._policy_version,
                    policy=self._policy,
                ),
                id=case_id,
                # Cases outlive this run (continue-as-new closes it).
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                # A closed case is never reopened by a later duplicate. A failed one may be: a case
                # refuses to run on a report it cannot authenticate (e.g. one started by someone else
                # under a case's id), and the genuine report must still get its case.
                id_reuse_policy=(
                    WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY
                    if self._signed
                    else WorkflowIDReusePolicy.REJECT_DUPLICATE
                ),
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(sa.CASE_STATUS, "RECEIVED"),
                        SearchAttributePair(sa.SECTORS, [s.value for s in r.sectors]),
                        SearchAttributePair(sa.POLICY_VERSION, self._policy_version),
                    ]
                ),
                static_summary=f"{r.cwe} in {r.product} ({r.vendor})",
                static_details=(
                    f"product: {r.product} {', '.join(r.affected_versions)}\n\nvendor: {r.vendor}\n\n"
                    f"weakness: {r.cwe} at {r.location}\n\nreported by: {intake.found_by or intake.sender}"
                ),
            )
        except WorkflowAlreadyStartedError:
            return False
        self._cases_opened += 1
        return True

    @workflow.update(name=REFRESH_KEYS)
    async def refresh_keys(self, party: str) -> bool:
        """Reload the public keys from Treasury's key directory; whether `party` is known now."""
        self._refreshes += 1
        self._keys = await load_public_keys()
        return party in self._keys

    @refresh_keys.validator
    def _validate_refresh(self, party: str) -> None:
        if self._run_is_full():
            raise ApplicationError("the clearinghouse is continuing as new; send again", type=CONTINUING_AS_NEW)
        if self._keys is None:
            raise ApplicationError("the clearinghouse is loading its keyring; send again", type=KEYS_LOADING)
        reject_unless(is_party(party), f"unknown party {party!r}")
        reject_unless(party not in self._keys, f"{party} is already in the clearinghouse's keyring")

    def _run_is_full(self) -> bool:
        # Refreshes count too: a run's updates stay well under Temporal's 2000.
        updates = self._this_run + self._refreshes
        return updates >= self._policy.reports_per_run or workflow.info().is_continue_as_new_suggested()

    @workflow.query(name=CLEARINGHOUSE_STATUS_QUERY)
    def status(self) -> ClearinghouseView:
        return ClearinghouseView(
            policy_version=self._policy_version,
            runs=self._state.runs,
            reports=self._reports,
            cases_opened=self._cases_opened,
            duplicates=self._duplicates,
            reports_this_run=self._this_run,
        )

    def _publish_details(self) -> None:
        workflow.set_current_details(
            f"**run {self._state.runs}** (policy {self._policy_version})\n\n"
            f"reports: {self._reports}\n\ncases opened: {self._cases_opened}\n\nduplicates: {self._duplicates}"
        )
