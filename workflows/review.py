"""`ModelReview`: one frontier model's pre-release review, read top to bottom as the brief's
lifecycle. Its event history is the audit trail.

    DISCLOSED -> STANDARDS_CHECK -> AWAITING_DETERMINATION -> UNDER_REVIEW -> RELEASING -> RELEASED
                                            |  not covered ------------------^
    any stage before RELEASED --(lab withdraws)--> WITHDRAWN

Nothing here can hold a release past its window: every wait has a deadline from the
policy, and silence (an agency's, the NSA's) has a defined outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from domain import metrics
    from domain import search_attributes as sa
    from domain.agencies import STANDARDS_BODIES, Agency
    from domain.attestation import Unverifiable, UnverifiedResult
    from domain.clearinghouse import CLEARINGHOUSE_TASK_QUEUE, FORWARD_VULNERABILITY, ForwardRequest, IntakeReceipt
    from domain.messages import (
        AccessGrant,
        Briefing,
        BriefingReceipt,
        Conclusion,
        Determination,
        FindingKind,
        Message,
        ReviewFinding,
        StandardsVerdict,
        Verdict,
        VettingResult,
        Withdrawal,
    )
    from domain.policy import describe
    from domain.review import (
        ADMIT_DISCLOSURE,
        ALREADY_APPLIED,
        BRIEF_NSA,
        CHECK_STANDARD,
        CONCLUDE_REVIEW,
        GRANT_ACCESS,
        LOAD_REVIEW_KEYS,
        RECORD_DETERMINATION,
        STATUS_QUERY,
        SUBMIT_FINDING,
        VET_PARTNER,
        WITHDRAW,
        WORKFLOW_TYPE,
        Admission,
        AdmissionRequest,
        PartnerRequest,
        ReviewInput,
    )
    from domain.signatures import PublicKeyring
    from domain.status import Outcome, PartnerRelease, ReviewStatus, Stage, Transition
    from domain.vulnerability import REVIEW_OFFICE, TREASURY, lab_party
    from workflows.attested import ResetWatch, attested, model
    from workflows.messages import authenticate, reject_unless

T = TypeVar("T")

AGENCY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=10))
# Vulnerability findings go to Treasury's clearinghouse (added after the first release of this workflow).
FORWARD_TO_CLEARINGHOUSE = "forward-vulnerabilities-to-clearinghouse"
# Public keys from the review office, not from the start input (anyone can start a workflow).
KEYS_FROM_REVIEW_OFFICE = "review-keys-from-review-office"


def _keyring(result: object) -> PublicKeyring:
    if not isinstance(result, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in result.items()):
        raise Unverifiable("the review office's keyring is not {party: key}")
    return dict(result)


class _Withdrawn(Exception):
    """Internal: the lab withdrew; unwinds whatever stage was running."""


def _seconds_since_start() -> int:
    return int((workflow.now() - workflow.info().workflow_start_time).total_seconds())


def _count(counter: metrics.Counter, **labels: str) -> None:
    """Add one to our counter; the workflow's metric meter skips replays."""
    workflow.metric_meter().create_counter(counter.name, counter.description).add(1, labels)


