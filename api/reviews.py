"""Operator calls: disclose (start a review), status, list; and the one way messages are sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowHistoryEventFilterType,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from api.errors import DuplicateDisclosure, Rejected, UnknownReview
from api.idempotency import check_message_id
from api.sending import OUR_REFUSALS, Recipient, deliver
from api.server import describe_or_none, query_running
from api.waiting import StillWaiting, until
from domain import search_attributes as sa
from domain.agencies import REVIEW_TASK_QUEUE
from domain.attestation import TrustAnchors, seal_verifies
from domain.disclosure import Disclosure
from domain.ids import review_id_for
from domain.inputs import MAX_FILE_BYTES, MAX_MESSAGE_BYTES, Refused, round_trips
from domain.messages import Message
from domain.policy import Policy, describe
from domain.review import (
    DISCLOSE,
    KEY_MISMATCH,
    STATUS_QUERY,
    WORKFLOW_TYPE,
    EarlierRun,
    Filing,
    ReviewInput,
    disclosure_digest,
)
from domain.signatures import UNKNOWN_SIGNER, PublicKeyring, Signer
from domain.status import Receipt, ReviewStatus, RunRecord, Stage
from domain.vulnerability import REVIEW_OFFICE, lab_party
from infra.keys import KeyDirectory, KeyProblem

# A run that ended like this never reached an outcome (RELEASED or WITHDRAWN).
ENDED_WITHOUT_OUTCOME = (
    WorkflowExecutionStatus.TERMINATED,
    WorkflowExecutionStatus.FAILED,
    WorkflowExecutionStatus.TIMED_OUT,
    WorkflowExecutionStatus.CANCELED,
)
ENDED_WITHOUT_OUTCOME_NAMES = tuple(s.name for s in ENDED_WITHOUT_OUTCOME)


class ReviewSummary(BaseModel):
    """A row of `list`: unclassified visibility fields only."""

    review_id: str
    stage: str | None
    lab: str | None
    model_name: str | None
    covered: bool | None
    window_deadline: datetime | None
    policy_version: str | None
    started_at: datetime | None
    closed_at: datetime | None
    # The review office's seal verifies for this run (None: this reader holds no trust anchors).
    # Anyone may start a ModelReview with any search attributes: only a sealed one is a review.
    genuine: bool | None = None
    # Every run is listed (a refiled review has several); `audit ID --run-id RUN` reads one.
    run_id: str | None = None
    model_version: str | None = None  # from the memo the start request wrote (sealed: read with the keys)
    outcome: str | None = None
    determined_by: str | None = None  # nsa, or policy-default (the NSA silent past its deadline)
    pending_agencies: list[str] = []  # whose decision the review waits for
    # How the run stands in Temporal: RUNNING, COMPLETED, or TERMINATED/FAILED/CANCELED/TIMED_OUT for
    # a run ended from outside; then `stage` is only where it was when it was cut short.
    status: str | None = None

    @property
    def where(self) -> str:
        """Where the review stands: its stage, or how its run ended when something outside the review
        ended it (terminated, failed, cancelled, timed out): never the stage it was cut short at."""
        if self.status in ENDED_WITHOUT_OUTCOME_NAMES:
            return str(self.status)
        return self.stage or "?"

    def as_run(self) -> RunRecord:
        return RunRecord(
            run_id=self.run_id or "", status=self.status or "UNKNOWN", stage=self.stage, outcome=self.outcome,
            started_at=self.started_at, closed_at=self.closed_at,
        )  # fmt: skip


async def disclose(
    client: Client,
    disclosure: Disclosure,
    policy: Policy,
    public_keys: PublicKeyring | None = None,
    signer: Signer | None = None,
) -> str:
    """Start a review, as the lab: one open review per lab+model+version. Returns the review id.

    The disclosure goes in a filing signed by the lab's own party (`lab:<id>`, by default its key
    from the key directory), naming the policy by name and version; the review office admits the
    review only on that signature and runs it under its own copy of the policy. A workflow squatting
    on the review's id without the review office's seal (started by someone else, never admitted)
    is terminated, with the reason recorded, and the genuine review starts. (`public_keys` is
    no longer used: a review loads them from the review office.)"""
    rid = review_id_for(disclosure)
    lab = lab_party(disclosure.lab)
    signer = signer or KeyDirectory().signer(lab)
    anchors = reader_anchors()
    review = admissible(disclosure, policy, public_keys or {})
    previous = await describe_or_none(client, rid)
    if previous is not None:
        stage = previous.typed_search_attributes.get(sa.REVIEW_STAGE)
        genuine = _sealed(previous, anchors)
        if previous.status == WorkflowExecutionStatus.RUNNING and genuine is False:
            # A run the office has not sealed: give one just started a moment to be admitted.
            previous = await _sealed_soon(client, rid, anchors) or previous
            genuine = _sealed(previous, anchors)
        if previous.status == WorkflowExecutionStatus.RUNNING:
            if genuine is not False:
                raise DuplicateDisclosure(
                    f"review {rid} is already open (stage {stage}); withdraw it before refiling "
                    "(an operator closes a stuck one with `frontier-review close`)"
                )
            # Never admitted by the review office (started by someone else): replaced, and the
            # refiled run records it.
            await client.get_workflow_handle(rid, run_id=previous.run_id).terminate(
                reason=f"not a genuine review (no seal of the review office): superseded by {lab}'s signed disclosure"
            )
            ended = await describe_or_none(client, rid)
            if ended is not None:
                review = review.model_copy(update={"earlier_run": await _earlier_run(client, rid, ended)})
        elif previous.status in ENDED_WITHOUT_OUTCOME and (
            genuine is False or stage not in (Stage.RELEASING, Stage.RELEASED)
        ):
            # Terminated (by an operator or the server), failed or timed out before any partner could
            # have been granted access: closed, and the refile records it.
            review = review.model_copy(update={"earlier_run": await _earlier_run(client, rid, previous)})
        elif genuine is False:
            pass  # a closed run the review office never admitted: nothing was reviewed
        elif stage != Stage.WITHDRAWN:
            raise DuplicateDisclosure(
                f"{disclosure.lab} {disclosure.model_name} {disclosure.model_version} was already reviewed "
                f"({rid}, {stage or previous.status.name}); disclose a new version"
            )
    attrs = TypedSearchAttributes(
        [
            SearchAttributePair(sa.REVIEW_STAGE, Stage.DISCLOSED.value),
            SearchAttributePair(sa.LAB, disclosure.lab),
            SearchAttributePair(sa.MODEL_NAME, disclosure.model_name),
            SearchAttributePair(sa.POLICY_VERSION, policy.version),
        ]
    )
    filing = Filing(
        sender=signer.party,
        disclosure_sha256=disclosure_digest(review.disclosure),
        policy_name=policy.name,
        policy_version=policy.version,
        signed_at=datetime.now(UTC),
    )
    # The policy goes by name and version only: the review office runs its own copy.
    review = review.model_copy(update={"filing": signer.sign(rid, DISCLOSE, filing), "policy": None})
    try:
        await client.start_workflow(
            WORKFLOW_TYPE,
            review,
            id=rid,
            task_queue=REVIEW_TASK_QUEUE,
            search_attributes=attrs,
            # A withdrawn review may be refiled under the same id with a new clock;
            # a running one is never replaced.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            memo={"model_version": disclosure.model_version},  # for `list` (no search attribute left to spare)
            static_summary=f"{disclosure.lab} {disclosure.model_name} {disclosure.model_version}",
            static_details=(
                f"lab: {disclosure.lab}\n\nmodel: {disclosure.model_name} {disclosure.model_version}\n\n"
                f"policy: {policy.version} (review window {describe(policy.review_window)})\n\n"
                f"partners: {len(disclosure.partners)}"
            ),
        )
    except WorkflowAlreadyStartedError:
        raise DuplicateDisclosure(f"review {rid} is already open; withdraw it before refiling") from None
    return rid


SEAL_WAIT = 10.0  # seconds a just-started review is given to be admitted before it counts as a squatter


def reader_anchors() -> TrustAnchors | None:
    try:
        return KeyDirectory().trust_anchors()
    except KeyProblem:
        return None


def _sealed(description: WorkflowExecutionDescription, anchors: TrustAnchors | None) -> bool | None:
    """Whether this run carries the review office's seal (None: this client has no anchors to tell)."""
    if anchors is None:
        return None
    seal = description.typed_search_attributes.get(sa.GENUINE_SEAL)
    return seal_verifies(anchors, REVIEW_OFFICE, description.id, description.run_id, seal)


