"""Classified fields at rest: sealed with the payload keyring before they reach SQLite.

A sealed field is `sealed:<key id>:<base64(nonce + AES-256-GCM ciphertext)>`. The table, column
and row key are authenticated with it, so a sealed value cannot be moved to another row or
column and still open. The key id travels with the value: keys rotate as the codec's do (the
current key seals, any key in the keyring opens).

What is sealed: the NSA's briefing inbox (every standards verdict and rationale), Treasury's
notice outbox (subjects and bodies: the embargoed details of each case). Ids, kinds, sectors
and timestamps stay plain, so the records can still be queried and counted.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from infra.keys import KeyDirectory, PayloadKeyring

PREFIX = "sealed"
NONCE_BYTES = 12


class SealError(Exception):
    pass


class FieldSeal:
    def __init__(self, keyring: PayloadKeyring) -> None:
        self.keyring = keyring
        self._ciphers = {key_id: AESGCM(keyring.key(key_id)) for key_id in keyring.keys}

    @classmethod
    def from_key_directory(cls, keys: KeyDirectory | None = None) -> FieldSeal:
        return cls((keys or KeyDirectory()).payload_keyring())

    def seal(self, plain: str, *context: str) -> str:
        key_id = self.keyring.current
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, plain.encode(), _aad(key_id, context))
        return f"{PREFIX}:{key_id}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, value: str, *context: str) -> str:
        prefix, _, rest = value.partition(":")
        key_id, _, data = rest.partition(":")
        if prefix != PREFIX or key_id not in self._ciphers:
            raise SealError(f"not a value sealed with this keyring (key {key_id!r})")
        try:
            raw = base64.b64decode(data, validate=True)
            return self._ciphers[key_id].decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(key_id, context)).decode()
        except (binascii.Error, InvalidTag, ValueError):
            raise SealError("a sealed value failed authentication (altered, or moved from another row)") from None


def _aad(key_id: str, context: tuple[str, ...]) -> bytes:
    return "\x1f".join((key_id, *context)).encode()


def private_file(path: Path) -> None:
    """Create `path` readable by its owner only (0600), or tighten an existing one; its directory 0700
    when this creates it. SQLite gives its -wal and -shm files the database file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            os.chmod(companion, 0o600)
