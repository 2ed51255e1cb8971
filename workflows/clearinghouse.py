"""`Clearinghouse`: Treasury's intake, one per namespace (id `clearinghouse`), running for as long
as there are reports.

Each report is deduplicated by its fingerprint: a new vulnerability becomes a `VulnerabilityCase`
child (abandoned on close, so cases outlive the clearinghouse's runs); a duplicate is linked to
its case. The case id is derived from the fingerprint, so the server's own rule (one workflow
per id) is the index. When that id is taken, Treasury's worker looks at what holds it
(`find_case`): a genuine case (started by the clearinghouse on its queue) gets the duplicate; a
stranger's workflow squatting the id is recorded, and the case opens under an unpredictable id
that Treasury's records remember for later duplicates.

A report is applied once: a retry under the same message id, by the same sender, gets the first
receipt back, in this run or, within the retry window, a later one (the applied reports travel
across continue-as-new).

Every report is signed by its sender (for `clearinghouse` and `report_vulnerability`). Each run
loads the parties' public keys from Treasury's key directory (an activity on Treasury's worker,
recorded in history) before it takes a report; a party enrolled later is known after a
`refresh_keys` update (the API asks for one when a sender is unknown). Nobody who starts the
workflow or sends it a message can add a key.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, FailureError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from domain import search_attributes as sa
    from domain.agencies import LAB, Agency
    from domain.attestation import Unverifiable, UnverifiedResult
    from domain.case import CaseInput
    from domain.clearinghouse import (
        ALREADY_APPLIED,
        CASE_WORKFLOW,
        CLEARINGHOUSE_STATUS_QUERY,
        CLEARINGHOUSE_TASK_QUEUE,
        CLEARINGHOUSE_WORKFLOW,
        CONTINUING_AS_NEW,
        FIND_CASE,
        LINK_REPORT,
        LOAD_POLICY,
        POLICY_FROM_TREASURY,
        REFRESH_INTERVAL,
        REFRESH_KEYS,
        REFRESH_TOO_SOON,
        REPORT_VULNERABILITY,
        RETRY_WINDOW,
        SIGNED_MESSAGES,
        AppliedReport,
        CaseLocation,
        CaseLookup,
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
# Kept in the status (and carried across runs): the last case ids found squatted.
FOREIGN_KEPT = 50
# At most this many applied reports travel to the next run (newest first), whatever the window.
APPLIED_KEPT = 2000
# A run also continues as new once its history holds this many events (about 200 reports). Under a
# burst on a loaded machine the worker loses the run from its cache now and then (a workflow task
# overtaken by new events, a slow activation); it then replays the whole history before it can take
# the next update, and a long history fetched in pages failed there ("Fetched empty history page")
# again and again, aborting every update in flight: a stall that did not end. Short runs replay fast.
EVENTS_PER_RUN = 1500


@workflow.defn(name=CLEARINGHOUSE_WORKFLOW)
class Clearinghouse:
    @workflow.init
    def __init__(self, state: ClearinghouseInput) -> None:
        # Totals and applied reports come only from the run this one continues: the id of that run
        # is set by the server, and nobody can name it in an input before the run exists.
        info = workflow.info()
        self._carried = state.carried_from is not None and state.carried_from == info.continued_run_id
        fresh = ClearinghouseInput(policy_version=state.policy_version, policy=state.policy)
        # Counters in a start input are ignored, and the status says so.
        self._ignored_input = not self._carried and state.model_dump(exclude={"carried_from"}) != fresh.model_dump(
            exclude={"carried_from"}
        )
        if not self._carried:
            state = fresh
        self._state = state
        self._policy = state.policy
        self._policy_version = state.policy_version
        self._reports = state.reports
        self._cases_opened = state.cases_opened
        self._duplicates = state.duplicates
        self._foreign = list(state.foreign_case_ids)
        self._applied = {(a.sender, a.message_id): a for a in state.applied}
        self._updates = 0  # updates accepted by this run (reports and refreshes)
        self._this_run = 0
        self._cases: dict[str, str] = {}  # fingerprint -> case id, for the cases met in this run
        self._opening: set[str] = set()  # fingerprints whose case is being opened right now
        self._last_refresh: datetime | None = None
        # A run started before messages were signed loads its keyring on demand (refresh_keys);
        # until a run has loaded it, reports are turned away to be sent again.
        self._signed = workflow.patched(SIGNED_MESSAGES)
        self._keys: PublicKeyring | None = None if self._signed else {}
        # Activity results are believed only when signed (workflows/attested.py).
        self._watch = ResetWatch()
        self._unverified: list[UnverifiedResult] = []

    @workflow.run
    async def run(self, state: ClearinghouseInput) -> None:
        if self._ignored_input:
            workflow.logger.warning("start input's totals ignored: this run was not continued from the clearinghouse")
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
        # Keep each run's history bounded: after enough updates (or when the server suggests it)
        # take no new report, let those in flight finish, then continue as new. Reports turned
        # away meanwhile are sent again by the reporter and land on the new run.
        await workflow.wait_condition(self._run_is_full)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.logger.info("continuing as new", extra={"reports": self._reports})
        horizon = workflow.now() - RETRY_WINDOW
        recent = sorted((a for a in self._applied.values() if a.at >= horizon), key=lambda a: a.at)
        workflow.continue_as_new(
            ClearinghouseInput(
                policy_version=self._policy_version,
                policy=self._policy,
                reports=self._reports,
                cases_opened=self._cases_opened,
                duplicates=self._duplicates,
                runs=self._state.runs + 1,
                foreign_case_ids=self._foreign[-FOREIGN_KEPT:],
                applied=recent[-APPLIED_KEPT:],
                carried_from=workflow.info().run_id,
            )
        )

    @workflow.update(name=REPORT_VULNERABILITY)
    async def report_vulnerability(self, intake: VulnerabilityIntake) -> IntakeReceipt:
        self._updates += 1
        self._this_run += 1
        fingerprint = intake.report.fingerprint
        if fingerprint in self._opening:
            # Another report of the same vulnerability is opening its case: this one is its duplicate.
            await workflow.wait_condition(lambda: fingerprint not in self._opening)
        case_id = self._cases.get(fingerprint)
        opened = False
        if case_id is None:
            self._opening.add(fingerprint)
            try:
                case_id, opened = await self._open_case(fingerprint, intake)
            finally:
                self._opening.discard(fingerprint)
            self._cases[fingerprint] = case_id
        closed = False
        if not opened:
            try:
                await workflow.get_external_workflow_handle(case_id).signal(LINK_REPORT, intake)
            except FailureError:
                # The case has closed: the report is acknowledged as a duplicate of a closed case.
                closed = True
        self._reports += 1
        if opened:
            self._cases_opened += 1
        else:
            self._duplicates += 1
        receipt = IntakeReceipt(case_id=case_id, fingerprint=fingerprint, duplicate=not opened, case_closed=closed)
        self._applied[intake.sender, intake.message_id] = AppliedReport(
            message_id=intake.message_id, sender=intake.sender, receipt=receipt, at=workflow.now()
        )
        workflow.logger.info("report", extra={"case_id": case_id, "duplicate": not opened})
        self._publish_details()
        return receipt

    @report_vulnerability.validator
    def _validate_report(self, intake: VulnerabilityIntake) -> None:
        if self._run_is_full():
            # Not a refusal of the report: nothing is recorded, and the sender tries again.
            raise ApplicationError("the clearinghouse is continuing as new; send again", type=CONTINUING_AS_NEW)
        authenticate(self._keys, workflow.info().workflow_id, REPORT_VULNERABILITY, intake, target="clearinghouse")
        applied = self._applied.get((intake.sender, intake.message_id))
        if applied is not None:
            # The reporter's retry of a report applied before (maybe by an earlier run): turned
            # away, writing nothing, with the first receipt for the reporter to keep.
            raise ApplicationError(
                f"message {intake.message_id} was already applied", applied.receipt, type=ALREADY_APPLIED
            )
        kind, sep, _ = intake.sender.partition(":")
        reject_unless(
            intake.sender in REPORTERS or (sep == ":" and kind in PARTY_KINDS),
            f"unknown reporter {intake.sender!r} (an agency, lab, vendor:<id>, operator:<sector>, partner:<id>)",
        )

    async def _open_case(self, fingerprint: str, intake: VulnerabilityIntake) -> tuple[str, bool]:
        """The vulnerability's case id, and whether this report opened it."""
        case_id = case_id_for(fingerprint)
        if await self._start_case(case_id, fingerprint, intake):
            return case_id, True
        # The derived id is taken: by this vulnerability's case (a duplicate), or by a stranger's
        # workflow squatting it. Treasury's worker looks (the workflow itself cannot describe one).
        # Believed only with Treasury's signature: anyone could complete this activity by id with
        # "a genuine case holds it" and have the report linked to their squatter.
        lookup = CaseLookup(
            fingerprint=fingerprint, case_id=case_id, alternate=f"{case_id}-{workflow.uuid4().hex[:12]}"
        )
        try:
            where = await attested(
                FIND_CASE,
                lookup,
                party=TREASURY,
                activity_id=f"find-{case_id}",
                parse=model(CaseLocation),
                watch=self._watch,
                refused=self._unverified,
                task_queue=CLEARINGHOUSE_TASK_QUEUE,
                start_to_close_timeout=timedelta(seconds=30),
                summary="which workflow holds this case id",
            )
        except Unverifiable as e:
            # The report is not applied (nothing counted); the reporter is told and may send it again.
            raise ApplicationError(f"the case id {case_id} is taken and {e}", type="Unverifiable") from None
        if where.foreign is not None:
            self._foreign.append(case_id)
            self._foreign = self._foreign[-FOREIGN_KEPT:]
            workflow.logger.warning(
                "case id held by a foreign workflow; the case opens under another id",
                extra={"case_id": case_id, "opened_as": where.case_id},
            )
        if where.exists:
            return where.case_id, False
        return where.case_id, await self._start_case(where.case_id, fingerprint, intake)

    async def _start_case(self, case_id: str, fingerprint: str, intake: VulnerabilityIntake) -> bool:
        """Start the case under `case_id`; False if a workflow already holds that id."""
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
        return True

    @workflow.update(name=REFRESH_KEYS)
    async def refresh_keys(self, party: str) -> bool:
        """Reload the public keys from Treasury's key directory; whether `party` is known now."""
        self._updates += 1
        self._last_refresh = workflow.now()
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
        if self._last_refresh is not None and workflow.now() - self._last_refresh < REFRESH_INTERVAL:
            # Anyone may ask, so a flood is turned away here (writing nothing), not in the handler.
            raise ApplicationError("the keyring was reloaded moments ago; ask again shortly", type=REFRESH_TOO_SOON)

    def _run_is_full(self) -> bool:
        # Every accepted update counts: a run's updates stay well under Temporal's 2000.
        info = workflow.info()
        return (
            self._updates >= self._policy.reports_per_run
            or info.get_current_history_length() >= EVENTS_PER_RUN
            or info.is_continue_as_new_suggested()
        )

    @workflow.query(name=CLEARINGHOUSE_STATUS_QUERY)
    def status(self) -> ClearinghouseView:
        return ClearinghouseView(
            policy_version=self._policy_version,
            runs=self._state.runs,
            reports=self._reports,
            cases_opened=self._cases_opened,
            duplicates=self._duplicates,
            reports_this_run=self._this_run,
            foreign_case_ids=self._foreign,
            start_input_ignored=self._ignored_input,
        )

    def _publish_details(self) -> None:
        squatted = f"\n\ncase ids squatted by foreign workflows: {len(self._foreign)}" if self._foreign else ""
        ignored = "\n\n(the start input's totals were ignored: not continued from the clearinghouse)"
        workflow.set_current_details(
            f"**run {self._state.runs}** (policy {self._policy_version})\n\n"
            f"reports: {self._reports}\n\ncases opened: {self._cases_opened}\n\nduplicates: {self._duplicates}"
            f"{squatted}{ignored if self._ignored_input else ''}"
        )