async def _sealed_soon(
    client: Client, review_id: str, anchors: TrustAnchors | None
) -> WorkflowExecutionDescription | None:
    try:
        return await until(
            lambda: describe_or_none(client, review_id),
            lambda d: d is None or d.status != WorkflowExecutionStatus.RUNNING or bool(_sealed(d, anchors)),
            timeout=SEAL_WAIT,
            interval=0.2,
        )
    except StillWaiting as e:
        return e.last


async def _earlier_run(client: Client, rid: str, d: WorkflowExecutionDescription) -> EarlierRun:
    """What the refile records about the run before it: how and when it ended, and why if it was told."""
    reason = ""
    handle = client.get_workflow_handle(rid, run_id=d.run_id)
    async for event in handle.fetch_history_events(event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT):
        if event.HasField("workflow_execution_terminated_event_attributes"):
            attrs = event.workflow_execution_terminated_event_attributes
            reason = attrs.reason or f"terminated by {attrs.identity or 'someone'} without a reason"
    return EarlierRun(
        run_id=d.run_id,
        status=d.status.name if d.status else "UNKNOWN",
        stage=d.typed_search_attributes.get(sa.REVIEW_STAGE),
        closed_at=d.close_time,
        reason=reason[:1000],
    )


async def close(client: Client, review_id: str, reason: str) -> str:
    """An operator closes a review that cannot go on (a run stuck on a workflow task that keeps
    failing, for one): the run is terminated with `reason`, which its history records with the
    operator's identity. The lab may then refile (unless the release had begun). Returns the run id."""
    reason = reason.strip()
    if not reason or len(reason) > 1000:
        raise Refused("close: a reason of 1 to 1000 characters is required (it is recorded)")
    d = await describe_or_none(client, review_id)
    if d is None or d.workflow_type != WORKFLOW_TYPE:
        raise UnknownReview(f"no review with id {review_id!r}")
    if d.status != WorkflowExecutionStatus.RUNNING:
        raise Rejected(f"{review_id}: already closed ({d.status.name if d.status else 'unknown'}); nothing to do")
    await client.get_workflow_handle(review_id, run_id=d.run_id).terminate(reason=f"closed by an operator: {reason}")
    return d.run_id


