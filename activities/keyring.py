"""Loading the parties' public keys: one body for the review office's worker (`load_review_keys`)
and Treasury's (`load_public_keys`), each reading its own key directory.

Workflows take the keys they verify messages with only from here (never from a start input or a
message); the result is recorded in the workflow's history, so replay needs no key directory.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.signatures import PublicKeyring
from infra.keys import KeyDirectory, KeyProblem, public_key_b64


def published_keyring(keys: KeyDirectory) -> PublicKeyring:
    """Every enrolled party's public key (base64), by party; a key that does not read is skipped and
    logged, so one bad entry never keeps the others out. A directory with no public keyring is an
    activity failure, retried until an operator fixes it."""
    try:
        published = keys.public_keys()
    except KeyProblem as e:
        raise ApplicationError(str(e), type="KeyProblem") from None
    keyring: PublicKeyring = {}
    for party, key in sorted(published.items()):
        try:
            keyring[party] = public_key_b64(key)
        except KeyProblem as e:
            activity.logger.warning("public key skipped", extra={"party": party, "reason": str(e)})
    return keyring
