"""`ModelReview`: one frontier model's pre-release review, read top to bottom as the brief's
lifecycle. Its event history is the audit trail.

    DISCLOSED -> STANDARDS_CHECK -> AWAITING_DETERMINATION -> UNDER_REVIEW -> RELEASING -> RELEASED
                                            |  not covered ------------------^
    any stage before RELEASED --(lab withdraws)--> WITHDRAWN

Nothing here can hold a release past its window: every wait has a deadline from the
policy, and silence (an agency's, the NSA's) has a defined outcome.

All the review knows is one model, `ReviewState` (domain/status.py): the status query's answer,
the workflow's result, the Web UI's current details and the record `audit` reads. Update handlers
validate a message and record it, nothing more; every stage change is made here on `run()`'s path,
with its actor (the message's verified sender, or the clock) and its reason. A handler whose
message moves the review waits for that move, so its receipt shows the stage after it.
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
    from domain import clocks, metrics
    from domain import search_attributes as sa
    from domain.agencies import STANDARDS_BODIES, Agency
    from domain.attestation import Unverifiable
    from domain.clearinghouse import (
        CLEARINGHOUSE_TASK_QUEUE,
        FORWARD_VULNERABILITY,
        REFRESH_INTERVAL,
        REFRESH_KEYS,
        REFRESH_TOO_SOON,
        ForwardRequest,
        IntakeReceipt,
    )
    from domain.details import details
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
    from domain.policy import Policy, describe
    from domain.review import (
        ADMIT_DISCLOSURE,
        ALREADY_APPLIED,
        BRIEF_NSA,
        CHECK_STANDARD,
        CONCLUDE_REVIEW,
        GRANT_ACCESS,
        KEY_MISMATCH,
        LEDGER_GRANTS,
        LOAD_REVIEW_KEYS,
        MAX_REFRESH_INTERVAL,
        RECORD_DETERMINATION,
        STATUS_QUERY,
        SUBMIT_FINDING,
        VET_PARTNER,
        WITHDRAW,
        WORKFLOW_TYPE,
        Admission,
        AdmissionRequest,
        LedgerGrant,
        PartnerRequest,
        ReviewInput,
    )
    from domain.signatures import KEYS_LOADING, PublicKeyring, signature_problem
    from domain.status import (
        CLOCK,
        AppliedMessage,
        Forward,
        KeyRefresh,
        Outcome,
        PartnerRelease,
        Receipt,
        ReviewState,
        Stage,
        Transition,
    )
    from domain.vulnerability import REVIEW_OFFICE, TREASURY, is_party, lab_party
    from workflows.attested import ResetWatch, attested, model
    from workflows.messages import authenticate, reject_unless

T = TypeVar("T")

AGENCY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=10))
# The review office's keyring and admission as local activities (was: two activity tasks); the
# histories recorded before it replay the old way (tests/histories/reviews/).
OFFICE_LOCAL_ACTIVITIES = "office-local-activities"
# A clock cut by the policy's bound on the whole hold says so in the record.
_LEFT_OF_HOLD = " (what was left of the policy's max_hold)"
# A timeout of zero means "none" to Temporal: a clock with nothing left still gets this long.
_LEAST_CLOCK = timedelta(seconds=1)
# Once the hold is over, no message can move the review any more.
_CLOSED = (Stage.RELEASED, Stage.WITHDRAWN)


def _keyring(result: object) -> PublicKeyring:
    if not isinstance(result, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in result.items()):
        raise Unverifiable("the review office's keyring is not {party: key}")
    return dict(result)


def _ledger(result: object) -> list[LedgerGrant]:
    if not isinstance(result, list):
        raise Unverifiable("the review office's ledger grants are not a list")
    return [LedgerGrant.model_validate(g) for g in result]


class _Withdrawn(Exception):
    """Internal: the lab withdrew; unwinds whatever stage was running."""


def _seconds_since_start() -> int:
    return int((workflow.now() - workflow.info().workflow_start_time).total_seconds())


def _count(counter: metrics.Counter, **labels: str) -> None:
    """Add one to our counter; the workflow's metric meter skips replays."""
    workflow.metric_meter().create_counter(counter.name, counter.description).add(1, labels)


