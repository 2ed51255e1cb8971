"""`Clearinghouse`: Treasury's intake, one per namespace (id `clearinghouse`), running for as long
as there are reports.

Each report is deduplicated by its fingerprint: a new vulnerability becomes a `VulnerabilityCase`
child (abandoned on close, so cases outlive the clearinghouse's runs); a duplicate is linked to
its case. The case id is derived from the fingerprint, so the server's own rule (one workflow
per id) is the index. When that id is taken, Treasury's worker looks at what holds it
(`find_case`): a genuine case (started by the clearinghouse on its queue) gets the duplicate; a
stranger's workflow squatting the id is recorded, and the case opens under an unpredictable id
that Treasury's records remember for later duplicates.

Reports come in as `submit_report` signals (what the API sends, signal-with-start) or as the
`report_vulnerability` update (one report, answered at once). Under a burst, updates did not hold:
the server allows 10 in flight per workflow, each one lasted two workflow tasks (its case's start
is a round trip), and the server aborted them by the thousand as the run's workflow tasks kept
being overtaken ("Workflow task not found"); the reporters resent, and the run stalled. Signals
have no cap in flight, and one workflow task takes every report that arrived since the last: the
run takes a batch at a time, each report's case started concurrently. The reporter reads its
receipt with the `receipts` query (api/clearinghouse.py asks once for every report it waits for).

A report is applied once: a retry under the same message id, by the same sender, gets the first
receipt back, in this run or, within the retry window, a later one (the applied reports travel
across continue-as-new, and so do the submissions not yet taken).

Every report is signed by its sender (for `clearinghouse` and `report_vulnerability`). Each run
loads the parties' public keys from Treasury's key directory (an activity on Treasury's worker,
recorded in history) before it takes a report; a party enrolled later is known after a
`refresh_keys` update (the API asks for one when a sender is unknown). Nobody who starts the
workflow or sends it a message can add a key.
"""

from __future__ import annotations

import asyncio
from collections import deque
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
        CLEARINGHOUSE_TASK_TIMEOUT,
        CLEARINGHOUSE_WORKFLOW,
        CONTINUING_AS_NEW,
        FIND_CASE,
        LINK_REPORT,
        LOAD_POLICY,
        RECEIPTS_QUERY,
        REFRESH_INTERVAL,
        REFRESH_KEYS,
        REFRESH_TOO_SOON,
        REPORT_VULNERABILITY,
        RETRY_WINDOW,
        SUBMIT_REPORT,
        AppliedReport,
        CaseLocation,
        CaseLookup,
        ClearinghouseState,
        IntakeReceipt,
        ReceiptLookup,
        ReportOutcome,
        ReportRefusal,
        ReportSubmission,
        TreasuryPolicy,
        VulnerabilityIntake,
    )
    from domain.signatures import KEYS_LOADING, PublicKeyring
    from domain.vulnerability import PARTY_KINDS, REVIEW_OFFICE, TREASURY, case_id_for, is_party
    from workflows.attested import attested, model
    from workflows.messages import UNVERIFIED_KEPT, TreasuryKeyring, authenticate, reject_unless

REPORTERS = {a.value for a in Agency} | {LAB, REVIEW_OFFICE}
# Kept in the status (and carried across runs): the last case ids found squatted.
FOREIGN_KEPT = 50
# At most this many applied reports (and refusals) travel to the next run (newest first), whatever
# the window: with the submissions carried, the continue-as-new input stays far under the server's
# 2 MB payload limit.
APPLIED_KEPT = 2000
REFUSALS_KEPT = 500
# Submissions handed in but not yet taken travel to the next run, up to this many; any beyond are
# refused "send again" (the API resends them, to the next run). Only a flood gets there.
PENDING_KEPT = 200
# Also continue as new past this many events (about 250 reports, 1 MB), whatever the policy: a run
# the worker must rebuild (evicted, or its task timed out) replays its whole history, every report's
# signature checked again; at 3,000 events (3 MB) that took 30-50 s on a starved machine.
EVENTS_PER_RUN = 1_000


