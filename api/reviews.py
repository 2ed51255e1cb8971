"""Operator calls: disclose (start a review), status, list; and the one way messages are sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import DuplicateDisclosure, Rejected, UnknownReview
from api.server import describe_or_none, workflow_not_ready
from domain import search_attributes as sa
from domain.agencies import REVIEW_TASK_QUEUE
from domain.disclosure import Disclosure
from domain.ids import review_id_for
from domain.messages import Message
from domain.policy import Policy, describe
from domain.review import STATUS_QUERY, WORKFLOW_TYPE, ReviewInput
from domain.signatures import KEYS_LOADING, STALE_RUN, PublicKeyring, Signer
from domain.status import ReviewStatus, Stage

NOT_READY_RETRIES = 6


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


async def disclose(client: Client, disclosure: Disclosure, policy: Policy, public_keys: PublicKeyring) -> str:
    """Start a review; one open review per lab+model+version. Returns the review id.

    `public_keys` is recorded in the review's input for the record (and for reviews started
    before keys were loaded by the review itself); a review verifies messages with the keys it
    loads from the review office's key directory when it starts."""
    rid = review_id_for(disclosure)
    previous = await describe_or_none(client, rid)
    if previous is not None:
        stage = previous.typed_search_attributes.get(sa.REVIEW_STAGE)
        if previous.status == WorkflowExecutionStatus.RUNNING:
            raise DuplicateDisclosure(f"review {rid} is already open (stage {stage}); withdraw it before refiling")
        if stage != Stage.WITHDRAWN:
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
    try:
        await client.start_workflow(
            WORKFLOW_TYPE,
            ReviewInput(review_id=rid, disclosure=disclosure, policy=policy, public_keys=public_keys),
            id=rid,
            task_queue=REVIEW_TASK_QUEUE,
            search_attributes=attrs,
            # A withdrawn review may be refiled under the same id with a new clock;
            # a running one is never replaced.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
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


async def status(client: Client, review_id: str) -> ReviewStatus:
    """A review's status: from the query while it runs, from its result once closed."""
    description = await describe_or_none(client, review_id)
    if description is None:
        raise UnknownReview(f"no review with id {review_id!r}")
    handle = client.get_workflow_handle(review_id, result_type=ReviewStatus)
    if description.status == WorkflowExecutionStatus.COMPLETED:
        return await handle.result()
    if description.status != WorkflowExecutionStatus.RUNNING:
        raise UnknownReview(f"review {review_id} ended abnormally: {description.status.name}")
    return await handle.query(STATUS_QUERY, result_type=ReviewStatus)


async def list_reviews(
    client: Client, stage: str | None = None, limit: int | None = None
) -> AsyncIterator[ReviewSummary]:
    query = f'WorkflowType = "{WORKFLOW_TYPE}"'
    if stage:
        query += f' AND ReviewStage = "{stage}"'
    async for wf in client.list_workflows(query, limit=limit):
        attrs = wf.typed_search_attributes
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
        )


async def send(client: Client, review_id: str, update: str, message: Message, signer: Signer) -> ReviewStatus:
    """Sign and send one message as an update. The message id is the update id: a retry applies once.

    The signature covers the review's current run, which the server names (describe): a message
    can never be replayed into a later run (refiled, reset). If the run changes under the message,
    it is signed again for the new one."""
    for attempt in range(NOT_READY_RETRIES + 1):
        current = await describe_or_none(client, review_id)
        if current is None:
            raise UnknownReview(f"no review with id {review_id!r}")
        signed = signer.sign(review_id, update, message, run_id=current.run_id)
        handle: WorkflowHandle = client.get_workflow_handle(review_id, run_id=current.run_id)
        try:
            return await handle.execute_update(update, signed, id=signed.message_id, result_type=ReviewStatus)
        except WorkflowUpdateFailedError as e:
            cause = e.cause
            # A review that has just started is loading its keyring (nothing was recorded), or the
            # run changed under the message: send again, signed for the run the server names.
            if getattr(cause, "type", None) in (KEYS_LOADING, STALE_RUN) and attempt < NOT_READY_RETRIES:
                await asyncio.sleep(0.1 * 2**attempt)
                continue
            raise Rejected(f"{review_id}: {getattr(cause, 'message', None) or cause}") from None
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                closed = await describe_or_none(client, review_id)
                if closed is None:
                    raise UnknownReview(f"no review with id {review_id!r}") from None
                stage = closed.typed_search_attributes.get(sa.REVIEW_STAGE) or closed.status.name
                raise Rejected(f"{review_id}: the review is closed (stage {stage}); nothing was recorded") from None
            # The server refuses an update whose workflow task was failed under it, e.g.
            # an UnhandledCommand race with an activity completing at the same moment. The
            # message was not applied; sending it again (same id) is safe.
            if not workflow_not_ready(e) or attempt == NOT_READY_RETRIES:
                raise
            await asyncio.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")