def admissible(disclosure: Disclosure, policy: Policy, public_keys: PublicKeyring) -> ReviewInput:
    """The review's input, if the door admits it; else `Refused` (nothing was started).

    The disclosure must read back as itself (as the workflow will decode it: a model made with
    `model_copy` may carry what validation would refuse), name only the policy's evaluations, and
    plan a release that is not already past (a day's grace for time zones)."""
    disclosure = round_trips(disclosure, "disclosure", max_bytes=MAX_FILE_BYTES)
    problem = policy.unknown_evaluations(disclosure.evaluations)
    if problem:
        raise Refused(f"disclosure: {problem}")
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    if disclosure.intended_release_date < yesterday:
        raise Refused(
            f"disclosure: intended_release_date {disclosure.intended_release_date} is in the past "
            "(a review comes before the release)"
        )
    # (`public_keys` is no longer part of the input: a review loads them from the review office.)
    review = ReviewInput(review_id=review_id_for(disclosure), disclosure=disclosure, policy=policy)
    # The whole start input, as the SDK will carry it (well under Temporal's 2 MB payload limit).
    return round_trips(review, "review input", max_bytes=MAX_FILE_BYTES + 64 * 1024)


async def status(client: Client, review_id: str, *, with_earlier_runs: bool = False) -> ReviewStatus:
    """A review's status: from the query while it runs, from its result once closed; with the earlier
    runs under its id when asked (one visibility query more: `status` asks, pollers do not)."""
    description = await describe_or_none(client, review_id)
    if description is None:
        raise UnknownReview(f"no review with id {review_id!r}")
    if description.workflow_type != WORKFLOW_TYPE:
        raise UnknownReview(f"{review_id} is not a review (it is a {description.workflow_type} workflow)")
    handle = client.get_workflow_handle(review_id, run_id=description.run_id, result_type=ReviewStatus)
    # Which run this is (`audit ID --run-id` reads it, or another), and the runs before it.
    run: dict[str, object] = {"run_id": description.run_id}
    if with_earlier_runs:
        run["earlier_runs"] = await earlier_runs(client, review_id, description.run_id)
    if description.status == WorkflowExecutionStatus.COMPLETED:
        return (await handle.result()).model_copy(update=run)
    if description.status != WorkflowExecutionStatus.RUNNING:
        raise UnknownReview(
            f"review {review_id} ended without an outcome: {description.status.name if description.status else '?'} "
            f"(run {description.run_id}; `frontier-review audit {review_id}` shows its record)"
        )
    return (
        await query_running(
            client, description, STATUS_QUERY, ReviewStatus, "review", f"frontier-review audit {review_id}"
        )
    ).model_copy(update=run)


