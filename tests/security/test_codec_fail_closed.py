"""The payload codec opens only what it sealed: anything else becomes an inert marker."""

from __future__ import annotations

import json
import os
import zlib

from temporalio.api.common.v1 import Payload

from domain.attestation import is_refused
from infra.codec import COMPRESSION, ENCODING, KEY_ID, MAX_OPENED, NONCE_BYTES, ZLIB, CodecError, EncryptionCodec
from infra.keys import KeyDirectory, PayloadKeyring


def opened(codec: EncryptionCodec, payload: Payload) -> object:
    out = codec.open(payload)
    return json.loads(out.data) if out.data else None


def test_only_sealed_payloads_nulls_and_patch_markers_pass(keys: KeyDirectory) -> None:
    codec = EncryptionCodec(keys.payload_keyring())
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"nsa": "bWFsbG9yeQ=="}')
    assert is_refused(opened(codec, plain)) == "not sealed by this installation's payload codec"
    # What the codec sealed opens as it was.
    assert opened(codec, codec.encrypt(plain)) == {"nsa": "bWFsbG9yeQ=="}
    # A null (no data) and the SDK's own patch marker pass as they are.
    null = Payload(metadata={"encoding": b"binary/null"})
    assert codec.open(null) == null
    marker = Payload(metadata={"encoding": b"json/plain"}, data=b'{"id":"some-patch","deprecated":false}')
    assert codec.open(marker) == marker
    # A null carrying data, a marker with extra metadata: refused.
    assert is_refused(opened(codec, Payload(metadata={"encoding": b"binary/null"}, data=b"x")))
    assert is_refused(opened(codec, Payload(metadata={"encoding": b"json/plain", "x": b"1"}, data=marker.data)))
    # Sealed under a key this installation lacks, altered, or sealed around another encoding: refused.
    stranger = EncryptionCodec(PayloadKeyring.generate("k1"))
    assert is_refused(opened(codec, stranger.encrypt(plain)))
    sealed = codec.encrypt(plain)
    tampered = Payload(metadata=dict(sealed.metadata), data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    assert is_refused(opened(codec, tampered))
    metadata = codec.encrypt(Payload(metadata={"encoding": b"json/protobuf", "messageType": b"x"}, data=b"{}"))
    assert opened(codec, metadata) == {}, "the SDK's own messages (workflow metadata) open"
    protobuf = codec.encrypt(Payload(metadata={"encoding": b"binary/protobuf"}, data=b"\x08\x01"))
    assert is_refused(opened(codec, protobuf)) == "sealed content is not in this project's encoding"
    not_json = codec.encrypt(Payload(metadata={"encoding": b"json/plain"}, data=b"{nope"))
    assert is_refused(opened(codec, not_json)) == "sealed content is not JSON"
    # The marker carries none of the sender's bytes.
    assert b"bWFsbG9yeQ" not in codec.open(plain).data


def _seal_raw(codec: EncryptionCodec, plain: bytes, metadata: dict[str, bytes], bound: bytes) -> Payload:
    """What a payload-key holder could make by hand: any bytes, sealed under any authenticated data."""
    nonce = os.urandom(NONCE_BYTES)
    key_id = codec.keyring.current
    return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id.encode(), **metadata},
                   data=nonce + codec._ciphers[key_id].encrypt(nonce, plain, bound))  # fmt: skip


def test_large_payloads_are_compressed_inside_the_seal_and_the_label_is_bound(keys: KeyDirectory) -> None:
    codec = EncryptionCodec(keys.payload_keyring())
    body = json.dumps({"rationale": "the model meets the standard " * 60}).encode()
    plain = Payload(metadata={"encoding": b"json/plain"}, data=body)
    sealed = codec.encrypt(plain)
    assert sealed.metadata[COMPRESSION] == ZLIB and len(sealed.data) < len(body) / 4
    assert codec.open(sealed) == plain
    small = codec.encrypt(Payload(metadata={"encoding": b"json/plain"}, data=b'{"a": 1}'))
    assert COMPRESSION not in small.metadata, "too small to gain from it"
    # The label is authenticated: dropped, or added to a payload sealed without it, the seal fails.
    stripped = Payload(metadata={k: v for k, v in sealed.metadata.items() if k != COMPRESSION}, data=sealed.data)
    assert is_refused(opened(codec, stripped))
    added = Payload(metadata={**small.metadata, COMPRESSION: ZLIB}, data=small.data)
    assert is_refused(opened(codec, added))
    unknown = Payload(metadata={**sealed.metadata, COMPRESSION: b"lzma"}, data=sealed.data)
    assert is_refused(opened(codec, unknown))


def test_a_payload_sealed_before_compression_still_opens(keys: KeyDirectory) -> None:
    """Histories recorded before (tests/histories) hold payloads sealed under the key id alone."""
    codec = EncryptionCodec(keys.payload_keyring())
    inner = Payload(metadata={"encoding": b"json/plain"}, data=b'{"old": true}')
    old = _seal_raw(codec, inner.SerializeToString(), {}, codec.keyring.current.encode())
    assert opened(codec, old) == {"old": True}


def test_a_compression_bomb_is_refused_not_inflated(keys: KeyDirectory) -> None:
    """A payload-key holder seals 64 MiB of zeros compressed to ~64 KB: the codec stops at its bound."""
    codec = EncryptionCodec(keys.payload_keyring())
    bomb = zlib.compress(b"\0" * (64 * 1024 * 1024), 9)
    assert len(bomb) < 100_000
    key_id = codec.keyring.current
    sealed = _seal_raw(codec, bomb, {COMPRESSION: ZLIB}, key_id.encode() + b"+" + ZLIB)
    assert is_refused(opened(codec, sealed))
    try:
        codec.decrypt(sealed)
    except CodecError as e:
        assert f"more than {MAX_OPENED} bytes" in str(e)
    else:
        raise AssertionError("a bomb opened")
