"""Signed messages: who sent an update, proven with Ed25519.

A party signs the canonical bytes of (workflow id, update name, message without its signature);
the message names the run it is signed for (`run_id`, read from the server by the sender's
client), so the signature covers the run too. The workflow holds the public keyring (the review's
from the review office, Treasury's clearinghouse and cases from Treasury's own key directory,
through a signed activity result), so a validator verifies deterministically, inside the
workflow, with no I/O. Binding the workflow id (the review's, the case's, `clearinghouse`), the
run and the update name means a signature cannot be replayed into another review, case or run,
or as another kind of message; the message id (unique per workflow) stops replays within one.
"""

from __future__ import annotations

import base64
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from domain.messages import Message

# party id -> raw Ed25519 public key, base64
PublicKeyring = dict[str, str]

# ApplicationError types of the rejections a sender may act on (nothing was recorded either way):
UNKNOWN_SIGNER = "UnknownSigner"  # no key for the sender: the workflow's keyring may be refreshed
KEYS_LOADING = "KeysLoading"  # the workflow has not loaded its keyring yet: send again shortly
STALE_RUN = "StaleRun"  # signed for another run of the workflow: the sender's client signs again for this one


def canonical_bytes(review_id: str, update: str, message: Message) -> bytes:
    body = message.model_dump(mode="json", exclude={"signature"})
    return json.dumps(
        {"review_id": review_id, "update": update, "message": body},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode()


def signature_problem(
    keyring: PublicKeyring, review_id: str, update: str, message: Message, *, target: str = "review"
) -> str | None:
    """Why the message's signature is not acceptable, or None if it verifies. `review_id` is the
    id of the workflow it is sent to; `target` names that kind of workflow in the reason."""
    key_b64 = keyring.get(message.sender)
    if key_b64 is None:
        return f"unknown signer {message.sender!r}: no public key in this {target}'s keyring"
    if not message.signature:
        return f"message from {message.sender} is not signed"
    try:
        public_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(key_b64))
        public_key.verify(base64.b64decode(message.signature), canonical_bytes(review_id, update, message))
    except (InvalidSignature, ValueError):
        return (
            f"signature does not verify for {message.sender} "
            f"(forged, altered, or signed for another {target} or as another kind of message)"
        )
    return None


class Signer:
    """A party's private signing key."""

    def __init__(self, party: str, private_key: Ed25519PrivateKey) -> None:
        self.party = party
        self._key = private_key

    def sign(self, review_id: str, update: str, message: Message, run_id: str | None = None) -> Message:
        """Sign for this workflow, update and (given `run_id`) run; the run id is part of the message."""
        if message.sender != self.party:
            raise ValueError(f"{self.party}'s key cannot sign a message from {message.sender!r}")
        if run_id is not None:
            message = message.model_copy(update={"run_id": run_id})
        signature = self._key.sign(canonical_bytes(review_id, update, message))
        return message.model_copy(update={"signature": base64.b64encode(signature).decode()})

    def public_key_b64(self) -> str:
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()
