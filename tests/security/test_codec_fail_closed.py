"""The payload codec opens only what it sealed: anything else becomes an inert marker."""

from __future__ import annotations

import json

from temporalio.api.common.v1 import Payload

from domain.attestation import is_refused
from infra.codec import EncryptionCodec
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
