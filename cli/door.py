"""What every command checks before it connects: input files through the door (domain/inputs.py),
the sender's key, the caller's message id. Shared by the review and clearinghouse commands, so
neither command module imports the other."""

from __future__ import annotations

import argparse

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from api.idempotency import check_message_id
from domain.disclosure import Disclosure
from domain.inputs import Refused, load_model, read_file
from domain.signatures import Signer
from domain.vulnerability import VulnerabilityReport
from infra.keys import KeyDirectory


class BadInput(Refused):
    """Input that never reached Temporal: exit 2, nothing recorded."""


def load_disclosure(path: str) -> Disclosure:
    """A disclosure file through the door (domain/inputs.py): UTF-8 JSON, no duplicate keys, finite
    numbers, at most 256 KiB, valid as a Disclosure."""
    return load_model(Disclosure, path, "disclosure")


def load_vulnerability(path: str) -> VulnerabilityReport:
    """A vulnerability report file through the door (domain/inputs.py); `schema report` describes it."""
    return load_model(VulnerabilityReport, path, "vulnerability report")


def signer_for(args: argparse.Namespace, party: str) -> Signer:
    """The sender's private key: --key FILE, else the party's key in the key directory."""
    if args.key is None:
        return KeyDirectory().signer(party)
    data = read_file(args.key, max_bytes=16 * 1024)
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise BadInput(f"--key {args.key}: not a readable private key ({str(e).splitlines()[0]})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BadInput(f"--key {args.key}: not an Ed25519 private key")
    return Signer(party, key)


def message_id(args: argparse.Namespace) -> str | None:
    """--message-id: the caller's idempotency key (else derived from the message's content)."""
    if getattr(args, "message_id", None) is None:
        return None
    try:
        return check_message_id(args.message_id)
    except ValueError as e:
        raise BadInput(f"--message-id: {e}") from None
