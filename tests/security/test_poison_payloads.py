"""Payloads made to break the codec (red team, this session): a signal nobody handles, carrying JSON
nested deeper than the parser's recursion limit, made the codec raise RecursionError on every
activation of the workflow it reached: one keyless signal wedged a review (and the clearinghouse)
for good. The codec now refuses what it cannot read, and never raises while decoding."""

from __future__ import annotations

import base64
import json
import zlib

import aiohttp
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.agency import AgencyClient, LabClient
from domain.attestation import is_refused
from domain.policy import Policy
from domain.status import Stage
from infra.codec import BAD_COMPRESSION, COMPRESSION, UNKNOWN_COMPRESSION, ZLIB, EncryptionCodec
from infra.keys import KeyDirectory, PayloadKeyring
from tests.conftest import disclose, mythos, wait_stage
from tests.security.attackers import keyless
from tests.security.test_codec_fail_closed import _seal_raw
from tests.test_security import as_payloads_json, codec_url  # noqa: F401 (the codec server fixture)

NESTED = b"[" * 100_000 + b"]" * 100_000


async def _send_raw_signal(client: Client, workflow_id: str, data: bytes) -> None:
    from temporalio.api.common.v1 import Payloads, WorkflowExecution
    from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest

    await client.workflow_service.signal_workflow_execution(
        SignalWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id),
            signal_name="anything-at-all",
            input=Payloads(payloads=[Payload(metadata={"encoding": b"json/plain"}, data=data)]),
            identity="mallory@keyless",
        )
    )


async def test_decoding_never_raises(keys: KeyDirectory) -> None:
    codec = EncryptionCodec(keys.payload_keyring())
    plain = Payload(metadata={"encoding": b"json/plain"}, data=NESTED)
    [out] = await codec.decode([plain])
    assert is_refused(json.loads(out.data)) == "not sealed by this installation's payload codec"
    # The payload-key holder's version: 476 bytes sealed, nesting the parser cannot follow.
    sealed = codec.encrypt(Payload(metadata={"encoding": b"json/plain"}, data=NESTED))
    assert sealed.metadata[COMPRESSION] == ZLIB and len(sealed.data) < 1_000
    [out] = await codec.decode([sealed])
    assert is_refused(json.loads(out.data)) == "sealed content is not JSON"
    # Nesting the converter's parser refuses (past 200 levels) though `json.loads` takes it: refused
    # here, before it can fail a workflow task as an activity result completed by id.
    deep = codec.encrypt(Payload(metadata={"encoding": b"json/plain"}, data=b"[" * 300 + b"]" * 300))
    json.loads(b"[" * 300 + b"]" * 300)
    [out] = await codec.decode([deep])
    assert is_refused(json.loads(out.data)) == "sealed content is not JSON"
    # Refusals that say what is wrong, in fixed words.
    key = codec.keyring.current
    unknown = Payload(metadata={**sealed.metadata, COMPRESSION: b"lzma"}, data=sealed.data)
    garbage = _seal_raw(codec, b"not zlib at all", {COMPRESSION: ZLIB}, key.encode() + b"+" + ZLIB)
    bomb = _seal_raw(codec, zlib.compress(b"\0" * (9 << 20), 9), {COMPRESSION: ZLIB}, key.encode() + b"+" + ZLIB)
    reasons = [is_refused(json.loads(p.data)) for p in await codec.decode([unknown, garbage, bomb])]
    assert reasons == [UNKNOWN_COMPRESSION, BAD_COMPRESSION, BAD_COMPRESSION]


def test_a_key_id_cannot_read_as_another_key_and_a_compression() -> None:
    """The seal binds the key id, then '+zlib' when compressed: a key id may not contain '+'."""
    good = PayloadKeyring.generate("k1")
    try:
        PayloadKeyring(current="k1+zlib", keys={"k1+zlib": good.keys["k1"]})
    except ValueError as e:
        assert "must be letters, digits" in str(e)
    else:
        raise AssertionError("a key id with '+' was accepted")


async def test_a_keyless_poison_signal_does_not_wedge_a_review(
    env: WorkflowEnvironment, client: Client, policy: Policy
) -> None:
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    attacker = await keyless(env, client.namespace)
    await _send_raw_signal(attacker, rid, NESTED)
    # The review still answers and moves: the NSA decides, the lab withdraws.
    decided = await AgencyClient(client, "nsa").determine(rid, covered=True, agencies=["dod"], rationale="r")
    assert decided.stage == Stage.UNDER_REVIEW
    await LabClient(client).withdraw(rid, "test finished")
    failed = [
        e for e in (await client.get_workflow_handle(rid).fetch_history()).events
        if e.HasField("workflow_task_failed_event_attributes")
    ]  # fmt: skip
    assert failed == [], failed[0].workflow_task_failed_event_attributes.failure.message if failed else ""


async def test_the_codec_server_answers_a_poison_payload_and_a_bad_body_in_one_line(
    codec_url: str,  # noqa: F811 (the fixture, imported above)
    keys: KeyDirectory,
) -> None:
    url = codec_url
    token = {"Authorization": f"Bearer {keys.codec_token()}"}
    body = as_payloads_json(Payload(metadata={"encoding": b"json/plain"}, data=NESTED))
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/decode", data=body, headers=token) as r:
            assert r.status == 200
            decoded = json.loads(base64.b64decode((await r.json())["payloads"][0]["data"]))
            assert is_refused(decoded)
        async with http.post(f"{url}/decode", data=b"\xff\xfe{", headers=token) as r:
            assert r.status == 400 and (await r.json()) == {"error": "body is not Payloads JSON"}
