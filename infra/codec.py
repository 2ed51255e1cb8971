"""Payload encryption: every payload (inputs, results, updates, queries, memo, summaries,
details, failure messages) is sealed with AES-256-GCM before it leaves the process.

The key id travels in the payload's metadata, so keys rotate: new payloads use the
keyring's current key, and any key still in the keyring decodes old histories.

A payload worth it is compressed (zlib) before it is sealed: the content is JSON, which the
compression shrinks by about a third (the recorded review histories: 19.9 KB of payloads become
12.6 KB), and what the server stores, sends and indexes for a history follows its bytes. The
compression is named in the payload's metadata and bound into the seal (its authenticated data),
so a sealed payload cannot be relabelled as compressed or not; a payload that would open to more
than MAX_OPENED bytes is refused, not inflated. Payloads sealed before compression existed open as
they always did.
Search attributes are not payloads and stay plaintext: nothing classified goes in one.

Fail closed. Anyone with namespace access can put a payload of their choosing into a history
(start a workflow, send an update, complete an activity by id) with the default converter, i.e.
unsealed. Decoding passes only what this codec sealed (and whose content is JSON or null), the
SDK's own patch markers and null payloads; anything else is *refused*: it is replaced by a fixed
marker, `{"refused_payload": "<why>"}`, that carries none of the sender's bytes. What a refused
payload does to a workflow (docs: README "Threat model"):

- an update or query argument no longer matches its type: the update is rejected by the SDK
  before any validator runs, nothing is written (the sender sees "Failed decoding arguments");
- a signal argument: the SDK drops the signal (a warning in the worker's log);
- an activity result the workflow acts on is read untyped and must carry its producer's signature
  (domain/attestation.py): the marker is an unverifiable result, recorded as such in the status
  and the history and treated like silence from that party, never as an answer;
- a start input: the run cannot decode its input and its first workflow task fails, over and over,
  with "Failed decoding arguments" in the history (a watcher sees why it is stuck); it never does
  anything, and a genuine disclosure of the same model replaces it.

`decrypt` (the codec server's and the tests' direct use) still raises `CodecError` for a payload
under a key this keyring lacks, so an operator with the wrong keys is told so.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from pydantic_core import from_json
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from domain.attestation import REFUSED
from infra.keys import PayloadKeyring

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
COMPRESSION = "encryption-compression"
ZLIB = b"zlib"
# Smaller payloads gain too little from compression for the CPU it costs.
COMPRESS_FROM = 256
# Far above Temporal's own payload limits (2 MB by default): a sealed payload that opens larger
# was not made by this codec.
MAX_OPENED = 8 * 1024 * 1024
NONCE_BYTES = 12
UNKNOWN_COMPRESSION = "sealed with a compression this installation does not use"
BAD_COMPRESSION = "sealed content does not decompress, or opens larger than any payload"
JSON = b"json/plain"
JSON_PROTOBUF = b"json/protobuf"  # the SDK's own messages (the Web UI's workflow metadata query)
NULL = b"binary/null"
# What the converter of this project writes inside the seal: nothing else is accepted out of it.
SEALED_ENCODINGS = (JSON, JSON_PROTOBUF, NULL)


class CodecError(Exception):
    """Why a sealed payload cannot be opened: the message for an operator (it may name the key id),
    and `refusal`, a fixed text for the refusal marker (none of the sender's bytes)."""

    def __init__(self, message: str, refusal: str = "sealed under a key this installation does not hold, or altered"):
        super().__init__(message)
        self.refusal = refusal


def refused(reason: str) -> Payload:
    """The marker a refused payload becomes: fixed text, none of the sender's bytes."""
    return Payload(metadata={"encoding": JSON}, data=json.dumps({REFUSED: reason}).encode())


# A patch marker is a short id and a flag: anything longer is not one, and is never parsed as one.
PATCH_MARKER_AT_MOST = 1024
NOT_JSON = object()


def _json(data: bytes) -> Any:
    """`data` parsed as JSON by the parser the converter uses after the codec (pydantic's), so what
    passes here also converts; NOT_JSON when it does not parse. Never raises. Nesting deeper than a
    parser's recursion limit was RecursionError in `json.loads` (a 200 KB "[[[...]]]", or 500 bytes
    of it compressed), which escaped the codec and failed the workflow task of every workflow it
    reached, at every retry; and nesting that `json.loads` took but pydantic did not (200 levels)
    failed the task the same way once the converter met it in an activity result. Both wedged a
    review for good (red team, this session)."""
    try:
        return from_json(data)
    except (ValueError, RecursionError):
        return NOT_JSON


def _is_patch_marker(payload: Payload) -> bool:
    """The SDK writes `workflow.patched` markers itself, outside the codec: `{"id": ..., "deprecated": ...}`.
    Passing them is harmless: no workflow reads one as an argument or a result it acts on."""
    if payload.metadata.get("encoding") != JSON or len(payload.metadata) != 1:
        return False
    if len(payload.data) > PATCH_MARKER_AT_MOST:
        return False
    value = _json(payload.data)
    return isinstance(value, dict) and set(value) == {"id", "deprecated"} and isinstance(value["id"], str)


class EncryptionCodec(PayloadCodec):
    def __init__(self, keyring: PayloadKeyring) -> None:
        self.keyring = keyring
        self._ciphers = {key_id: AESGCM(keyring.key(key_id)) for key_id in keyring.keys}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._opened(p) for p in payloads]

    def _opened(self, payload: Payload) -> Payload:
        """`open`, and a refusal for anything it did not foresee: decoding runs on every payload of
        every activation, so a payload that made it raise would fail that workflow's task forever."""
        try:
            return self.open(payload)
        except Exception:
            return refused("could not be read")

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.keyring.current
        nonce = os.urandom(NONCE_BYTES)
        plain = payload.SerializeToString()
        metadata = {"encoding": ENCODING, KEY_ID: key_id.encode()}
        if len(plain) >= COMPRESS_FROM:
            packed = zlib.compress(plain, 6)
            if len(packed) < len(plain):
                plain, metadata[COMPRESSION] = packed, ZLIB
        # The key id and the compression are authenticated too: a payload cannot be relabelled.
        sealed = self._ciphers[key_id].encrypt(nonce, plain, _bound(key_id, metadata.get(COMPRESSION)))
        return Payload(metadata=metadata, data=nonce + sealed)

    def open(self, payload: Payload) -> Payload:
        """Fail closed: the sealed payload's content, a null or a patch marker as is, or the refusal marker."""
        encoding = payload.metadata.get("encoding")
        if encoding == NULL and not payload.data:
            return payload
        if encoding != ENCODING:
            if _is_patch_marker(payload):
                return payload
            return refused("not sealed by this installation's payload codec")
        try:
            plain = self.decrypt(payload)
        except CodecError as e:
            return refused(e.refusal)
        inner = plain.metadata.get("encoding")
        if inner not in SEALED_ENCODINGS:
            return refused("sealed content is not in this project's encoding")
        if inner in (JSON, JSON_PROTOBUF) and _json(plain.data) is NOT_JSON:
            return refused("sealed content is not JSON")
        return plain

    def decrypt(self, payload: Payload) -> Payload:
        """The sealed payload's content (an unsealed one as is); CodecError if this keyring cannot open it."""
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecError(f"payload encrypted with key {key_id!r}, which is not in the keyring")
        compression = payload.metadata.get(COMPRESSION)
        if compression not in (None, ZLIB):
            raise CodecError(f"payload under key {key_id!r} names an unknown compression", UNKNOWN_COMPRESSION)
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], _bound(key_id, compression))
        except (InvalidTag, ValueError):
            raise CodecError(f"payload under key {key_id!r} failed authentication") from None
        if compression == ZLIB:
            plain = _inflate(plain, key_id)
        try:
            return Payload.FromString(plain)
        except DecodeError:
            raise CodecError(f"payload under key {key_id!r} failed authentication") from None


def _bound(key_id: str, compression: bytes | None) -> bytes:
    """What the seal authenticates beside the content: the key id (as before compression), and the
    compression when there is one."""
    return key_id.encode() + (b"+" + compression if compression else b"")


def _inflate(packed: bytes, key_id: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        plain = inflater.decompress(packed, MAX_OPENED)
    except zlib.error:
        raise CodecError(f"payload under key {key_id!r} does not decompress", BAD_COMPRESSION) from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise CodecError(
            f"payload under key {key_id!r} opens to more than {MAX_OPENED} bytes, or is cut short", BAD_COMPRESSION
        )
    return plain