async def list_reviews(
    client: Client,
    stage: str | None = None,
    limit: int | None = None,
    *,
    pending_agency: str | None = None,
    lab: str | None = None,
    review_id: str | None = None,
) -> AsyncIterator[ReviewSummary]:
    """Every run of every review (newest first) matching the filters; values are checked by the caller
    (a stage, an agency id, a lab or review id without quotes)."""
    query = f'WorkflowType = "{WORKFLOW_TYPE}"'
    if stage:
        # A run cut short (terminated, failed, cancelled) is not at the stage it last published.
        query += f' AND ReviewStage = "{stage}" AND ExecutionStatus IN ("Running", "Completed")'
    if pending_agency:
        query += f' AND PendingAgencies = "{pending_agency}" AND ExecutionStatus = "Running"'
    if lab:
        query += f' AND Lab = "{_unquoted(lab)}"'
    if review_id:
        query += f' AND WorkflowId = "{_unquoted(review_id)}"'
    anchors = reader_anchors()
    async for wf in client.list_workflows(query, limit=limit):
        attrs = wf.typed_search_attributes
        seal = attrs.get(sa.GENUINE_SEAL)
        genuine = None if anchors is None else seal_verifies(anchors, REVIEW_OFFICE, wf.id, wf.run_id, seal)
        yield ReviewSummary(
            review_id=wf.id,
            stage=attrs.get(sa.REVIEW_STAGE),
            lab=attrs.get(sa.LAB),
            model_name=attrs.get(sa.MODEL_NAME),
            covered=attrs.get(sa.COVERED),
            window_deadline=attrs.get(sa.WINDOW_DEADLINE),
            policy_version=attrs.get(sa.POLICY_VERSION),
            started_at=wf.start_time,
            closed_at=wf.close_time,
            genuine=genuine,
            run_id=wf.run_id,
            model_version=await _memo_text(wf, "model_version"),
            outcome=attrs.get(sa.OUTCOME),
            determined_by=attrs.get(sa.DETERMINED_BY),
            pending_agencies=(attrs.get(sa.PENDING_AGENCIES) or "").split(),
            status=wf.status.name if wf.status else None,
        )