def _at(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "?"


@workflow.defn(name=WORKFLOW_TYPE)
class ModelReview:
    @workflow.init
    def __init__(self, review: ReviewInput) -> None:
        # Handlers may run before run(): all state is set up here.
        self._review = review
        d = review.disclosure
        # The disclosure is the workflow's start: every clock the lab can plan on counts from it.
        self.state = ReviewState(
            review_id=review.review_id,
            lab=d.lab,
            model_name=d.model_name,
            model_version=d.model_version,
            disclosed_at=workflow.info().workflow_start_time,
        )
        # The policy the review office loaded (None until it admits the review).
        self._policy: Policy | None = None
        # The keys messages are verified with: loaded from the review office at the start of run()
        # (until then, messages are turned away to be sent again), reloaded on `refresh_keys`.
        self._keys: PublicKeyring | None = None
        self._last_refresh: datetime | None = None
        self._refresh_interval = REFRESH_INTERVAL
        self._applied_ids: set[str] = set()
        # Set just before the first access grant is scheduled: from then on the model is reaching
        # partners, and the lab can no longer withdraw (README, "Withdrawal and release").
        self._granting = False
        # Resets whose grants have been read from the ledger (`_ledger_after_reset`): until the count
        # catches up with the resets seen, the review cannot know what was granted, and the lab
        # cannot withdraw.
        self._resets_read = 0
        self._ledger_unreadable: str | None = None
        # Set by the SDK's reseed (a reset) itself: a wait_condition alone would not wake, since the
        # reset's workflow task may bring nothing else to run.
        self._reseeded = asyncio.Event()
        workflow.register_random_seed_callback(lambda _seed: self._reseeded.set())
        # The story has returned (or will do nothing more): a handler never waits past it.
        self._done = False
        # Activity results are believed only when signed by the party that produces them
        # (workflows/attested.py); the others go into state.unverified_results.
        self._watch = ResetWatch()
        self._lab = lab_party(d.lab)
        # What a namespace user did that the review cannot prevent (search attribute Integrity).
        self._integrity: list[str] = []
        # Search attributes that go out with the next stage change (same workflow task): one
        # upsert per transition, each a command, an event and a visibility write on the server.
        self._with_next_stage: list[SearchAttributeUpdate] = []

    # ----------------------------------------------------------------- the story

    @workflow.run
    async def run(self, review: ReviewInput) -> ReviewState:
        """The story, shielded from cancellation: only the lab ends a review early (it withdraws). A
        cancel request (anyone with namespace access may send one) is recorded and ignored."""
        story = asyncio.ensure_future(self._story(review))
        while True:
            try:
                return await asyncio.shield(story)
            except asyncio.CancelledError:
                if story.done():
                    raise
                self.state.cancel_requests.append(workflow.now())
                self._flag(sa.INTEGRITY_CANCEL_REQUESTED)
                self._log("cancel request ignored: only the lab withdraws a review", level=logging.WARNING)
                self._publish_details()

    async def _story(self, review: ReviewInput) -> ReviewState:
        # Does nothing (no command) unless the history is reset: the SDK reseeds the run there.
        asyncio.ensure_future(self._ledger_after_reset())
        # The review office's own worker runs this workflow: its keyring and its admission of the
        # filing are local activities there (a marker each in the history, no task on the server
        # that anyone could complete by id; README "Performance"). One after the other: each local
        # result sets the workflow's clock to its completion, the same on replay only if they
        # resolve one at a time.
        local = workflow.patched(OFFICE_LOCAL_ACTIVITIES)
        self._keys = await self._from_review_office(
            LOAD_REVIEW_KEYS, "review-keys", _keyring, "load the parties' public keys (review office)", local=local
        )
        # Anyone can start a ModelReview with any input: nothing runs until the review office has
        # checked the lab's signature on the filing and loaded the policy it names, itself.
        admission: Admission = await self._from_review_office(
            ADMIT_DISCLOSURE,
            "admission",
            model(Admission),
            "admit the disclosure (the lab's signature, the office's policy)",
            AdmissionRequest(review_id=review.review_id, disclosure=review.disclosure, filing=review.filing),
            local=local,
        )
        self.state.genuine, self.state.admission = admission.admitted, admission.reason
        if not admission.admitted or admission.policy is None:
            # Not a genuine review: it does nothing, and says so (status, search attribute, Web UI).
            self.state.genuine = False
            workflow.upsert_search_attributes([sa.GENUINE.value_set(False)])
            self._log("not admitted: not a genuine review", level=logging.WARNING)
            return await self._close()
        self._policy = admission.policy
        self.state.policy_version = admission.policy.version
        self._enter(Stage.DISCLOSED, self._lab, self._disclosed_reason(review))
        # Written with the next stage's upsert (one visibility write per stage change; the start
        # request set DISCLOSED, so entering it writes nothing).
        self._with_next_stage += [
            sa.GENUINE.value_set(True),
            sa.GENUINE_SEAL.value_set(admission.seal or ""),
            sa.POLICY_VERSION.value_set(self._policy.version),
        ]
        _count(metrics.REVIEWS_STARTED, policy_version=self._policy.version)
        forwarding = asyncio.ensure_future(self._forward_findings())
        try:
            await self._standards_check()
            covered = await self._nsa_determination()
            self.state.outcome = await self._review_window() if covered else Outcome.NOT_COVERED
            await self._release()
        except _Withdrawn:
            await self._withdrawn()
        # Findings still on their way to the clearinghouse get there, however long Treasury is
        # away: the release has already happened, and the review stays open until they are delivered.
        await forwarding
        assert self.state.outcome is not None
        _count(metrics.REVIEWS_CLOSED, outcome=self.state.outcome.value)
        return await self._close()

    async def _close(self) -> ReviewState:
        self._done = True
        self._publish_details()
        # Let an update that is mid-flight finish before the history closes.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    def _disclosed_reason(self, review: ReviewInput) -> str:
        assert self._policy is not None
        refiled = ""
        if review.earlier_run is not None:  # the run before ended without an outcome; the record says so
            earlier = review.earlier_run
            why = f": {earlier.reason}" if earlier.reason else ""
            refiled = f"; refiled after run {earlier.run_id} ended {earlier.status} at {earlier.stage}{why}"
        return f"disclosed under policy {self._policy.version}{refiled}"

    async def _standards_check(self) -> None:
        self._enter(Stage.STANDARDS_CHECK, "review", "the five standards bodies judge the disclosure")
        checks = [self._check_standard(body) for body in STANDARDS_BODIES]
        await self._unless_withdrawn(asyncio.gather(*checks))

    async def _from_review_office(
        self, activity: str, activity_id: str, parse, summary: str, *args, local: bool = False
    ):
        """What the review office's worker answers, signed with its key; without that the review
        cannot run: it fails, naming why (it never goes on with what someone else supplied)."""
        try:
            return await self._office(activity, activity_id, parse, summary, *args, local=local)
        except Unverifiable as e:
            unverified = self.state.unverified_results
            raise ApplicationError(
                f"{e}: " + "; ".join(f"{u.activity_id}: {u.reason}" for u in unverified),
                type="Unverifiable",
                non_retryable=True,
            ) from None

    async def _office(self, activity: str, activity_id: str, parse, summary: str, *args, local: bool = False):
        return await attested(
            activity,
            *args,
            party=REVIEW_OFFICE,
            activity_id=activity_id,
            parse=parse,
            refused=self.state.unverified_results,
            start_to_close_timeout=timedelta(seconds=30),
            summary=summary,
            local=local,
        )

    async def _check_standard(self, body: Agency) -> None:
        """One body's classified standard, judged on that body's own worker and queue, signed with
        that body's key: an answer nobody can verify is that body's silence."""
        assert self._policy is not None
        timeout, cut = self._within_hold(self._policy.standards_check_timeout)
        try:
            verdict = await attested(
                CHECK_STANDARD,
                self._review.disclosure,
                party=body.value,
                activity_id=f"standards-{body.value}",
                parse=model(StandardsVerdict),
                refused=self.state.unverified_results,
                deadline=timeout,
                task_queue=body.task_queue,
                start_to_close_timeout=min(self._policy.standards_check_attempt_timeout, timeout),
                retry_policy=AGENCY_RETRY,
                summary=f"{body.title} standards check",
            )
            if verdict.agency != body:
                raise Unverifiable(f"{body.value} signed a verdict for {verdict.agency.value}")
        except Unverifiable as err:
            verdict = StandardsVerdict(
                agency=body, verdict=Verdict.NO_RESPONSE, rationale=f"no verifiable answer: {err}"
            )
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                return  # the lab withdrew while the check was in flight: no verdict, not a failure
            # Silence (or an agency-side failure) is never a block: it is recorded as such
            # and the review moves on.
            if isinstance(err.cause, ActivityTimeout):
                why = f"no answer within {describe(timeout)}" + (_LEFT_OF_HOLD if cut else "")
            else:
                why = f"the agency's check failed: {err.cause.message if err.cause else err}"
            verdict = StandardsVerdict(agency=body, verdict=Verdict.NO_RESPONSE, rationale=why)
        self.state.standards.append(verdict)
        # The verdict itself stays in the (encrypted) history: logs are plaintext.
        self._log("standards check answered", agency=body.value)
        self._publish_details()

    async def _nsa_determination(self) -> bool:
        assert self._policy is not None
        clock, cut = self._within_hold(self._policy.determination_deadline)
        deadline = workflow.now() + clock
        self.state.determination_deadline = deadline
        self.state.nsa_briefed = False
        self._enter(Stage.AWAITING_DETERMINATION, "review", self._briefing_reason(deadline))
        # The receipt counts only with the NSA's signature (a forged one is recorded as unverified).
        briefing = asyncio.ensure_future(
            attested(
                BRIEF_NSA,
                Briefing(
                    review_id=self.state.review_id, verdicts=self.state.standards, determination_deadline=deadline
                ),
                party=Agency.NSA.value,
                activity_id="nsa-briefing",
                parse=model(BriefingReceipt),
                refused=self.state.unverified_results,
                deadline=clock,
                task_queue=Agency.NSA.task_queue,
                start_to_close_timeout=min(self._policy.standards_check_attempt_timeout, clock),
                retry_policy=AGENCY_RETRY,
                summary="NSA briefing",
            )
        )
        briefing.add_done_callback(self._briefing_done)
        decided = lambda: self.state.determination is not None or self.state.withdrawal is not None  # noqa: E731
        try:
            await workflow.wait_condition(decided, timeout=clock, timeout_summary="NSA determination deadline")
        except TimeoutError:
            pass
        await self._briefing_settled(briefing)
        if self.state.withdrawal is not None:
            raise _Withdrawn()
        if self.state.determination is None and self._watch.resets:
            # The history was reset (`temporal workflow reset`) to before the determination: the
            # NSA's answer may have been erased with the events after that point. No default
            # applies to a reset review: it is flagged and waits for the NSA to determine again.
            self._flag(sa.INTEGRITY_RESET)
            self._log("history reset before the determination: no default applies", level=logging.WARNING)
            self._publish_details()
            await workflow.wait_condition(decided)
            if self.state.withdrawal is not None:
                raise _Withdrawn()
        if self.state.determination is None:
            self._apply_default(cut)
        determination = self.state.determination
        assert determination is not None
        # Written with the next stage (UNDER_REVIEW or RELEASING), which follows at once.
        by_default = self.state.determination_by_default
        self._with_next_stage += [
            sa.COVERED.value_set(determination.covered),
            sa.DETERMINED_BY.value_set(sa.DETERMINED_BY_DEFAULT if by_default else sa.DETERMINED_BY_NSA),
            sa.SECONDS_TO_DETERMINATION.value_set(_seconds_since_start()),
        ]
        _count(metrics.DETERMINATIONS, covered=str(determination.covered).lower(), by_default=str(by_default).lower())
        return determination.covered

    def _briefing_reason(self, deadline: datetime) -> str:
        counts: dict[str, int] = {}
        for v in self.state.standards:
            counts[v.verdict.value] = counts.get(v.verdict.value, 0) + 1
        shown = ", ".join(f"{n} {v.replace('_', ' ')}" for v, n in sorted(counts.items()))
        return f"standards check done ({shown or 'no verdict'}); the NSA is briefed and decides by {_at(deadline)}"

    async def _briefing_settled(self, briefing: asyncio.Future[BriefingReceipt]) -> None:
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

    def _briefing_done(self, briefing: asyncio.Future[BriefingReceipt]) -> None:
        self.state.nsa_briefed = not briefing.cancelled() and briefing.exception() is None

    def _apply_default(self, cut: bool) -> None:
        """The NSA was silent past its deadline: the policy's default applies."""
        assert self._policy is not None
        covered = self._policy.on_nsa_silence == "covered"
        self.state.determination_by_default = True
        self.state.clock_ran_out = clocks.HOLD_CLOCK if cut else clocks.DETERMINATION_CLOCK
        self.state.determination = Determination(
            sender="policy",
            message_id="policy-default",
            covered=covered,
            agencies=list(self._policy.default_participants) if covered else [],
            rationale=(
                f"no determination by the deadline{_LEFT_OF_HOLD if cut else ''}; "
                + ("the NSA was silent" if self.state.nsa_briefed else "the briefing never reached the NSA")
                + f"; policy {self._policy.version} default applies"
            ),
        )

    def _decided_by(self) -> tuple[str, str | None, str | None, str]:
        """Who decided (actor), its message id or the clock that ran out, and how, for a transition."""
        d = self.state.determination
        assert d is not None
        if not self.state.determination_by_default:
            return d.sender, d.message_id, None, ""
        silence = "on the NSA's silence" if self.state.nsa_briefed else "(the briefing never reached the NSA)"
        return "policy", None, self.state.clock_ran_out, f" by the policy's default {silence}"

    async def _review_window(self) -> Outcome:
        assert self._policy is not None and self.state.determination is not None
        self.state.participating_agencies = list(dict.fromkeys(self.state.determination.agencies))
        window, cut = self._within_hold(self._policy.review_window)
        deadline = workflow.now() + window
        self.state.window_deadline = deadline
        self._with_next_stage += [
            sa.WINDOW_DEADLINE.value_set(deadline),
            sa.PARTICIPANTS.value_set(self.state.participating_agencies),
        ]
        actor, message_id, clock, by = self._decided_by()
        with_whom = ", ".join(self.state.participating_agencies)
        self._enter(
            Stage.UNDER_REVIEW,
            actor,
            f"covered{by}; review window of {describe(window)}{_LEFT_OF_HOLD if cut else ''} with {with_whom}, "
            f"closes {_at(deadline)}",
            message_id=message_id,
            clock=clock,
        )
        timer = asyncio.ensure_future(workflow.sleep(window, summary=f"review window ({describe(window)})"))
        heard = 0
        while True:
            await workflow.wait_condition(
                lambda heard=heard: (
                    timer.done() or self.state.withdrawal is not None or len(self.state.conclusions) > heard
                )
            )
            heard = len(self.state.conclusions)
            if self.state.withdrawal is not None:
                timer.cancel()
                raise _Withdrawn()
            if not self.state.pending_reviewers:
                timer.cancel()
                self.state.clock_ran_out = None  # every agency concluded: no clock ended this hold
                _count(metrics.WINDOWS_CLOSED_EARLY, policy_version=self._policy.version)
                return Outcome.CONCLUDED_EARLY
            if timer.done():
                self.state.clock_ran_out = clocks.HOLD_CLOCK if cut else clocks.WINDOW_CLOCK
                _count(metrics.WINDOWS_ELAPSED, policy_version=self._policy.version)
                return Outcome.WINDOW_ELAPSED
            # A conclusion, not the last: whose conclusion the review still waits for (PendingAgencies).
            workflow.upsert_search_attributes([self._awaited_attribute()])

    def _releasing(self) -> tuple[str, str, str | None, str | None]:
        """RELEASING's actor, reason and cause: who or what ended the hold."""
        outcome = self.state.outcome
        assert outcome is not None
        ran_out = f" ({self.state.clock_ran_out} ran out)" if self.state.clock_ran_out else ""
        if outcome == Outcome.NOT_COVERED:
            actor, message_id, clock, by = self._decided_by()
            return actor, f"NOT_COVERED{by}{ran_out}: release to trusted partners", message_id, clock
        if outcome == Outcome.CONCLUDED_EARLY:
            last = self.state.conclusions[-1]
            reason = f"CONCLUDED_EARLY: every participating agency concluded (last: {last.sender})"
            return last.sender, reason + "; release to trusted partners", last.message_id, None
        holdouts = ", ".join(a.value for a in self.state.pending_reviewers)
        still = f"; {holdouts} had not concluded" if holdouts else ""
        reason = f"WINDOW_ELAPSED{ran_out}: the review window closed at {_at(self.state.window_deadline)}{still}"
        return CLOCK, reason + "; release to trusted partners", None, self.state.clock_ran_out

    async def _release(self) -> None:
        self._end_hold()
        actor, reason, message_id, clock = self._releasing()
        self._enter(Stage.RELEASING, actor, reason, message_id=message_id, clock=clock)
        for partner in self._review.disclosure.partners:
            # Keyed by run in the ledger: a refiled review never finds an earlier run's grants.
            request = PartnerRequest(review_id=self.state.review_id, partner=partner, run_id=workflow.info().run_id)
            try:
                vetting = await self._unless_withdrawn(
                    self._office(
                        VET_PARTNER, f"vet-{partner.partner_id}", model(VettingResult), f"vet {partner.name}", request
                    )
                )
            except Unverifiable:
                # Nobody may approve a partner but the review office: no verified vetting, no grant.
                vetting = VettingResult(
                    partner_id=partner.partner_id, approved=False, reason="no verifiable vetting by the review office"
                )
            if partner.partner_id in self.state.partners_granted:
                continue  # granted before this run's history was reset (the ledger says): never twice
            if not vetting.approved:
                self.state.releases.append(
                    PartnerRelease(partner_id=partner.partner_id, granted=False, reason=vetting.reason)
                )
                continue
            # A withdrawal that arrived while this partner was vetted was caught above; from here on
            # the withdraw validator refuses, so a review never ends WITHDRAWN with grants.
            self._granting = True
            self.state.releases.append(await self._grant(request, vetting))
            self._publish_details()
        granted = len(self.state.partners_granted)
        self._enter(
            Stage.RELEASED, "review", f"access granted to {granted} of {len(self._review.disclosure.partners)} partners"
        )

    async def _ledger_after_reset(self) -> None:
        """A reset (anyone with namespace access) erases the events after its point, grants included:
        the reset run takes the review's grants from the review office's ledger, which holds every
        run's, so it neither lets the lab withdraw a model partners already have nor grants it again."""
        while True:
            await self._reseeded.wait()
            self._reseeded.clear()
            resets = self._watch.resets
            self._flag(sa.INTEGRITY_RESET)
            try:
                grants = await self._office(
                    LEDGER_GRANTS,
                    f"ledger-grants-{resets}",
                    _ledger,
                    "read the review's grants from the ledger (history reset)",
                    self.state.review_id,
                )
            except Unverifiable as e:
                self._ledger_unreadable = str(e)
                self._log("history reset: the ledger's grants could not be verified", level=logging.WARNING)
                return
            held = set(self.state.partners_granted)
            for g in grants:
                if g.partner_id not in held:
                    self.state.releases.append(
                        PartnerRelease(
                            partner_id=g.partner_id,
                            granted=True,
                            reason=f"granted by run {g.run_id} at {_at(g.granted_at)} (ledger; history reset since)",
                            grant_id=g.grant_id,
                        )
                    )
            self._resets_read = resets
            self._log("history reset: grants read from the ledger", level=logging.WARNING, grants=len(grants))
            self._publish_details()

    async def _grant(self, request: PartnerRequest, vetting: VettingResult) -> PartnerRelease:
        partner = request.partner
        try:
            # The grant is idempotent (review, run, partner): asking again returns the same grant.
            grant = await self._office(
                GRANT_ACCESS,
                f"grant-{partner.partner_id}",
                model(AccessGrant),
                f"grant access to {partner.name}",
                request,
            )
        except Unverifiable:
            return PartnerRelease(
                partner_id=partner.partner_id, granted=False, reason="no verifiable grant from the review office"
            )
        return PartnerRelease(
            partner_id=partner.partner_id, granted=True, reason=vetting.reason, grant_id=grant.grant_id
        )

    async def _withdrawn(self) -> None:
        withdrawal = self.state.withdrawal
        assert withdrawal is not None
        self.state.outcome = Outcome.WITHDRAWN
        self._end_hold()
        self._enter(Stage.WITHDRAWN, withdrawal.sender, withdrawal.reason, message_id=withdrawal.message_id)

    # ----------------------------------------------------------------- findings to the clearinghouse

    async def _forward_findings(self) -> None:
        """Relay each vulnerability finding to Treasury's clearinghouse as it is recorded. Nothing
        waits on this but the very end of the workflow, after the release: the clearinghouse can
        never hold a release. Findings are accepted only under review, so once the review has
        moved on, no new one can come."""
        relays: list[asyncio.Task[None]] = []

        def vulnerabilities() -> list[ReviewFinding]:
            return [f for f in self.state.findings if f.kind == FindingKind.VULNERABILITY]

        while True:
            await workflow.wait_condition(
                lambda: len(vulnerabilities()) > len(relays) or self.state.stage in (*_CLOSED, Stage.RELEASING)
            )
            fresh = vulnerabilities()[len(relays) :]
            relays.extend(asyncio.create_task(self._forward(finding)) for finding in fresh)
            if not fresh:
                break
        await asyncio.gather(*relays)

    async def _forward(self, finding: ReviewFinding) -> None:
        """A finding is never dropped. It is retried for as long as the policy says the clearinghouse
        may be down (`forward_timeout`); after that it is held: recorded as undelivered on the
        review (status, Web UI, audit) and left scheduled on Treasury's queue with no deadline, so
        it is delivered when Treasury's worker returns. The review stays open (after its release)
        until then. Only the clearinghouse refusing it outright ends the attempt."""
        assert self._policy is not None
        ch = self._policy.clearinghouse
        fid = finding.message_id
        forward = Forward(finding_id=fid, agency=finding.sender)
        self.state.forwards.append(forward)
        request = ForwardRequest(review_id=self.state.review_id, finding=finding)
        try:
            try:
                receipt = await self._forward_attempt(request, f"forward-{fid}", ch.forward_timeout)
            except ActivityError as err:
                if not isinstance(err.cause, ActivityTimeout):
                    raise
                forward.status = "held"
                forward.reason = (
                    f"undelivered: the clearinghouse did not take it within {describe(ch.forward_timeout)} "
                    f"(since {workflow.now():%Y-%m-%d %H:%M:%S} UTC); held until Treasury's worker takes it"
                )
                self._log("vulnerability finding held for the clearinghouse", level=logging.WARNING)
                self._publish_details()
                receipt = await self._forward_attempt(request, f"forward-{fid}-held", None)
            forward.status, forward.case_id, forward.reason = "delivered", receipt.case_id, ""
        except Unverifiable as err:
            # Only answers nobody can verify came back (someone completing the relay by id, again and again).
            forward.status, forward.reason = "refused", f"no verifiable receipt from Treasury: {err}"
            self._log("vulnerability finding: no verifiable receipt", level=logging.WARNING)
        except ActivityError as err:
            # Refused outright (a non-retryable failure: the report does not verify at Treasury).
            forward.status, forward.reason = "refused", err.cause.message if err.cause else str(err)
            self._log("vulnerability finding refused by the clearinghouse", level=logging.WARNING)
        self._publish_details()

    async def _forward_attempt(
        self, request: ForwardRequest, activity_id: str, deadline: timedelta | None
    ) -> IntakeReceipt:
        # Treasury's receipt, signed by Treasury; the relay is idempotent, so asking again is safe.
        assert self._policy is not None
        return await attested(
            FORWARD_VULNERABILITY,
            request,
            party=TREASURY,
            activity_id=activity_id,
            parse=model(IntakeReceipt),
            refused=self.state.unverified_results,
            deadline=deadline,
            task_queue=CLEARINGHOUSE_TASK_QUEUE,
            start_to_close_timeout=self._policy.clearinghouse.activity_timeout,
            retry_policy=AGENCY_RETRY,
            summary=f"forward {request.finding.sender}'s vulnerability finding to the Treasury clearinghouse"
            + ("" if deadline else " (held: no deadline)"),
        )

    # ----------------------------------------------------------------- messages: validate, record

    @workflow.update(name=RECORD_DETERMINATION)
    async def record_determination(self, determination: Determination) -> Receipt:
        applied = self._record(RECORD_DETERMINATION, determination)
        self.state.determination = determination
        self._log("determination recorded", agency=determination.sender, covered=determination.covered)
        return await self._receipt(applied, moves=True)

    @record_determination.validator
    def _validate_determination(self, determination: Determination) -> None:
        self._authenticate(RECORD_DETERMINATION, determination)
        reject_unless(
            determination.sender == Agency.NSA, f"only the NSA determines coverage, not {determination.sender!r}"
        )
        reject_unless(
            not self.state.determination_by_default,
            "the determination deadline passed: the policy default was already applied",
        )
        reject_unless(self.state.determination is None, "the determination has already been recorded")
        self._validate_stage(Stage.AWAITING_DETERMINATION)
        if determination.covered:
            reject_unless(bool(determination.agencies), "a covered determination must name the participating agencies")
        else:
            reject_unless(not determination.agencies, "participating agencies apply only to a covered determination")

    @workflow.update(name=SUBMIT_FINDING)
    async def submit_finding(self, finding: ReviewFinding) -> Receipt:
        applied = self._record(SUBMIT_FINDING, finding)
        self.state.findings.append(finding)
        self._publish_details()
        follows = None
        if finding.kind == FindingKind.VULNERABILITY:
            follows = "forwarded to Treasury's clearinghouse: its case id follows in `status` (clearinghouse_cases)"
        return await self._receipt(applied, follows=follows)

    @submit_finding.validator
    def _validate_finding(self, finding: ReviewFinding) -> None:
        self._authenticate(SUBMIT_FINDING, finding)
        self._validate_reviewer_message(finding)
        reject_unless(
            finding.kind != FindingKind.VULNERABILITY or finding.vulnerability is not None,
            "a vulnerability finding needs its details for the clearinghouse",
        )

    @workflow.update(name=CONCLUDE_REVIEW)
    async def conclude_review(self, conclusion: Conclusion) -> Receipt:
        applied = self._record(CONCLUDE_REVIEW, conclusion)
        self.state.conclusions.append(conclusion)
        self._publish_details()
        # The last conclusion closes the window (run() moves the review on): the receipt shows that.
        last = not self.state.pending_reviewers
        return await self._receipt(applied, moves=last)

    @conclude_review.validator
    def _validate_conclusion(self, conclusion: Conclusion) -> None:
        self._authenticate(CONCLUDE_REVIEW, conclusion)
        self._validate_reviewer_message(conclusion)

    @workflow.update(name=WITHDRAW)
    async def withdraw(self, withdrawal: Withdrawal) -> Receipt:
        applied = self._record(WITHDRAW, withdrawal)
        self.state.withdrawal = withdrawal
        return await self._receipt(applied, moves=True)

    @withdraw.validator
    def _validate_withdrawal(self, withdrawal: Withdrawal) -> None:
        self._authenticate(WITHDRAW, withdrawal)
        # One signing party per lab: only this review's lab withdraws it.
        who = withdrawal.sender
        reject_unless(who == self._lab, f"only this review's lab ({self._lab}) can withdraw, not {who!r}")
        reject_unless(self.state.withdrawal is None, "the lab has already withdrawn")
        reject_unless(self.state.stage not in _CLOSED, f"the review is already {self.state.stage.value}")
        self._admitted()
        reject_unless(
            not self._granting,
            "the release is under way (access has been granted to a trusted partner): a withdrawal is no "
            "longer possible",
        )
        reject_unless(
            self._ledger_unreadable is None,
            f"the review's history was reset and its grants could not be read from the ledger "
            f"({self._ledger_unreadable}): a withdrawal is refused",
        )
        if self._watch.resets > self._resets_read:
            raise ApplicationError(
                "the history was reset: the review is reading the ledger; send again", type=KEYS_LOADING
            )
        granted = self.state.partners_granted
        reject_unless(
            not granted,
            f"access has already been granted to {', '.join(granted)} (by an earlier run of this review, the "
            "ledger says): a withdrawal is no longer possible",
        )

    @workflow.update(name=REFRESH_KEYS)
    async def refresh_keys(self, party: str) -> bool:
        """Reload the parties' public keys from the review office (a party enrolled, or its key
        replaced, since the review loaded them); whether `party` has a key now. Anyone may ask:
        only the review office's signed keyring is ever believed. A reload that changes nothing
        doubles the wait before the next (a flood cannot spend the run's update budget)."""
        self._last_refresh = workflow.now()
        activity_id = f"review-keys-refresh-{len(self.state.key_refreshes) + 1}"
        refresh = KeyRefresh(at=workflow.now(), asked_for=party, activity_id=activity_id, changed=False)
        try:
            keys = await self._office(
                LOAD_REVIEW_KEYS, activity_id, _keyring, f"reload the public keys (asked for {party})"
            )
            refresh = refresh.model_copy(update={"changed": keys != self._keys})
            self._keys = keys
        except Unverifiable as e:
            refresh = refresh.model_copy(update={"reason": f"kept the keys held: {e}"})
        self._refresh_interval = (
            REFRESH_INTERVAL if refresh.changed else min(self._refresh_interval * 2, MAX_REFRESH_INTERVAL)
        )
        self.state.key_refreshes.append(refresh)
        return party in (self._keys or {})

    @refresh_keys.validator
    def _validate_refresh(self, party: str) -> None:
        if self._keys is None:
            raise ApplicationError("the review is loading its keyring; send again", type=KEYS_LOADING)
        reject_unless(is_party(party), f"unknown party {party!r}")
        reject_unless(not self._done and self.state.stage not in _CLOSED, f"the review is {self.state.stage.value}")
        if self._last_refresh is not None and workflow.now() - self._last_refresh < self._refresh_interval:
            # Turned away here, writing nothing: the asker is not known yet, so cannot be verified.
            raise ApplicationError(
                f"the keyring was reloaded moments ago; ask again after {describe(self._refresh_interval)}",
                type=REFRESH_TOO_SOON,
            )

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> ReviewState:
        if self._watch.resets and not self.state.history_reset:
            return self.state.model_copy(update={"history_reset": True})
        return self.state

    def _record(self, update: str, message: Message) -> AppliedMessage:
        """Record an applied message (its validator has verified it)."""
        self._applied_ids.add(message.message_id)
        applied = AppliedMessage(
            update=update,
            message_id=message.message_id,
            sender=message.sender,
            at=workflow.now(),
            stage=self.state.stage,
        )
        self.state.applied.append(applied)
        return applied

    async def _receipt(self, applied: AppliedMessage, *, moves: bool = False, follows: str | None = None) -> Receipt:
        before = applied.stage
        if moves:
            # run() makes the stage change this message causes (in this workflow task, or once an
            # activity in flight is cancelled): the receipt waits for it, so it shows the stage after.
            await workflow.wait_condition(lambda: self.state.stage != before or self._done)
            if self.state.stage == before:
                follows = "the stage change follows in the review's own run"
        return Receipt(
            review_id=self.state.review_id,
            update=applied.update,
            message_id=applied.message_id,
            sender=applied.sender,
            applied_at=applied.at,
            stage_before=before,
            stage=self.state.stage,
            outcome=self.state.outcome,
            pending_agencies=self.state.pending_agencies,
            follows=follows,
        )

    def _authenticate(self, update: str, message: Message) -> None:
        """Who sent it, proven: a fresh message id and a signature by the sender's key."""
        if message.message_id in self._applied_ids:
            raise ApplicationError(
                f"message {message.message_id} was already applied", type=ALREADY_APPLIED, non_retryable=True
            )
        if self._keys is not None and message.sender in self._keys:
            problem = signature_problem(self._keys, self.state.review_id, update, message, target="review")
            if problem is not None:
                # Its own type, with the key the review holds: a sender whose key is another has had
                # it replaced since the review loaded it (its client has the review reload its keys
                # and sends again); a sender with this very key sent an altered or forged message.
                raise ApplicationError(problem, self._keys[message.sender], type=KEY_MISMATCH, non_retryable=True)
        authenticate(self._keys, self.state.review_id, update, message, target="review", run_id=workflow.info().run_id)

    def _admitted(self) -> None:
        if self.state.genuine is None:
            raise ApplicationError("the review office is admitting the review; send again", type=KEYS_LOADING)
        reject_unless(self.state.genuine, f"not a genuine review ({self.state.admission}): it does nothing")

    def _validate_stage(self, stage: Stage) -> None:
        reject_unless(self.state.withdrawal is None, "the lab has withdrawn; the review is closed")
        reject_unless(self.state.stage == stage, f"the review is at stage {self.state.stage.value}, not {stage.value}")

    def _validate_reviewer_message(self, message: ReviewFinding | Conclusion) -> None:
        known = {a.value for a in Agency}
        reject_unless(message.sender in known, f"unknown agency {message.sender!r}")
        self._validate_stage(Stage.UNDER_REVIEW)
        agency = Agency(message.sender)
        reject_unless(
            agency in self.state.participating_agencies, f"{agency.value} is not a participating agency in this review"
        )
        reject_unless(agency in self.state.pending_reviewers, f"{agency.value} has already concluded its review")

    # ----------------------------------------------------------------- the clocks a lab can plan on

    def _within_hold(self, clock: timedelta) -> tuple[timedelta, bool]:
        """A stage's clock cut to what is left of the whole hold, and whether the bound cut it."""
        assert self._policy is not None
        hold = clocks.hold_deadline(self._policy, self.state.disclosed_at)
        duration, cut = clocks.cut(clock, workflow.now(), hold)
        return max(duration, _LEAST_CLOCK), cut

    def _end_hold(self) -> None:
        """The model is no longer held (release began, or the lab withdrew): record when, once."""
        if self.state.hold_ended_at is None:
            self.state.hold_ended_at = workflow.now()

    def _outlook(self) -> None:
        """The clocks as of this stage change (not workflow.now() at each read: that moves with every
        activation, a rejected update's too, and a status read twice with nothing recorded must not
        change). Readers bring the earliest release up to the time of reading (clocks.as_of)."""
        s, policy = self.state, self._policy
        if policy is None:
            return  # not admitted yet: the review office has not loaded the policy
        now = workflow.now()
        hold_deadline = clocks.hold_deadline(policy, s.disclosed_at)
        latest = clocks.latest_release(
            policy, s.stage, now=now, hold_deadline=hold_deadline, stage_started_at=now,
            determination_deadline=s.determination_deadline, window_deadline=s.window_deadline,
            hold_ended_at=s.hold_ended_at,
        )  # fmt: skip
        earliest = clocks.earliest_release(s.stage, now=now, hold_ended_at=s.hold_ended_at)
        intended = self._review.disclosure.intended_release_date
        released = s.hold_ended_at is not None and s.stage != Stage.WITHDRAWN
        past = clocks.past_intended(intended, earliest, latest, released=released)
        s.hold_deadline, s.earliest_release, s.latest_release = hold_deadline, earliest, latest
        s.intended_release_date, s.past_intended_release = intended, past.value if past else None
        if s.hold_ended_at is not None:
            s.delay_seconds = clocks.delay_seconds(intended, s.hold_ended_at)

    # ----------------------------------------------------------------- plumbing

    async def _unless_withdrawn(self, work: Awaitable[T]) -> T:
        """Run one piece of work, cancelling it cleanly if the lab withdraws meanwhile."""
        task = asyncio.ensure_future(work)
        await workflow.wait_condition(lambda: task.done() or self.state.withdrawal is not None)
        if self.state.withdrawal is not None:
            if not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, ActivityError):
                    pass
            raise _Withdrawn()
        return task.result()

    def _flag(self, what: str) -> None:
        if what == sa.INTEGRITY_RESET:
            self.state.history_reset = True
        if what not in self._integrity:
            self._integrity.append(what)
            workflow.upsert_search_attributes([sa.INTEGRITY.value_set(list(self._integrity))])

    def _enter(
        self, stage: Stage, actor: str, reason: str, *, message_id: str | None = None, clock: str | None = None
    ) -> None:
        if self._watch.resets:
            self._flag(sa.INTEGRITY_RESET)
        self.state.stage = stage
        self.state.transitions.append(
            Transition(
                stage=stage, at=workflow.now(), actor=str(actor), reason=reason, message_id=message_id, clock=clock
            )
        )
        self._outlook()
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
        s = self.state
        updates: list[SearchAttributeUpdate] = [sa.REVIEW_STAGE.value_set(s.stage.value)]
        if s.outcome is not None:
            updates.append(sa.OUTCOME.value_set(s.outcome.value))
        if s.stage == Stage.RELEASING:
            updates.append(sa.SECONDS_TO_RELEASE.value_set(_seconds_since_start()))
        if s.stage in (Stage.RELEASING, Stage.WITHDRAWN) and s.delay_seconds is not None:
            updates.append(sa.SECONDS_DELAYED.value_set(float(s.delay_seconds)))
            if s.clock_ran_out:
                updates.append(sa.CLOCK_RAN_OUT.value_set(s.clock_ran_out))
        awaited = self._awaited_attribute()
        if awaited.value or workflow.info().typed_search_attributes.get(sa.PENDING_AGENCIES) is not None:
            updates.append(awaited)  # unset reads as nobody awaited: no upsert to say so
        return updates

    def _awaited_attribute(self) -> SearchAttributeUpdate:
        """PendingAgencies: whose decision the review waits for (the NSA's, then each participant's
        conclusion), so a list can ask what waits for an agency. Not the standards bodies: their
        workers answer within the policy's timeout, and an upsert per verdict would cost a visibility
        write each."""
        s = self.state
        awaited = s.pending_agencies if s.stage in (Stage.AWAITING_DETERMINATION, Stage.UNDER_REVIEW) else []
        return sa.PENDING_AGENCIES.value_set(" ".join(a.value for a in awaited))

    def _log(self, message: str, *, level: int = logging.INFO, **fields: object) -> None:
        """workflow.logger (silent on replay), with the stage on every line."""
        workflow.logger.log(level, message, extra={"stage": self.state.stage.value, **fields})

    def _publish_details(self) -> None:
        """What a watcher reads in the Web UI (domain/details.py), from the state alone."""
        workflow.set_current_details(details(self.state, reset=bool(self._watch.resets)))