@workflow.defn(name=WORKFLOW_TYPE)
class ModelReview:
    @workflow.init
    def __init__(self, review: ReviewInput) -> None:
        # Handlers may run before run(): all state is set up here.
        self._review = review
        self._policy = review.policy
        self._stage = Stage.DISCLOSED
        self._outcome: Outcome | None = None
        self._transitions: list[Transition] = []
        self._verdicts: list[StandardsVerdict] = []
        self._determination: Determination | None = None
        self._determination_by_default = False
        self._determination_deadline = None
        # Whether the NSA's worker confirmed the briefing: a default applied on a briefing that
        # never arrived is not the NSA's silence, and the record says which.
        self._nsa_briefed: bool | None = None
        self._window_deadline = None
        self._participants: list[Agency] = []
        self._concluded: list[Agency] = []
        self._findings: list[ReviewFinding] = []
        self._applied_messages: set[str] = set()
        self._withdrawal: Withdrawal | None = None
        self._released: list[PartnerRelease] = []
        # Set just before the first access grant is scheduled: from then on the model is reaching
        # partners, and the lab can no longer withdraw (README, "Withdrawal and release").
        self._granting = False
        self._disclosed_at = workflow.now()
        self._forwards: list[asyncio.Task[None]] = []
        # The keys messages are verified with: loaded from the review office at the start of run()
        # (until then, messages are turned away to be sent again). Reviews started before that
        # change used the keys in their input.
        self._keys_from_office = workflow.patched(KEYS_FROM_REVIEW_OFFICE)
        self._keys: PublicKeyring | None = None if self._keys_from_office else review.public_keys
        self._cases: dict[str, str] = {}
        # Activity results are believed only when signed by the party that produces them
        # (workflows/attested.py); the others are kept here, for the status and the audit.
        self._watch = ResetWatch()
        self._unverified: list[UnverifiedResult] = []
        # The review office's admission (None until it answers); the lab's one signing party.
        self._admission: Admission | None = None
        # What a namespace user did that the review cannot prevent, flagged (search attribute
        # Integrity, status, Web UI): cancel requests (ignored), a reset of its history.
        self._cancel_requests: list[datetime] = []
        self._integrity: list[str] = []
        self._lab = lab_party(review.disclosure.lab)
        # Vulnerability findings not yet delivered to the clearinghouse (finding id -> why), and
        # those it refused outright.
        self._forwards_pending: dict[str, str] = {}
        self._forwards_refused: dict[str, str] = {}
        # Search attributes that go out with the next stage change (same workflow task): one
        # upsert per transition, each a command, an event and a visibility write on the server.
        self._with_next_stage: list[SearchAttributeUpdate] = []

    # ----------------------------------------------------------------- the story

    @workflow.run
    async def run(self, review: ReviewInput) -> ReviewStatus:
        """The story, shielded from cancellation: only the lab ends a review early (it withdraws). A
        cancel request (anyone with namespace access may send one) is recorded and ignored."""
        story = asyncio.ensure_future(self._story(review))
        while True:
            try:
                return await asyncio.shield(story)
            except asyncio.CancelledError:
                if story.done():
                    raise
                self._cancel_requests.append(workflow.now())
                self._flag(sa.INTEGRITY_CANCEL_REQUESTED)
                self._log("cancel request ignored: only the lab withdraws a review", level=logging.WARNING)
                self._publish_details()

    async def _story(self, review: ReviewInput) -> ReviewStatus:
        if self._keys_from_office:
            self._keys = await self._from_review_office(
                LOAD_REVIEW_KEYS, "review-keys", _keyring, "load the parties' public keys (review office)"
            )
        # Anyone can start a ModelReview with any input: nothing runs until the review office has
        # checked the lab's signature on the filing and loaded the policy it names, itself.
        admission: Admission = await self._from_review_office(
            ADMIT_DISCLOSURE,
            "admission",
            model(Admission),
            "admit the disclosure (the lab's signature, the office's policy)",
            AdmissionRequest(review_id=review.review_id, disclosure=review.disclosure, filing=review.filing),
        )
        self._admission = admission
        if not admission.admitted or admission.policy is None:
            # Not a genuine review: it does nothing, and says so (status, search attribute, Web UI).
            workflow.upsert_search_attributes([sa.GENUINE.value_set(False)])
            self._log("not admitted: not a genuine review", level=logging.WARNING)
            self._publish_details()
            await workflow.wait_condition(workflow.all_handlers_finished)
            return self.status()
        self._policy = admission.policy
        refiled = ""
        if review.earlier_run is not None:  # the run before ended without an outcome; the record says so
            earlier = review.earlier_run
            why = f": {earlier.reason}" if earlier.reason else ""
            refiled = f"; refiled after run {earlier.run_id} ended {earlier.status} at {earlier.stage}{why}"
        self._enter(Stage.DISCLOSED, self._lab, f"disclosed under policy {self._policy.version}{refiled}")
        # Written with the next stage's upsert (one visibility write per stage change; the start
        # request set DISCLOSED, so entering it writes nothing).
        self._with_next_stage += [
            sa.GENUINE.value_set(True),
            sa.GENUINE_SEAL.value_set(admission.seal or ""),
            sa.POLICY_VERSION.value_set(self._policy.version),
        ]
        _count(metrics.REVIEWS_STARTED, policy_version=self._policy.version)
        try:
            await self._standards_check()
            covered = await self._nsa_determination()
            if covered:
                self._outcome = await self._review_window()
            else:
                self._outcome = Outcome.NOT_COVERED
            await self._release()
        except _Withdrawn:
            assert self._withdrawal is not None
            self._outcome = Outcome.WITHDRAWN
            self._enter(Stage.WITHDRAWN, self._lab, self._withdrawal.reason)
        # Findings still on their way to the clearinghouse get there, however long Treasury is
        # away: the release has already happened, and the review stays open until they are delivered.
        await asyncio.gather(*self._forwards)
        # Let an update that is mid-flight finish before the history closes.
        await workflow.wait_condition(workflow.all_handlers_finished)
        _count(metrics.REVIEWS_CLOSED, outcome=self._outcome.value)
        return self.status()

    async def _standards_check(self) -> None:
        self._enter(Stage.STANDARDS_CHECK, "review", "five standards bodies judge the disclosure")
        checks = [self._check_standard(body) for body in STANDARDS_BODIES]
        await self._unless_withdrawn(asyncio.gather(*checks))

    async def _from_review_office(self, activity: str, activity_id: str, parse, summary: str, *args):
        """What the review office's worker answers, signed with its key; without that the review
        cannot run: it fails, naming why (it never goes on with what someone else supplied)."""
        try:
            return await attested(
                activity,
                *args,
                party=REVIEW_OFFICE,
                activity_id=activity_id,
                parse=parse,
                watch=self._watch,
                refused=self._unverified,
                start_to_close_timeout=timedelta(seconds=30),
                summary=summary,
            )
        except Unverifiable as e:
            raise ApplicationError(
                f"{e}: " + "; ".join(f"{u.activity_id}: {u.reason}" for u in self._unverified),
                type="Unverifiable",
                non_retryable=True,
            ) from None

    async def _check_standard(self, body: Agency) -> None:
        """One body's classified standard, judged on that body's own worker and queue, signed with
        that body's key: an answer nobody can verify is that body's silence."""
        try:
            verdict = await attested(
                CHECK_STANDARD,
                self._review.disclosure,
                party=body.value,
                activity_id=f"standards-{body.value}",
                parse=model(StandardsVerdict),
                watch=self._watch,
                refused=self._unverified,
                deadline=self._policy.standards_check_timeout,
                task_queue=body.task_queue,
                start_to_close_timeout=self._policy.standards_check_attempt_timeout,
                retry_policy=AGENCY_RETRY,
                summary=f"{body.title} standards check",
            )
            if verdict.agency != body:
                raise Unverifiable(f"{body.value} signed a verdict for {verdict.agency.value}")
        except Unverifiable as err:
            why = f"no verifiable answer: {err}"
            verdict = StandardsVerdict(agency=body, verdict=Verdict.NO_RESPONSE, rationale=why)
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                return  # the lab withdrew while the check was in flight: no verdict, not a failure
            # Silence (or an agency-side failure) is never a block: it is recorded as such
            # and the review moves on.
            if isinstance(err.cause, ActivityTimeout):
                why = f"no answer within {describe(self._policy.standards_check_timeout)}"
            else:
                why = f"the agency's check failed: {err.cause.message if err.cause else err}"
            verdict = StandardsVerdict(agency=body, verdict=Verdict.NO_RESPONSE, rationale=why)
        self._verdicts.append(verdict)
        # The verdict itself stays in the (encrypted) history: logs are plaintext.
        self._log("standards check answered", agency=body.value)
        self._publish_details()

    async def _nsa_determination(self) -> bool:
        deadline = workflow.now() + self._policy.determination_deadline
        self._determination_deadline = deadline
        self._nsa_briefed = False
        self._enter(Stage.AWAITING_DETERMINATION, "review", "the NSA is briefed and decides")
        # The receipt counts only with the NSA's signature (a forged one is recorded as unverified).
        briefing = asyncio.ensure_future(
            attested(
                BRIEF_NSA,
                Briefing(review_id=self._review.review_id, verdicts=self._verdicts, determination_deadline=deadline),
                party=Agency.NSA.value,
                activity_id="nsa-briefing",
                parse=model(BriefingReceipt),
                watch=self._watch,
                refused=self._unverified,
                deadline=self._policy.determination_deadline,
                task_queue=Agency.NSA.task_queue,
                start_to_close_timeout=self._policy.standards_check_attempt_timeout,
                retry_policy=AGENCY_RETRY,
                summary="NSA briefing",
            )
        )
        briefing.add_done_callback(self._briefing_done)
        try:
            await workflow.wait_condition(
                lambda: self._determination is not None or self._withdrawal is not None,
                timeout=self._policy.determination_deadline,
                timeout_summary="NSA determination deadline",
            )
        except TimeoutError:
            pass
        # Once the NSA has decided (or the deadline passed), a briefing still in flight is moot.
        superseded = not briefing.done()
        if superseded:
            briefing.cancel()
        try:
            await briefing
        except (ActivityError, asyncio.CancelledError, Unverifiable):
            if superseded:
                self._log("NSA briefing superseded by the determination or the deadline", agency="nsa")
            else:
                self._log(
                    "NSA briefing was never confirmed; the deadline applied regardless",
                    level=logging.WARNING,
                    agency="nsa",
                )
        if self._withdrawal is not None:
            raise _Withdrawn()
        if self._determination is None and self._watch.resets:
            # The history was reset (`temporal workflow reset`) to before the determination: the
            # NSA's answer may have been erased with the events after that point. No default
            # applies to a reset review: it is flagged and waits for the NSA to determine again.
            self._flag(sa.INTEGRITY_RESET)
            self._log("history reset before the determination: no default applies", level=logging.WARNING)
            self._publish_details()
            await workflow.wait_condition(lambda: self._determination is not None or self._withdrawal is not None)
            if self._withdrawal is not None:
                raise _Withdrawn()
        if self._determination is None:
            # The NSA was silent past its deadline: the policy's default applies.
            covered = self._policy.on_nsa_silence == "covered"
            self._determination_by_default = True
            self._determination = Determination(
                sender="policy",
                message_id="policy-default",
                covered=covered,
                agencies=list(self._policy.default_participants) if covered else [],
                rationale=(
                    "no determination by the deadline; "
                    + ("the NSA was silent" if self._nsa_briefed else "the briefing never reached the NSA")
                    + f"; policy {self._policy.version} default applies"
                ),
            )
        covered = self._determination.covered
        # Written with the next stage (UNDER_REVIEW or RELEASING), which follows at once.
        self._with_next_stage += [
            sa.COVERED.value_set(covered),
            sa.DETERMINED_BY.value_set(
                sa.DETERMINED_BY_DEFAULT if self._determination_by_default else sa.DETERMINED_BY_NSA
            ),
            sa.SECONDS_TO_DETERMINATION.value_set(_seconds_since_start()),
        ]
        _count(
            metrics.DETERMINATIONS, covered=str(covered).lower(), by_default=str(self._determination_by_default).lower()
        )
        return covered

    def _briefing_done(self, briefing: asyncio.Future[BriefingReceipt]) -> None:
        self._nsa_briefed = not briefing.cancelled() and briefing.exception() is None

    async def _review_window(self) -> Outcome:
        assert self._determination is not None
        self._participants = list(dict.fromkeys(self._determination.agencies))
        self._window_deadline = workflow.now() + self._policy.review_window
        self._with_next_stage.append(sa.WINDOW_DEADLINE.value_set(self._window_deadline))
        self._enter(
            Stage.UNDER_REVIEW,
            self._determination.sender,
            f"covered; review window of {describe(self._policy.review_window)} with {', '.join(self._participants)}",
        )
        try:
            await workflow.wait_condition(
                lambda: self._withdrawal is not None or not self._pending_reviewers(),
                timeout=self._policy.review_window,
                timeout_summary=f"review window ({describe(self._policy.review_window)})",
            )
        except TimeoutError:
            _count(metrics.WINDOWS_ELAPSED, policy_version=self._policy.version)
            return Outcome.WINDOW_ELAPSED
        if self._withdrawal is not None:
            raise _Withdrawn()
        _count(metrics.WINDOWS_CLOSED_EARLY, policy_version=self._policy.version)
        return Outcome.CONCLUDED_EARLY

    async def _release(self) -> None:
        assert self._outcome is not None
        self._enter(Stage.RELEASING, "review", f"{self._outcome.value}: release to trusted partners")
        for partner in self._review.disclosure.partners:
            # Keyed by run in the ledger: a refiled review never finds an earlier run's grants.
            request = PartnerRequest(review_id=self._review.review_id, partner=partner, run_id=workflow.info().run_id)
            try:
                vetting = await self._unless_withdrawn(
                    attested(
                        VET_PARTNER,
                        request,
                        party=REVIEW_OFFICE,
                        activity_id=f"vet-{partner.partner_id}",
                        parse=model(VettingResult),
                        watch=self._watch,
                        refused=self._unverified,
                        start_to_close_timeout=self._policy.release_activity_timeout,
                        summary=f"vet {partner.name}",
                    )
                )
            except Unverifiable:
                # Nobody may approve a partner but the review office: no verified vetting, no grant.
                vetting = VettingResult(
                    partner_id=partner.partner_id, approved=False, reason="no verifiable vetting by the review office"
                )
            if not vetting.approved:
                self._released.append(
                    PartnerRelease(partner_id=partner.partner_id, granted=False, reason=vetting.reason)
                )
                continue
            # A withdrawal that arrived while this partner was vetted was caught above; from here on
            # the withdraw validator refuses, so a review never ends WITHDRAWN with grants.
            self._granting = True
            try:
                # The grant is idempotent (review, run, partner): asking again returns the same grant.
                grant = await attested(
                    GRANT_ACCESS,
                    request,
                    party=REVIEW_OFFICE,
                    activity_id=f"grant-{partner.partner_id}",
                    parse=model(AccessGrant),
                    watch=self._watch,
                    refused=self._unverified,
                    start_to_close_timeout=self._policy.release_activity_timeout,
                    summary=f"grant access to {partner.name}",
                )
                release = PartnerRelease(
                    partner_id=partner.partner_id, granted=True, reason=vetting.reason, grant_id=grant.grant_id
                )
            except Unverifiable:
                release = PartnerRelease(
                    partner_id=partner.partner_id, granted=False, reason="no verifiable grant from the review office"
                )
            self._released.append(release)
            self._publish_details()
        granted = sum(1 for r in self._released if r.granted)
        self._enter(
            Stage.RELEASED, "review", f"access granted to {granted} of {len(self._review.disclosure.partners)} partners"
        )

    # ----------------------------------------------------------------- messages

    @workflow.update(name=RECORD_DETERMINATION)
    async def record_determination(self, determination: Determination) -> ReviewStatus:
        self._applied_messages.add(determination.message_id)
        self._determination = determination
        self._log("determination recorded", agency=determination.sender, covered=determination.covered)
        return self.status()

    @record_determination.validator
    def _validate_determination(self, determination: Determination) -> None:
        self._authenticate(RECORD_DETERMINATION, determination)
        reject_unless(
            determination.sender == Agency.NSA, f"only the NSA determines coverage, not {determination.sender!r}"
        )
        reject_unless(
            not self._determination_by_default,
            "the determination deadline passed: the policy default was already applied",
        )
        reject_unless(self._determination is None, "the determination has already been recorded")
        self._validate_message(determination, stage=Stage.AWAITING_DETERMINATION)
        if determination.covered:
            reject_unless(bool(determination.agencies), "a covered determination must name the participating agencies")
        else:
            reject_unless(not determination.agencies, "participating agencies apply only to a covered determination")

    @workflow.update(name=SUBMIT_FINDING)
    async def submit_finding(self, finding: ReviewFinding) -> ReviewStatus:
        self._applied_messages.add(finding.message_id)
        self._findings.append(finding)
        if finding.kind == FindingKind.VULNERABILITY and workflow.patched(FORWARD_TO_CLEARINGHOUSE):
            self._forwards.append(asyncio.create_task(self._forward(finding)))
        self._publish_details()
        return self.status()

    @submit_finding.validator
    def _validate_finding(self, finding: ReviewFinding) -> None:
        self._authenticate(SUBMIT_FINDING, finding)
        self._validate_reviewer_message(finding)
        reject_unless(
            finding.kind != FindingKind.VULNERABILITY or finding.vulnerability is not None,
            "a vulnerability finding needs its details for the clearinghouse",
        )

    async def _forward(self, finding: ReviewFinding) -> None:
        """Relay a vulnerability finding to Treasury's clearinghouse. Nothing waits on it but the
        very end of the workflow, after the release: the clearinghouse can never hold a release.

        A finding is never dropped. It is retried for as long as the policy says the clearinghouse
        may be down (`forward_timeout`); after that it is held: recorded as undelivered on the
        review (status, Web UI, audit) and left scheduled on Treasury's queue with no deadline, so
        it is delivered when Treasury's worker returns. The review stays open (after its release)
        until then. Only the clearinghouse refusing it outright ends the attempt."""
        ch = self._policy.clearinghouse
        fid = finding.message_id
        request = ForwardRequest(review_id=self._review.review_id, finding=finding)
        self._forwards_pending[fid] = "on its way to the clearinghouse"
        try:
            try:
                receipt = await self._forward_attempt(request, f"forward-{fid}", ch.forward_timeout)
            except ActivityError as err:
                if not isinstance(err.cause, ActivityTimeout):
                    raise
                self._forwards_pending[fid] = (
                    f"undelivered: the clearinghouse did not take it within {describe(ch.forward_timeout)} "
                    f"(since {workflow.now():%Y-%m-%d %H:%M:%S} UTC); held until Treasury's worker takes it"
                )
                self._log("vulnerability finding held for the clearinghouse", level=logging.WARNING)
                self._publish_details()
                receipt = await self._forward_attempt(request, f"forward-{fid}-held", None)
            self._cases[fid] = receipt.case_id
        except Unverifiable as err:
            # Only answers nobody can verify came back (someone completing the relay by id, again and again).
            self._forwards_refused[fid] = f"no verifiable receipt from Treasury: {err}"
            self._log("vulnerability finding: no verifiable receipt", level=logging.WARNING)
        except ActivityError as err:
            # Refused outright (a non-retryable failure: the report does not verify at Treasury).
            self._forwards_refused[fid] = err.cause.message if err.cause else str(err)
            self._log("vulnerability finding refused by the clearinghouse", level=logging.WARNING)
        finally:
            self._forwards_pending.pop(fid, None)
        self._publish_details()

    async def _forward_attempt(
        self, request: ForwardRequest, activity_id: str, deadline: timedelta | None
    ) -> IntakeReceipt:
        # Treasury's receipt, signed by Treasury; the relay is idempotent, so asking again is safe.
        return await attested(
            FORWARD_VULNERABILITY,
            request,
            party=TREASURY,
            activity_id=activity_id,
            parse=model(IntakeReceipt),
            watch=self._watch,
            refused=self._unverified,
            deadline=deadline,
            task_queue=CLEARINGHOUSE_TASK_QUEUE,
            start_to_close_timeout=self._policy.clearinghouse.activity_timeout,
            retry_policy=AGENCY_RETRY,
            summary=f"forward {request.finding.sender}'s vulnerability finding to the Treasury clearinghouse"
            + ("" if deadline else " (held: no deadline)"),
        )

    @workflow.update(name=CONCLUDE_REVIEW)
    async def conclude_review(self, conclusion: Conclusion) -> ReviewStatus:
        self._applied_messages.add(conclusion.message_id)
        self._concluded.append(Agency(conclusion.sender))
        if self._pending_reviewers():  # else the window closes now, and RELEASING's upsert carries it
            workflow.upsert_search_attributes([self._awaited_attribute()])
        self._publish_details()
        return self.status()

    @conclude_review.validator
    def _validate_conclusion(self, conclusion: Conclusion) -> None:
        self._authenticate(CONCLUDE_REVIEW, conclusion)
        self._validate_reviewer_message(conclusion)

    @workflow.update(name=WITHDRAW)
    async def withdraw(self, withdrawal: Withdrawal) -> ReviewStatus:
        self._applied_messages.add(withdrawal.message_id)
        self._withdrawal = withdrawal
        return self.status()

    @withdraw.validator
    def _validate_withdrawal(self, withdrawal: Withdrawal) -> None:
        self._authenticate(WITHDRAW, withdrawal)
        # One signing party per lab: only this review's lab withdraws it.
        who = withdrawal.sender
        reject_unless(who == self._lab, f"only this review's lab ({self._lab}) can withdraw, not {who!r}")
        reject_unless(self._withdrawal is None, "the lab has already withdrawn")
        reject_unless(
            self._stage not in (Stage.RELEASED, Stage.WITHDRAWN), f"the review is already {self._stage.value}"
        )
        reject_unless(
            not self._granting,
            "the release is under way (access has been granted to a trusted partner): a withdrawal is no "
            "longer possible",
        )

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> ReviewStatus:
        d = self._review.disclosure
        return ReviewStatus(
            review_id=self._review.review_id,
            lab=d.lab,
            model_name=d.model_name,
            model_version=d.model_version,
            stage=self._stage,
            outcome=self._outcome,
            covered=self._determination.covered if self._determination else None,
            policy_version=self._policy.version if self._admission and self._policy else "(not admitted)",
            genuine=self._admission.admitted if self._admission else None,
            cancel_requests=self._cancel_requests,
            history_reset=bool(self._watch.resets),
            admission=self._admission.reason if self._admission else None,
            disclosed_at=self._disclosed_at,
            determination_deadline=self._determination_deadline,
            determination=self._determination,
            determination_by_default=self._determination_by_default,
            nsa_briefed=self._nsa_briefed,
            window_deadline=self._window_deadline,
            participating_agencies=self._participants,
            pending_agencies=self._pending(),
            standards=self._verdicts,
            findings=self._findings,
            partners_granted=[r.partner_id for r in self._released if r.granted],
            partners_skipped=[r for r in self._released if not r.granted],
            transitions=self._transitions,
            withdrawal_reason=self._withdrawal.reason if self._withdrawal else None,
            clearinghouse_cases=self._cases,
            unverified_results=self._unverified,
            clearinghouse_pending=self._forwards_pending,
            clearinghouse_refused=self._forwards_refused,
        )

    def _authenticate(self, update: str, message: Message) -> None:
        """Who sent it, proven: a fresh message id and a signature by the sender's key."""
        if message.message_id in self._applied_messages:
            raise ApplicationError(
                f"message {message.message_id} was already applied", type=ALREADY_APPLIED, non_retryable=True
            )
        authenticate(
            self._keys, self._review.review_id, update, message, target="review", run_id=workflow.info().run_id
        )

    def _validate_message(self, message: ReviewFinding | Conclusion | Determination, *, stage: Stage) -> None:
        reject_unless(self._withdrawal is None, "the lab has withdrawn; the review is closed")
        reject_unless(self._stage == stage, f"the review is at stage {self._stage.value}, not {stage.value}")

    def _validate_reviewer_message(self, message: ReviewFinding | Conclusion) -> None:
        known = {a.value for a in Agency}
        reject_unless(message.sender in known, f"unknown agency {message.sender!r}")
        self._validate_message(message, stage=Stage.UNDER_REVIEW)
        agency = Agency(message.sender)
        reject_unless(agency in self._participants, f"{agency.value} is not a participating agency in this review")
        reject_unless(agency not in self._concluded, f"{agency.value} has already concluded its review")

    # ----------------------------------------------------------------- plumbing

    async def _unless_withdrawn(self, work: Awaitable[T]) -> T:
        """Run one piece of work, cancelling it cleanly if the lab withdraws meanwhile."""
        task = asyncio.ensure_future(work)
        await workflow.wait_condition(lambda: task.done() or self._withdrawal is not None)
        if self._withdrawal is not None:
            if not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, ActivityError):
                    pass
            raise _Withdrawn()
        return task.result()

    def _pending_reviewers(self) -> list[Agency]:
        return [a for a in self._participants if a not in self._concluded]

    def _pending(self) -> list[Agency]:
        if self._stage == Stage.STANDARDS_CHECK:
            answered = {v.agency for v in self._verdicts}
            return [a for a in STANDARDS_BODIES if a not in answered]
        if self._stage == Stage.AWAITING_DETERMINATION:
            return [Agency.NSA]
        if self._stage == Stage.UNDER_REVIEW:
            return self._pending_reviewers()
        return []

    def _flag(self, what: str) -> None:
        if what not in self._integrity:
            self._integrity.append(what)
            workflow.upsert_search_attributes([sa.INTEGRITY.value_set(list(self._integrity))])

    def _enter(self, stage: Stage, actor: str, reason: str) -> None:
        if self._watch.resets:
            self._flag(sa.INTEGRITY_RESET)
        self._stage = stage
        self._transitions.append(Transition(stage=stage, at=workflow.now(), actor=str(actor), reason=reason))
        # Only what changes: the start request already set DISCLOSED (api/reviews.py), and the
        # outcome stays from RELEASING to RELEASED. Each upsert costs a command, an event and a
        # visibility write.
        current = workflow.info().typed_search_attributes
        updates = [u for u in [*self._with_next_stage, *self._visible_attributes()] if current.get(u.key) != u.value]
        self._with_next_stage = []
        if updates:
            workflow.upsert_search_attributes(updates)
        # The reason (a withdrawal's words, the participants) stays in the encrypted history.
        self._log(f"stage {stage.value}", actor=str(actor))
        self._publish_details()

    def _visible_attributes(self) -> list[SearchAttributeUpdate]:
        """The stage, and the clocks the transparency report reads (one upsert per transition)."""
        updates: list[SearchAttributeUpdate] = [sa.REVIEW_STAGE.value_set(self._stage.value)]
        if self._outcome is not None:
            updates.append(sa.OUTCOME.value_set(self._outcome.value))
        if self._stage == Stage.RELEASING:
            updates.append(sa.SECONDS_TO_RELEASE.value_set(_seconds_since_start()))
        awaited = self._awaited_attribute()
        if awaited.value or workflow.info().typed_search_attributes.get(sa.PENDING_AGENCIES) is not None:
            updates.append(awaited)  # unset reads as nobody awaited: no upsert to say so
        return updates

    def _awaited_attribute(self) -> SearchAttributeUpdate:
        """PendingAgencies: whose decision the review waits for (the NSA's, then each participant's
        conclusion), so a list can ask what waits for an agency. Not the standards bodies: their
        workers answer within the policy's timeout, and an upsert per verdict would cost a visibility
        write each."""
        awaited = self._pending() if self._stage in (Stage.AWAITING_DETERMINATION, Stage.UNDER_REVIEW) else []
        return sa.PENDING_AGENCIES.value_set(" ".join(a.value for a in awaited))

    def _log(self, message: str, *, level: int = logging.INFO, **fields: object) -> None:
        """workflow.logger (silent on replay), with the stage on every line."""
        workflow.logger.log(level, message, extra={"stage": self._stage.value, **fields})

    def _publish_details(self) -> None:
        """What a watcher reads in the Web UI: stage, deadlines, who is still pending."""
        lines = [f"**{self._stage.value}**"]
        if self._admission is not None and not self._admission.admitted:
            lines = [f"**NOT GENUINE**: {self._admission.reason}. This review does nothing."]
        if self._watch.resets:
            lines.append("**history reset**: a namespace user reset this review (see its audit)")
        if self._cancel_requests:
            lines.append(f"cancel requests ignored: {len(self._cancel_requests)} (only the lab withdraws)")
        if self._outcome:
            lines.append(f"outcome: {self._outcome.value}")
        if self._determination is not None:
            verdict = "covered" if self._determination.covered else "not covered"
            by = "the NSA"
            if self._determination_by_default:
                by = "the policy's default (the NSA did not decide by its deadline)"
            lines.append(f"determination: {verdict}, by {by}")
        if self._determination_deadline and self._stage == Stage.AWAITING_DETERMINATION:
            lines.append(f"determination due: {self._determination_deadline:%Y-%m-%d %H:%M} UTC")
        if self._window_deadline and self._stage == Stage.UNDER_REVIEW:
            lines.append(f"window closes: {self._window_deadline:%Y-%m-%d %H:%M} UTC")
        pending = self._pending()
        if pending:
            lines.append("pending: " + ", ".join(a.value for a in pending))
        if self._findings:
            lines.append(f"findings: {len(self._findings)}")
        if self._released:
            lines.append(f"partners granted: {sum(1 for r in self._released if r.granted)}")
        if self._cases:
            lines.append(f"clearinghouse cases: {', '.join(sorted(set(self._cases.values())))}")
        if self._forwards_pending:
            held = sum(1 for why in self._forwards_pending.values() if why.startswith("undelivered"))
            lines.append(
                f"findings awaiting the clearinghouse: {len(self._forwards_pending)}"
                + (f" ({held} undelivered past the policy's forward timeout, held)" if held else "")
            )
        if self._forwards_refused:
            lines.append(f"findings refused by the clearinghouse: {len(self._forwards_refused)}")
        workflow.set_current_details("\n\n".join(lines))