async def earlier_runs(client: Client, review_id: str, current_run_id: str) -> list[RunRecord]:
    """The other runs under `review_id` (a refiled review's earlier runs) and how each ended."""
    return [r.as_run() async for r in list_reviews(client, review_id=review_id) if r.run_id != current_run_id]


async def _memo_text(wf, key: str) -> str | None:
    """A memo value if it is text (a memo the codec refused, or none, reads as nothing)."""
    try:
        value = await wf.memo_value(key, None)
    except Exception:  # noqa: BLE001  a memo this client cannot decode: the column stays empty
        return None
    return value if isinstance(value, str) else None


def _unquoted(value: str) -> str:
    if any(c in value for c in "\"'\\"):
        raise Refused(f"{value!r}: quotes and backslashes cannot be part of a visibility query")
    return value


# The one retry loop (api/sending.py) for a review: what it is called and where it stopped.
def _recipient(review_id: str) -> Recipient:
    return Recipient(
        review_id, WORKFLOW_TYPE, "review", UnknownReview, where=sa.REVIEW_STAGE, where_word="stage",
        refusals=(*OUR_REFUSALS, KEY_MISMATCH),
    )  # fmt: skip


async def send(
    client: Client, review_id: str, update: str, message: Message, signer: Signer, *, message_id: str | None = None
) -> Receipt:
    """Sign and send one message as an update; the review's receipt (the message as applied, and the
    stage after it). The message id is the update id, so a retry applies it once: `message_id` if
    given, else the message's own (the clients in api/agency.py derive one from the content,
    api/idempotency.py, so a command run again is the same message).

    Sent again through transient failures by the loop both halves share (api/sending.py), each
    attempt signed for the run the server names now: never valid in a later run (refiled, reset).
    A review that does not hold the sender's key (enrolled, or its key replaced, since the review
    loaded them) is asked to reload its keys, once. A message that came back "already applied"
    after one of our own attempts got through answers with its receipt from the review's record."""
    if message_id is not None:
        message = message.model_copy(update={"message_id": check_message_id(message_id)})
    # A message that would not read back as itself in the workflow is `Refused` before anything is sent.
    message = round_trips(message, update, max_bytes=MAX_MESSAGE_BYTES)

    async def attempt() -> Receipt:
        current = await describe_or_none(client, review_id)
        if current is None:
            raise UnknownReview(f"no review with id {review_id!r}")
        signed = signer.sign(review_id, update, message, run_id=current.run_id)
        handle: WorkflowHandle = client.get_workflow_handle(review_id, run_id=current.run_id)
        return await handle.execute_update(update, signed, id=signed.message_id, result_type=Receipt)

    async def already_applied(_: ApplicationError, resent: bool) -> Receipt | None:
        return await receipt(client, review_id, message.message_id) if resent else None

    return await deliver(
        client, _recipient(review_id), message, attempt, already_applied, lambda r: _key_not_held(r, signer)
    )


def _key_not_held(cause: ApplicationError, signer: Signer) -> bool:
    """The review does not hold the key this message was signed with: the sender is not in its
    keyring at all, or it holds another key for the sender (the detail of its refusal)."""
    if cause.type == UNKNOWN_SIGNER:
        return True
    return cause.type == KEY_MISMATCH and bool(cause.details) and cause.details[0] != signer.public_key_b64()


async def receipt(client: Client, review_id: str, message_id: str) -> Receipt:
    """The receipt of a message the review applied earlier (a retry of ours met its own first
    attempt), from the review's record."""
    s = await status(client, review_id)
    applied = next((m for m in s.applied if m.message_id == message_id), None)
    if applied is None:
        raise Rejected(f"{review_id}: message {message_id} was applied, but the record does not name it")
    return Receipt(
        review_id=review_id, update=applied.update, message_id=message_id, sender=applied.sender,
        applied_at=applied.at, stage_before=applied.stage, stage=s.stage, outcome=s.outcome,
        pending_agencies=s.pending_agencies,
    )  # fmt: skip
