"""How a workflow turns a bad message away.

Validators raise, never change state: a rejected update writes nothing to history and
the sender gets the reason back as `WorkflowUpdateFailedError`.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from domain.clearinghouse import LOAD_PUBLIC_KEYS
from domain.messages import Message
from domain.signatures import KEYS_LOADING, STALE_RUN, UNKNOWN_SIGNER, PublicKeyring, signature_problem

REJECTED = "Rejected"


def reject_unless(condition: bool, reason: str) -> None:
    if not condition:
        raise ApplicationError(reason, type=REJECTED, non_retryable=True)


def authenticate(
    keyring: PublicKeyring | None,
    workflow_id: str,
    update: str,
    message: Message,
    *,
    target: str,
    run_id: str | None = None,
) -> None:
    """Reject a message unless its sender's key, in `keyring`, signed it for this workflow and update.
    An unknown signer and a keyring not yet loaded get their own error types: the sender may have
    the keyring refreshed, or simply send again."""
    if keyring is None:
        raise ApplicationError(f"the {target} is loading its keyring; send again", type=KEYS_LOADING)
    if message.sender not in keyring:
        raise ApplicationError(
            f"unknown signer {message.sender!r}: no public key in this {target}'s keyring "
            "(enrol the party with `frontier-review keys add`)",
            type=UNKNOWN_SIGNER,
            non_retryable=True,
        )
    problem = signature_problem(keyring, workflow_id, update, message, target=target)
    reject_unless(problem is None, problem or "")
    if run_id is not None and message.run_id != run_id:
        # Genuine, but for another run (a withdrawn and refiled review, a reset, a continued run):
        # never applied here. The sender's own client signs it again for this run.
        raise ApplicationError(
            f"message {message.message_id} is signed for run {message.run_id or '(none)'} of this {target}, "
            f"not for its current run {run_id}",
            type=STALE_RUN,
            non_retryable=True,
        )


async def load_public_keys() -> PublicKeyring:
    """The parties' public keys, from Treasury's key directory: an activity on Treasury's worker (the
    workflow's own queue), its result recorded in history so that replay reads the same keys."""
    return await workflow.execute_activity(
        LOAD_PUBLIC_KEYS,
        result_type=dict[str, str],
        start_to_close_timeout=timedelta(seconds=30),
        summary="load the parties' public keys (Treasury's key directory)",
    )
