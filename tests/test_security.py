"""Classified stays classified (encrypted payloads, key rotation, the codec server) and
agencies are who they say they are (signed messages)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.message import Message as Proto
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from api.agency import AgencyClient, LabClient
from api.errors import Rejected
from api.reviews import status
from cli.keys import serve_codec
from domain.messages import Determination, ReviewFinding
from domain.policy import Policy
from domain.review import RECORD_DETERMINATION, SUBMIT_FINDING
from domain.signatures import Signer
from domain.status import ReviewStatus, Stage
from infra.codec import CodecError, EncryptionCodec
from infra.connection import data_converter
from infra.keys import KeyDirectory, PayloadKeyring
from tests.conftest import disclose, mythos, running, update_events, vulnerability, wait_stage
from tests.test_embedded import free_port
from worker import WorkerConfig, build_workers

SECRET_RATIONALE = "MARKER-rationale-sigint-7731"
SECRET_FINDING = "MARKER-finding-zero-day-4410"
SECRET_EVAL = "marker_eval_bioweapon_uplift"
STANDARD_TEXT = "autonomous exploitation"  # from DoD's (fictional) classified standard


def payloads(message: Proto) -> Iterator[Payload]:
    """Every Payload anywhere inside a protobuf message (search attributes aside)."""
    if isinstance(message, Payload):
        yield message
        return
    for field, value in message.ListFields():
        # Search attributes are indexed by the server and stay plaintext by design.
        if field.message_type is None or field.name == "search_attributes":
            continue
        if field.is_repeated:
            items = value.values() if hasattr(value, "values") and callable(value.values) else value
            for item in items:
                if isinstance(item, Proto):
                    yield from payloads(item)
        else:
            yield from payloads(value)


def plaintext(history: WorkflowHistory) -> bytes:
    return b"".join(e.SerializeToString() for e in history.events) + history.to_json().encode()


async def covered_review_with_secrets(client: Client, policy: Policy) -> str:
    disclosure = mythos(evaluations={"cyber_offense": 0.9, SECRET_EVAL: 0.77})
    # A policy whose vocabulary names the secret evaluation (a classified one, say).
    policy = policy.model_copy(update={"evaluations": {**policy.evaluations, SECRET_EVAL: "classified"}})
    rid = await disclose(client, disclosure, policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await AgencyClient(client, "nsa").determine(rid, covered=True, agencies=["dod"], rationale=SECRET_RATIONALE)
    await wait_stage(client, rid, Stage.UNDER_REVIEW)
    dod = AgencyClient(client, "dod")
    await dod.submit_finding(
        rid, kind="vulnerability", severity="critical", summary=SECRET_FINDING, vulnerability=vulnerability()
    )
    await dod.conclude(rid)
    await client.get_workflow_handle(rid).result()
    return rid


async def test_history_without_the_codec_shows_nothing_classified(
    client: Client, policy: Policy, keys: KeyDirectory
) -> None:
    rid = await covered_review_with_secrets(client, policy)
    history = await client.get_workflow_handle(rid).fetch_history()
    raw = plaintext(history)
    for secret in (SECRET_RATIONALE, SECRET_FINDING, SECRET_EVAL, STANDARD_TEXT, "checkpoint_sha256"):
        assert secret.encode() not in raw, f"{secret!r} readable without the key"
    found = list(payloads(history.events[0]))
    assert found and all(p.metadata["encoding"] == b"binary/encrypted" for p in found)

    # With the codec, all of it decodes.
    codec = EncryptionCodec(keys.payload_keyring())
    decoded = b"".join(
        codec.decrypt(p).data for event in history.events for p in payloads(event) if p.metadata.get("encoding")
    )
    for secret in (SECRET_RATIONALE, SECRET_FINDING, SECRET_EVAL, STANDARD_TEXT):
        assert secret.encode() in decoded
    # The status the operators read is whole.
    s = await status(client, rid)
    assert s.determination.rationale == SECRET_RATIONALE


async def test_search_attributes_carry_only_unclassified_fields(client: Client, policy: Policy) -> None:
    rid = await covered_review_with_secrets(client, policy)
    described = await client.get_workflow_handle(rid).describe()
    names = {key.name for key, _ in described.typed_search_attributes} - {
        "BuildIds",
        "TemporalChangeVersion",
    }  # the server's own
    assert names <= {
        "ReviewStage", "Lab", "ModelName", "Covered", "WindowDeadline", "PolicyVersion",
        "Outcome", "SecondsToDetermination", "SecondsToRelease", "Genuine", "GenuineSeal",
        "DeterminedBy", "PendingAgencies",  # who decided (nsa|policy-default), whose decision is awaited
        "Participants", "ClockRanOut", "SecondsDelayed",
    }  # fmt: skip
    assert SECRET_RATIONALE not in str(described.typed_search_attributes)


async def test_key_rotation_mid_review(env, isolated: Client, worker_config: WorkerConfig, keys, policy) -> None:
    k1 = PayloadKeyring.generate("k1")
    first = await env.connect_client(namespace=isolated.namespace, data_converter=data_converter(k1))
    async with running(build_workers(first, config=worker_config)):
        rid = await disclose(first, mythos(), policy)
        await wait_stage(first, rid, Stage.AWAITING_DETERMINATION)

    k2 = k1.rotated("k2")
    second = await env.connect_client(namespace=isolated.namespace, data_converter=data_converter(k2))
    async with running(build_workers(second, config=worker_config)):
        await AgencyClient(second, "nsa").determine(rid, covered=False, rationale="after rotation")
        final = await second.get_workflow_handle(rid, result_type=ReviewStatus).result()
    assert final.stage == Stage.RELEASED

    history = await second.get_workflow_handle(rid).fetch_history()
    # Patch markers (`workflow.patched`) carry only the patch's name, written by the SDK unencoded;
    # an activity cancelled before it started carries the server's own "ACTIVITY_ID_NOT_STARTED".
    key_ids = {
        p.metadata.get("encryption-key-id")
        for e in history.events
        if not e.HasField("marker_recorded_event_attributes")
        for p in payloads(e)
        if p.data != b'"ACTIVITY_ID_NOT_STARTED"'
    }
    assert key_ids == {b"k1", b"k2"}, "old payloads under k1, new ones under k2"
    only_k2 = EncryptionCodec(PayloadKeyring(current="k2", keys={"k2": k2.keys["k2"]}))
    start_input = next(payloads(history.events[0]))
    with pytest.raises(CodecError, match="key 'k1', which is not in the keyring"):
        only_k2.decrypt(start_input)


async def test_signed_message_rejections(client: Client, policy: Policy, keys: KeyDirectory) -> None:
    rid = await disclose(client, mythos(), policy)
    other = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await wait_stage(client, other, Stage.AWAITING_DETERMINATION)
    nsa = keys.signer("nsa")
    run = (await client.get_workflow_handle(rid).describe()).run_id
    impostor = Signer("nsa", Ed25519PrivateKey.generate())

    def determination(**changes) -> Determination:
        return Determination(sender="nsa", covered=False, rationale="r", **changes)

    async def rejected(message, signed: Determination | None = None, reason: str = "") -> None:
        handle = client.get_workflow_handle(rid)
        with pytest.raises(Rejected, match=reason):
            await send_raw(client, rid, RECORD_DETERMINATION, signed or message)
        assert (signed or message).message_id not in await update_events(client, rid)
        assert (await handle.describe()).status.name == "RUNNING"

    # Forged: the NSA's name, someone else's key.
    await rejected(None, impostor.sign(rid, RECORD_DETERMINATION, determination(), run), "signature does not verify")
    # Altered after signing.
    signed = nsa.sign(rid, RECORD_DETERMINATION, determination(), run)
    await rejected(None, signed.model_copy(update={"covered": True, "agencies": ["dod"]}), "does not verify")
    # Signed for another review.
    await rejected(None, nsa.sign(other, RECORD_DETERMINATION, determination(), run), "signed for another review")
    # Signed as another kind of message (a finding's signature on a determination).
    as_finding = nsa.sign(rid, SUBMIT_FINDING, determination(), run)
    await rejected(None, as_finding, "does not verify")
    # Unsigned.
    await rejected(None, determination(), "is not signed")
    # Unknown signer.
    cia = Signer("cia", Ed25519PrivateKey.generate())
    stranger = Determination(sender="cia", covered=False, rationale="r")
    await rejected(None, cia.sign(rid, RECORD_DETERMINATION, stranger, run), "unknown signer 'cia'")
    # Wrong role: a real DoD signature on a determination.
    dod_says = Determination(sender="dod", covered=False, rationale="r")
    await rejected(None, keys.signer("dod").sign(rid, RECORD_DETERMINATION, dod_says, run), "only the NSA determines")

    # The genuine one is accepted; replaying it (another update id) is not.
    # Genuine but signed for no run (or another run): refused.
    await rejected(None, nsa.sign(rid, RECORD_DETERMINATION, determination()), "signed for run \\(none\\)")
    genuine = nsa.sign(rid, RECORD_DETERMINATION, determination(), run)
    await send_raw(client, rid, RECORD_DETERMINATION, genuine)
    with pytest.raises(Rejected, match="already"):
        await send_raw(client, rid, RECORD_DETERMINATION, genuine, update_id="replay")
    await LabClient(client).withdraw(other, "test finished")


async def send_raw(client: Client, rid: str, update: str, message, update_id: str | None = None) -> None:
    """Send exactly these bytes (no signing on the way), as an attacker with a client would."""
    from temporalio.client import WorkflowUpdateFailedError

    try:
        await client.get_workflow_handle(rid).execute_update(update, message, id=update_id or message.message_id)
    except WorkflowUpdateFailedError as e:
        raise Rejected(e.cause.message) from None


def test_a_signer_signs_only_for_its_own_party(keys: KeyDirectory) -> None:
    finding = ReviewFinding(sender="dod", kind="capability", severity="low", summary="s")
    with pytest.raises(ValueError, match="nsa's key cannot sign a message from 'dod'"):
        keys.signer("nsa").sign("review-x", SUBMIT_FINDING, finding)


@pytest.fixture
async def codec_url(keys: KeyDirectory):
    port = free_port()
    runner = await serve_codec(keys, "127.0.0.1", port, ["http://localhost:8233"], local_ui=True)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def as_payloads_json(payload: Payload) -> str:
    return json.dumps(
        {
            "payloads": [
                {
                    "metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
                    "data": base64.b64encode(payload.data).decode(),
                }
            ]
        }
    )


async def test_codec_server_authentication_and_cors(codec_url: str, keys: KeyDirectory) -> None:
    codec = EncryptionCodec(keys.payload_keyring())
    sealed = codec.encrypt(Payload(metadata={"encoding": b"json/plain"}, data=b'{"rationale": "classified"}'))
    body = as_payloads_json(sealed)
    token = keys.codec_token()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{codec_url}/decode", data=body, headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200
            decoded = (await r.json())["payloads"][0]
            assert base64.b64decode(decoded["data"]) == b'{"rationale": "classified"}'
        async with http.post(f"{codec_url}/t/{token}/decode", data=body) as r:
            assert r.status == 404, "no token in a path: the local UI's endpoint would serve it to anyone"
        ui = {"Origin": "http://localhost:8233"}
        async with http.post(f"{codec_url}/local-ui/decode", data=body, headers=ui) as r:
            assert r.status == 200, "the local Web UI's loopback endpoint, from the UI's origin"
        async with http.post(f"{codec_url}/local-ui/decode", data=body) as r:
            assert r.status == 401, "not from the UI's page"
        async with http.post(f"{codec_url}/local-ui/decode", data=body, headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 401
        async with http.post(f"{codec_url}/decode", data=body) as r:
            assert r.status == 401
        async with http.post(f"{codec_url}/decode", data=body, headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
        preflight = {
            "Origin": "http://localhost:8233",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
        }
        async with http.options(f"{codec_url}/decode", headers=preflight) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:8233"
            allowed = r.headers["Access-Control-Allow-Headers"].lower()
            assert {"x-namespace", "authorization", "content-type"} <= {h.strip() for h in allowed.split(",")}
        async with http.options(f"{codec_url}/decode", headers={**preflight, "Origin": "http://evil.example"}) as r:
            assert r.status == 403
            assert "Access-Control-Allow-Origin" not in r.headers
        # Encode round-trips through the same keys.
        plain = as_payloads_json(Payload(metadata={"encoding": b"json/plain"}, data=b'"x"'))
        async with http.post(f"{codec_url}/encode", data=plain, headers={"Authorization": f"Bearer {token}"}) as r:
            encoded = (await r.json())["payloads"][0]
            assert base64.b64decode(encoded["metadata"]["encoding"]) == b"binary/encrypted"


async def test_the_temporal_cli_decodes_through_the_codec_server(
    client: Client, policy: Policy, codec_url: str, keys: KeyDirectory
) -> None:
    rid = await covered_review_with_secrets(client, policy)
    temporal = str(Path(sys.executable).parent / "temporal")
    address = client.service_client.config.target_host

    async def show(*extra: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            temporal, "workflow", "show", "--workflow-id", rid, "--address", address, "--output", "json", *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"},
        )  # fmt: skip
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        return out.decode()

    def contents(exported: str) -> tuple[set[bytes], bytes]:
        """The encodings of every payload in a `--output json` export, and their data."""
        encodings, data = set(), b""
        stack = [json.loads(exported)]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if "metadata" in node and "data" in node and "encoding" in node["metadata"]:
                    encodings.add(base64.b64decode(node["metadata"]["encoding"]))
                    data += base64.b64decode(node["data"])
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
        return encodings, data

    encodings, data = contents(await show())
    assert b"binary/encrypted" in encodings and SECRET_RATIONALE.encode() not in data
    encodings, data = contents(
        await show("--codec-endpoint", codec_url, "--codec-auth", f"Bearer {keys.codec_token()}")
    )
    assert b"binary/encrypted" not in encodings
    assert SECRET_RATIONALE.encode() in data
    assert SECRET_FINDING.encode() in data


async def test_a_review_started_with_someone_elses_keys_still_verifies_against_the_review_office(
    client: Client, policy: Policy
) -> None:
    """Anyone with a Temporal client can start a `ModelReview` whose input lists their own key as
    the NSA's. The review verifies with the keys it loads from the review office (and, started by
    hand without the lab's signed filing, is not admitted at all), so a determination signed with
    that key is refused."""
    from domain.review import WORKFLOW_TYPE, ReviewInput

    mallory = Signer("nsa", Ed25519PrivateKey.generate())
    d = mythos()
    rid = f"review-forged-{d.model_version}"
    await client.start_workflow(
        WORKFLOW_TYPE,
        ReviewInput(review_id=rid, disclosure=d, policy=policy, public_keys={"nsa": mallory.public_key_b64()}),
        id=rid,
        task_queue="review",
    )
    run = (await client.get_workflow_handle(rid).describe()).run_id
    forged = mallory.sign(rid, RECORD_DETERMINATION, Determination(sender="nsa", covered=False, rationale="r"), run)
    # Refused by the review, or, when it came while the office was turning the review away (keyring
    # and admission are asked at once), aborted by the server as the review closed.
    with pytest.raises((Rejected, RPCError)) as refused:
        await send_raw(client, rid, RECORD_DETERMINATION, forged)
    if isinstance(refused.value, RPCError):
        assert refused.value.status == RPCStatusCode.NOT_FOUND, refused.value
    else:
        assert re.search("signature does not verify for nsa|loading its keyring", str(refused.value))
    final = await client.get_workflow_handle(rid, result_type=ReviewStatus).result()
    assert (final.genuine, final.stage, final.determination) == (False, Stage.DISCLOSED, None)
    assert forged.message_id not in await update_events(client, rid)
