"""How a workflow turns a bad message away, and where it gets the keys it checks them with.

Validators raise, never change state: a rejected update writes nothing to history and
the sender gets the reason back as `WorkflowUpdateFailedError`. The clearinghouse's and the
cases' keyring is Treasury's signed answer (`TreasuryKeyring`), never one completed by id.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from domain.attestation import Unverifiable, UnverifiedResult
from domain.clearinghouse import ATTESTED_KEYRING, LOAD_PUBLIC_KEYS
from domain.messages import Message
from domain.signatures import KEYS_LOADING, STALE_RUN, UNKNOWN_SIGNER, PublicKeyring, signature_problem
from domain.vulnerability import TREASURY
from workflows.attested import attested

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
    """The first version's load (kept for the histories it recorded): the parties' public keys, from
    Treasury's key directory, an activity on the workflow's own queue, its result believed as it came.
    Anyone could complete it by id with a keyring of their own; `TreasuryKeyring` replaces it."""
    return await workflow.execute_activity(
        LOAD_PUBLIC_KEYS,
        result_type=dict[str, str],
        start_to_close_timeout=timedelta(seconds=30),
        summary="load the parties' public keys (Treasury's key directory)",
    )


# A first load that got no verifiable answer (Treasury's worker away while someone completes the
# activity by id, or a rogue poller answers) is asked again after this pause, doubled each time up
# to the cap: the workflow waits for Treasury's own keyring, never goes on with anyone else's.
KEYRING_RETRY = timedelta(minutes=1)
KEYRING_RETRY_CAP = timedelta(hours=1)
# The refused results a workflow keeps and shows (the oldest dropped): an attacker's retries cannot
# grow its state.
UNVERIFIED_KEPT = 50


def _keyring(result: object) -> PublicKeyring:
    if not isinstance(result, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in result.items()):
        raise Unverifiable("Treasury's keyring is not {party: key}")
    return dict(result)


class TreasuryKeyring:
    """The parties' public keys, as Treasury signs them (`load_public_keys` on Treasury's worker, on
    the workflow's own queue), verified against this worker's trust anchors (workflows/attested.py).
    A keyring that does not verify is recorded in `refused` and
    never used. Create it in `@workflow.init`."""

    def __init__(self, refused: list[UnverifiedResult]) -> None:
        self.refused = refused
        self.loads = 0  # this run's loads: each one's activity id is its own
        # Asked as a local activity of the workflow's own worker (Treasury's, which runs the cases):
        # set by a workflow whose run took that path (`workflow.patched`), never by a message.
        # Only the first load of a run: a reload is asked from an update handler, and a local activity
        # there keeps the update's workflow task open while it runs, a task the server dropped (the
        # update aborted) under a stream of completions by id against the workflow (seen here).
        self.local = False

    def attested(self) -> bool:
        """Whether this run verifies Treasury's signature (decided once per run, at its first load)."""
        return workflow.patched(ATTESTED_KEYRING)

    async def load(self) -> PublicKeyring:
        """The first keyring of a run that holds none: without Treasury's signature the workflow has
        nothing to verify messages with, so it asks again, after a pause, until Treasury answers."""
        if not self.attested():
            return await load_public_keys()
        pause = KEYRING_RETRY
        while True:
            try:
                return await self._ask("load the parties' public keys (Treasury's key directory)", local=self.local)
            except Unverifiable:
                workflow.logger.warning(
                    "no verifiable keyring from Treasury; asking again", extra={"after": str(pause)}
                )
                await workflow.sleep(pause, summary="ask Treasury for its keyring again")
                pause = min(pause * 2, KEYRING_RETRY_CAP)

    async def reload(self, held: PublicKeyring) -> PublicKeyring:
        """A newer keyring (a party enrolled since): Treasury's, or, without a verifiable answer, the
        keyring held (recorded in `refused`; the sender may ask again)."""
        if not self.attested():
            return await load_public_keys()
        try:
            return await self._ask("reload the parties' public keys (Treasury's key directory)")
        except Unverifiable:
            return held

    async def _ask(self, summary: str, local: bool = False) -> PublicKeyring:
        self.loads += 1
        try:
            return await self._attested(summary, local)
        finally:
            del self.refused[:-UNVERIFIED_KEPT]

    async def _attested(self, summary: str, local: bool) -> PublicKeyring:
        return await attested(
            LOAD_PUBLIC_KEYS,
            party=TREASURY,
            activity_id="treasury-keys" if self.loads == 1 else f"treasury-keys-{self.loads}",
            parse=_keyring,
            refused=self.refused,
            start_to_close_timeout=timedelta(seconds=30),
            summary=summary,
            local=local,
        )
