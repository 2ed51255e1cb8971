"""Payload encryption: every payload (inputs, results, updates, queries, memo, summaries,
details, failure messages) is sealed with AES-256-GCM before it leaves the process.

The key id travels in the payload's metadata, so keys rotate: new payloads use the
keyring's current key, and any key still in the keyring decodes old histories.
Search attributes are not payloads and stay plaintext: nothing classified goes in one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from infra.keys import PayloadKeyring

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12


class CodecError(Exception):
    pass


class EncryptionCodec(PayloadCodec):
    def __init__(self, keyring: PayloadKeyring) -> None:
        self.keyring = keyring
        self._ciphers = {key_id: AESGCM(keyring.key(key_id)) for key_id in keyring.keys}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.keyring.current
        nonce = os.urandom(NONCE_BYTES)
        # The key id is authenticated too: a payload cannot be relabelled to another key.
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode()
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecError(f"payload encrypted with key {key_id!r}, which is not in the keyring")
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], key_id.encode())
        except InvalidTag:
            raise CodecError(f"payload under key {key_id!r} failed authentication") from None
        return Payload.FromString(plain)