@workflow.defn(name=CLEARINGHOUSE_WORKFLOW)
class Clearinghouse:
    @workflow.init
    def __init__(self, state: ClearinghouseState) -> None:
        # Totals, receipts and pending submissions come only from the run this one continues: the id
        # of that run is set by the server, and nobody can name it in an input before the run exists.
        carried = state.carried_from is not None and state.carried_from == workflow.info().continued_run_id
        fresh = ClearinghouseState(policy_version=state.policy_version, policy=state.policy)
        if not carried:
            # Counters in a start input are ignored, and the status says so.
            ignored = state.model_dump(exclude={"carried_from"}) != fresh.model_dump(exclude={"carried_from"})
            state = fresh.model_copy(update={"start_input_ignored": ignored})
        # The one state: its counters are kept here; its lists are indexed below and written back
        # by `state()`, the only author of what the query returns and the next run starts with.
        self._state = state.model_copy(
            update={
                "reports_this_run": 0,
                "applied": [],
                "refusals": [],
                "pending": [],
                "keyring": {},
                "carried_from": None,
            }
        )
        self._applied = {(a.sender, a.message_id): a for a in state.applied}
        self._refusals = {r.attempt: r for r in state.refusals}
        self._queue: deque[ReportSubmission] = deque(state.pending)
        self._taken = 0  # messages this run took (submissions, report and refresh updates)
        self._working = 0  # submissions being applied right now
        self._tasks: set[asyncio.Task[None]] = set()  # their tasks (the loop holds tasks weakly)
        self._in_progress: set[tuple[str, str]] = set()  # (sender, message id) being applied
        self._cases: dict[str, str] = {}  # fingerprint -> case id, for the cases met in this run
        self._opening: set[str] = set()  # fingerprints whose case is being opened right now
        self._last_refresh: datetime | None = None
        # Reports are taken once the run has a keyring: the one the previous run loaded (carried), or
        # else the one this run loads first thing.
        self._keys: PublicKeyring | None = dict(state.keyring) if carried and state.keyring else None
        self._reloading = False
        self._reload_failed: ApplicationError | None = None
        # Activity results are believed only when signed (workflows/attested.py); those that were not
        # are shown in the status, and travel to the next run.
        self._unverified: list[UnverifiedResult] = list(state.unverified_results) if carried else []
        self._keyring = TreasuryKeyring(self._unverified)

    @workflow.run
    async def run(self, state: ClearinghouseState) -> ClearinghouseState:
        if self._state.start_input_ignored:
            workflow.logger.warning("start input's totals ignored: this run was not continued from the clearinghouse")
        if self._keys is None and self._keyring.attested():
            # Intake waits for Treasury's own keyring (reports handed in meanwhile queue up). While
            # none verifies, the run asks again after a pause; it still continues as new when full,
            # with the queue, so that waiting never outgrows a run.
            self._reloading = True
            reload = asyncio.create_task(self._reload())
            reload.add_done_callback(self._reloaded)
            await workflow.wait_condition(
                lambda: self._keys is not None or self._reload_failed is not None or self._run_is_full()
            )
            if self._keys is None and self._reload_failed is None:
                reload.cancel()
        elif self._keys is None:
            await self._reload()
        else:
            # Continued: intake goes on at once with the previous run's keyring and policy (Treasury's,
            # verified there), while this run reads both again. Waiting for them stalled every report
            # for seconds at each continue-as-new: under a burst these activities queue behind the new
            # cases' own on the clearinghouse queue.
            self._reloading = True
            reload = asyncio.create_task(self._reload())
            reload.add_done_callback(self._reloaded)
        self._publish_details()
        # Take the submissions a batch at a time (every one that arrived since the last workflow
        # task), each applied concurrently, until the run is full.
        while True:
            await workflow.wait_condition(
                lambda: bool(self._queue) or self._run_is_full() or self._reload_failed is not None
            )
            if self._reload_failed is not None:
                raise self._reload_failed
            if self._run_is_full():
                break
            while self._queue and not self._run_is_full():
                submission = self._queue.popleft()
                if self._settled(submission):
                    # A resend or a replay of a report applied already, or a refusal: answered at
                    # once, and not counted toward the run's budget (red team F3: a stranger
                    # replaying a captured report forced continue-as-new at will). The history
                    # stays bounded by EVENTS_PER_RUN.
                    continue
                self._taken += 1
                self._working += 1
                # Marked now, not when its task first runs: a copy later in this batch is settled.
                self._in_progress.add((submission.intake.sender, submission.intake.message_id))
                task = asyncio.create_task(self._take(submission))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        # Keep each run's history bounded: take no new report, let those in hand finish, then continue
        # as new with what is still queued. Signals arriving meanwhile join the queue and travel too.
        await workflow.wait_condition(
            lambda: self._working == 0 and not self._reloading and workflow.all_handlers_finished()
        )
        if self._reload_failed is not None:
            raise self._reload_failed
        workflow.logger.info("continuing as new", extra={"reports": self._state.reports})
        workflow.continue_as_new(self.state(carry=True), task_timeout=CLEARINGHOUSE_TASK_TIMEOUT)

    # ----------------------------------------------------------------- reports in

    @workflow.signal(name=SUBMIT_REPORT)
    def submit_report(self, submission: ReportSubmission) -> None:
        # Only queued here: run() takes the queue as a batch once the keyring is loaded.
        self._queue.append(submission)

    def _settled(self, submission: ReportSubmission) -> bool:
        """Whether the submission is answered without applying it: refused (the reason kept under
        its attempt id), or a message applied before (this run or, within the retry window, an
        earlier one) or being applied now, whose look-up finds the first receipt."""
        intake = submission.intake
        try:
            self._check(intake)
        except ApplicationError as e:
            self._refuse(submission.attempt, e.type or "Rejected", e.message)
            return True
        key = (intake.sender, intake.message_id)
        return key in self._applied or key in self._in_progress

    async def _take(self, submission: ReportSubmission) -> None:
        """Apply one submission (checked by `_settled`), or refuse it with the reason kept under its
        attempt id."""
        intake = submission.intake
        key = (intake.sender, intake.message_id)
        try:
            await self._apply(intake)
        except ApplicationError as e:
            self._refuse(submission.attempt, e.type or "Rejected", e.message)
        finally:
            self._in_progress.discard(key)
            self._working -= 1

    def _check(self, intake: VulnerabilityIntake) -> None:
        """Raises unless the sender signed this report for the clearinghouse and may report."""
        authenticate(self._keys, workflow.info().workflow_id, REPORT_VULNERABILITY, intake, target="clearinghouse")
        kind, sep, _ = intake.sender.partition(":")
        reject_unless(
            intake.sender in REPORTERS or (sep == ":" and kind in PARTY_KINDS),
            f"unknown reporter {intake.sender!r} (an agency, lab, vendor:<id>, operator:<sector>, partner:<id>)",
        )

    def _refuse(self, attempt: str, kind: str, reason: str) -> None:
        self._state.refused += 1
        self._refusals[attempt] = ReportRefusal(attempt=attempt, kind=kind, reason=reason, at=workflow.now())
        workflow.logger.info("report refused", extra={"kind": kind})

    @workflow.update(name=REPORT_VULNERABILITY)
    async def report_vulnerability(self, intake: VulnerabilityIntake) -> IntakeReceipt:
        self._taken += 1
        key = (intake.sender, intake.message_id)
        if key in self._in_progress:
            # The same message handed in as a submission too: its receipt is this one's.
            await workflow.wait_condition(lambda: key not in self._in_progress)
            if key in self._applied:
                return self._applied[key].receipt
        self._in_progress.add(key)
        try:
            return await self._apply(intake)
        finally:
            self._in_progress.discard(key)

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
        self._check(intake)

    async def _apply(self, intake: VulnerabilityIntake) -> IntakeReceipt:
        """Open the report's case, or link it to its case as a duplicate; count it; keep its receipt."""
        self._state.reports_this_run += 1
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
        self._state.reports += 1
        if opened:
            self._state.cases_opened += 1
        else:
            self._state.duplicates += 1
        receipt = IntakeReceipt(case_id=case_id, fingerprint=fingerprint, duplicate=not opened, case_closed=closed)
        self._applied[intake.sender, intake.message_id] = AppliedReport(
            message_id=intake.message_id, sender=intake.sender, receipt=receipt, at=workflow.now()
        )
        workflow.logger.info("report", extra={"case_id": case_id, "duplicate": not opened})
        self._publish_details()
        return receipt

    # ----------------------------------------------------------------- cases

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
                refused=self._unverified,
                task_queue=CLEARINGHOUSE_TASK_QUEUE,
                start_to_close_timeout=timedelta(seconds=30),
                summary="which workflow holds this case id",
            )
        except Unverifiable as e:
            # The report is not applied (nothing counted); the reporter is told and may send it again.
            raise ApplicationError(f"the case id {case_id} is taken and {e}", type="Unverifiable") from None
        if where.foreign is not None:
            self._state.foreign_case_ids = [*self._state.foreign_case_ids, case_id][-FOREIGN_KEPT:]
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
            case = await workflow.start_child_workflow(
                CASE_WORKFLOW,
                CaseInput(
                    case_id=case_id,
                    fingerprint=fingerprint,
                    intake=intake,
                    policy_version=self._state.policy_version,
                    policy=self._state.policy,
                ),
                id=case_id,
                # On Treasury's case queue, whatever queue this workflow runs on.
                task_queue=CLEARINGHOUSE_TASK_QUEUE,
                # Cases outlive this run (continue-as-new closes it).
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                # A closed case is never reopened by a later duplicate. A failed one may be: a case
                # refuses to run on a report it cannot authenticate (e.g. one started by someone else
                # under a case's id), and the genuine report must still get its case.
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(sa.CASE_STATUS, "RECEIVED"),
                        SearchAttributePair(sa.SECTORS, [s.value for s in r.sectors]),
                        SearchAttributePair(sa.POLICY_VERSION, self._state.policy_version),
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
        # The case outlives this run and its end is none of the clearinghouse's business; its handle
        # (an asyncio task) must not log "exception was never retrieved" when a case fails or the
        # run is evicted (seen in tests/test_chaos.py under worker kills).
        case.add_done_callback(_ignore_outcome)
        return True

    # ----------------------------------------------------------------- policy and keys

    async def _reload(self) -> None:
        """Treasury's policy and the parties' public keys, both from Treasury's worker, asked at once.
        A run continued with its predecessor's keyring keeps it when no verifiable one comes."""
        keys = self._keyring.load() if self._keys is None else self._keyring.reload(self._keys)
        _, self._keys = await asyncio.gather(self._load_policy(), keys)

    def _reloaded(self, task: asyncio.Task[None]) -> None:
        self._reloading = False
        error = None if task.cancelled() else task.exception()
        if error is not None:
            # An unverifiable policy stops the run, as when it is read first thing.
            self._reload_failed = (
                error if isinstance(error, ApplicationError) else ApplicationError(str(error), non_retryable=True)
            )

    async def _load_policy(self) -> None:
        """Whoever starts the clearinghouse (anyone with a client can) does not choose its embargo
        clocks: each run applies Treasury's policy, read on Treasury's worker. The result counts only
        with Treasury's signature, verified against this worker's trust anchors (anyone can complete
        an activity by id); without one the run takes no report."""
        try:
            treasury = await attested(
                LOAD_POLICY,
                party=TREASURY,
                activity_id="treasury-policy",
                parse=model(TreasuryPolicy),
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
        self._state.policy, self._state.policy_version = treasury.policy, treasury.version

    @workflow.update(name=REFRESH_KEYS)
    async def refresh_keys(self, party: str) -> bool:
        """Reload the public keys from Treasury's key directory; whether `party` is known now."""
        self._taken += 1
        self._last_refresh = workflow.now()
        self._keys = await self._keyring.reload(self._keys or {})
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
        # Every message taken counts: a run's updates stay well under Temporal's 2,000, its signals
        # under 10,000, its children under 2,000 pending.
        info = workflow.info()
        return (
            self._taken >= self._state.policy.reports_per_run
            or info.get_current_history_length() >= EVENTS_PER_RUN
            or info.is_continue_as_new_suggested()
        )

    # ----------------------------------------------------------------- what watchers and reporters see

    def state(self, *, carry: bool = False) -> ClearinghouseState:
        """The whole state: what the status query answers, and (carry) the next run's input, holding
        what a retry or a look-up may still ask for, and the submissions not yet taken."""
        horizon = workflow.now() - RETRY_WINDOW
        applied = sorted((a for a in self._applied.values() if a.at >= horizon), key=lambda a: a.at)
        refusals = sorted((r for r in self._refusals.values() if r.at >= horizon), key=lambda r: r.at)
        pending = list(self._queue)
        if carry:
            # Past what can travel, a submission is refused "send again" (nothing counted); its
            # reporter resends it to the next run. The refusal itself travels.
            for late in pending[PENDING_KEPT:]:
                self._refuse(late.attempt, CONTINUING_AS_NEW, "the clearinghouse is continuing as new; send again")
            pending = pending[:PENDING_KEPT]
            refusals = sorted((r for r in self._refusals.values() if r.at >= horizon), key=lambda r: r.at)
        return self._state.model_copy(
            update={
                "runs": self._state.runs + 1 if carry else self._state.runs,
                "reports_this_run": 0 if carry else self._state.reports_this_run,
                "applied": applied[-APPLIED_KEPT:],
                "refusals": refusals[-REFUSALS_KEPT:],
                "pending": pending,
                "keyring": dict(self._keys or {}) if carry else {},
                "unverified_results": self._unverified[-UNVERIFIED_KEPT:],
                "carried_from": workflow.info().run_id if carry else None,
            }
        )

    @workflow.query(name=CLEARINGHOUSE_STATUS_QUERY)
    def status(self) -> ClearinghouseState:
        return self.state()

    @workflow.query(name=RECEIPTS_QUERY)
    def receipts(self, lookups: list[ReceiptLookup]) -> list[ReportOutcome]:
        """For each submission: its receipt (the first one, if the message was applied before), its
        refusal, or nothing yet. A forged submission under someone's message id is refused under its
        own attempt id, and never answers for the genuine one."""
        outcomes = []
        for lookup in lookups:
            applied = self._applied.get((lookup.sender, lookup.message_id))
            outcomes.append(
                ReportOutcome(
                    receipt=applied.receipt if applied is not None else None,
                    refusal=None if applied is not None else self._refusals.get(lookup.attempt),
                )
            )
        return outcomes

    def _publish_details(self) -> None:
        s = self._state
        squatted = (
            f"\n\ncase ids squatted by foreign workflows: {len(s.foreign_case_ids)}" if s.foreign_case_ids else ""
        )
        ignored = "\n\n(the start input's totals were ignored: not continued from the clearinghouse)"
        workflow.set_current_details(
            f"**run {s.runs}** (policy {s.policy_version})\n\n"
            f"reports: {s.reports}\n\ncases opened: {s.cases_opened}\n\nduplicates: {s.duplicates}"
            f"\n\nrefused: {s.refused}{squatted}{ignored if s.start_input_ignored else ''}"
        )


def _ignore_outcome(task: asyncio.Future[object]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it
