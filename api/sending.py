"""Sending one signed message into a workflow, until it is applied or refused for a reason: the
one retry loop of both halves (a review's updates, a case's, a report to the clearinghouse).

The message id is the update id, so sending the same message again applies it once: every
attempt goes under the same id. What is sent again (for up to PATIENCE seconds, with exponential
backoff and full jitter, so a burst of senders spreads out instead of retrying in step):

- the server unreachable, restarting, cutting the call, over its cap on updates in flight, or the
  workflow task under the update failed (api/server.py `transient`);
- the update's own call timing out before the workflow answered;
- a workflow's refusals that recorded nothing and pass: still loading its keyring, continuing as
  new, or the message signed for another run (the caller's `attempt` signs again for the run the
  server names).

A sender whose key the workflow does not hold (enrolled, or its key replaced, since the workflow
loaded its keys) has the workflow reload them (`refresh_keys`), once, and the message goes again.
After PATIENCE, `Unavailable`: one line saying the message may not have been applied and how to
send it again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import Rejected, ReviewError, Unavailable
from api.server import describe_or_none, transient
from domain.clearinghouse import CONTINUING_AS_NEW, REFRESH_KEYS, REFRESH_TOO_SOON
from domain.messages import Message
from domain.signatures import KEYS_LOADING, STALE_RUN, UNKNOWN_SIGNER
from domain.vulnerability import is_party

T = TypeVar("T")

# How long one message keeps being sent again through transient failures (seconds).
PATIENCE = 60.0
# The longest pause between two attempts (seconds).
MAX_DELAY = 2.0
# Refusals that recorded nothing and pass: the same message goes again.
TRANSIENT_REFUSALS = (KEYS_LOADING, STALE_RUN, CONTINUING_AS_NEW)
# The refusals our workflows make (workflows/messages.py): anything else is not our workflow speaking
# (e.g. the SDK's "update handler not found" from a workflow of another type).
OUR_REFUSALS = ("Rejected", "AlreadyApplied", REFRESH_TOO_SOON, UNKNOWN_SIGNER, *TRANSIENT_REFUSALS)


@dataclass(frozen=True)
class Recipient:
    """The workflow a message goes to, and how to speak of it in a one-line error."""

    workflow_id: str
    workflow_type: str
    noun: str  # "review", "case", "clearinghouse"
    unknown: type[ReviewError]  # raised when there is no such workflow
    where: SearchAttributeKey | None = None  # the attribute saying where a closed one stopped
    where_word: str = "status"  # what that attribute is called in a message ("stage", "status")
    refusals: tuple[str, ...] = OUR_REFUSALS  # the ApplicationError types the workflow refuses with


# What to answer when the workflow says the message was applied before: (the refusal, whether this
# call sent it before) -> the answer, or None to refuse.
AlreadyApplied = Callable[[ApplicationError, bool], Awaitable[T | None]]


async def deliver(
    client: Client,
    to: Recipient,
    message: Message,
    attempt: Callable[[], Awaitable[T]],
    already_applied: AlreadyApplied | None = None,
    key_not_held: Callable[[ApplicationError], bool] | None = None,
) -> T:
    """`attempt()` (one signed send of `message`) until it is applied, refused, or PATIENCE runs out.
    `key_not_held(refusal)`: the workflow refused because it does not hold the key the message was
    signed with (then it is asked to reload its keys, once); by default, an unknown signer that is
    an enrolled kind of party."""
    key_not_held = key_not_held or (lambda r: r.type == UNKNOWN_SIGNER and is_party(message.sender))
    loop = asyncio.get_running_loop()
    give_up = loop.time() + PATIENCE
    delay = 0.1
    resent = refreshed = False
    while True:
        try:
            return await attempt()
        except WorkflowUpdateFailedError as e:
            cause = e.cause
            kind = cause.type if isinstance(cause, ApplicationError) else None
            if isinstance(cause, ApplicationError) and not refreshed and key_not_held(cause):
                refreshed = True
                await refresh_keys(client, to.workflow_id, message.sender, give_up)
                continue
            if kind == "AlreadyApplied" and already_applied is not None and isinstance(cause, ApplicationError):
                answer = await already_applied(cause, resent)
                if answer is not None:
                    return answer
            if kind not in TRANSIENT_REFUSALS or loop.time() > give_up:
                if kind not in to.refusals:
                    await _not_of_this_type(client, to)
                raise Rejected(f"{to.workflow_id}: {getattr(cause, 'message', None) or cause}") from None
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            if loop.time() > give_up:
                raise _unavailable(to, message, "the update timed out") from None
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                raise await _closed(client, to) from None
            if not transient(e):
                raise
            if loop.time() > give_up:
                raise _unavailable(to, message, e.message) from None
        resent = True
        # Full jitter: under a burst, senders that ask again at once keep the workflow's updates
        # aborting (a busy server and worker never finish a task before the next wave); spread out,
        # they drain.
        await asyncio.sleep(random.uniform(0, delay))
        delay = min(delay * 2, MAX_DELAY)


async def _not_of_this_type(client: Client, to: Recipient) -> None:
    """A refusal that is not our workflow's own: the id may name a workflow of another type."""
    d = await describe_or_none(client, to.workflow_id)
    if d is not None and d.workflow_type != to.workflow_type:
        raise to.unknown(f"{to.workflow_id} is not a {to.noun} (it is a {d.workflow_type} workflow)")


async def _closed(client: Client, to: Recipient) -> ReviewError:
    """The error for an update the server refused as NOT_FOUND: no such workflow, or it is closed."""
    closed = await describe_or_none(client, to.workflow_id)
    if closed is None:
        return to.unknown(f"no {to.noun} with id {to.workflow_id!r}")
    where = (closed.typed_search_attributes.get(to.where) if to.where else None) or closed.status.name
    return Rejected(f"{to.workflow_id}: the {to.noun} is closed ({to.where_word} {where}); nothing was recorded")


def _unavailable(to: Recipient, message: Message, why: str) -> Unavailable:
    return Unavailable(
        f"{to.workflow_id}: the Temporal server did not take message {message.message_id} within {PATIENCE:.0f} s "
        f"({why}); it may not have been applied: send it again with the same message id, it applies once"
    )


async def refresh_keys(client: Client, workflow_id: str, party: str, give_up: float) -> None:
    """Ask a workflow to reload the public keys (best effort: a refusal, e.g. the party already
    known by now, or the workflow continuing as new, changes nothing and the message goes again;
    so does a server that is away, which the message's own retries then meet). A workflow reloads
    at most every few seconds: a refusal for that is asked again."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            await client.get_workflow_handle(workflow_id).execute_update(REFRESH_KEYS, party, result_type=bool)
            return
        except WorkflowUpdateFailedError as e:
            cause = e.cause
            if not (isinstance(cause, ApplicationError) and cause.type == REFRESH_TOO_SOON) or loop.time() > give_up:
                return
        except RPCError as e:
            if not transient(e) or loop.time() > give_up:
                return
        await asyncio.sleep(1.0)
