"""Recorded review histories replay against the code as it is (tests/histories/reviews/).

Versioning discipline (README, "Changing a workflow"): every change to `ModelReview` either replays
these histories unchanged, or ships behind `workflow.patched` with a new recorded history of the old
path. The project was never deployed, so the first version folds every earlier patch and these
histories were recorded from it:

    ./dev test -m record tests/test_review_histories.py

The recording drives reviews down each path on the test server, then decrypts every payload once so
that no payload key lives in the repository; the parties' public keys (trust anchors of the
throwaway keys they were recorded with) are kept beside them, since a review believes an activity
result only if its party signed it.
"""

from __future__ import annotations

import base64
import gzip
import json
from datetime import timedelta
from pathlib import Path

import pytest
from google.protobuf.message import Message as Proto
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from api.agency import AgencyClient, LabClient
from domain import attestation
from domain.agencies import Agency
from domain.policy import Policy
from domain.status import ReviewState, Stage
from infra.codec import ENCODING, EncryptionCodec
from infra.connection import plain_data_converter
from infra.keys import KeyDirectory
from tests.conftest import disclose, mythos, quick_policy, vulnerability, wait_stage
from workflows.review import ModelReview
from workflows.sandbox import workflow_runner

RECORDED = Path(__file__).parent / "histories" / "reviews"
NAMES = ["released-covered", "not-covered", "withdrawn", "default-window-elapsed", "open-under-review"]
# Each version's histories in its own folder with its own trust anchors, oldest first: the first
# version's at the top, then one folder per `workflow.patched` id since. Only the newest is recorded
# again; the others are kept exactly as they were recorded.
VERSIONS = [RECORDED, RECORDED / "office-local-activities"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.name)
async def test_recorded_review_histories_replay(version: Path, name: str) -> None:
    """Each recorded path of each version of a review replays, in the sandbox, against the code as it is."""
    recording = json.loads(gzip.decompress((version / f"{name}.json.gz").read_bytes()))
    # Under its own review id: the activity results it holds are signed for that workflow.
    review_id = recording["events"][0]["workflowExecutionStartedEventAttributes"]["workflowId"]
    failure = await _replayed(WorkflowHistory.from_json(review_id, recording), version)
    assert failure is None, failure


def test_the_newest_version_runs_the_office_locally() -> None:
    """The newest recording is of the code as it runs now (not a copy of an older one): the office's
    keyring and admission are local-activity markers there, activity tasks in the first version."""

    def activities(version: Path) -> tuple[set[str], set[str]]:
        events = json.loads(gzip.decompress((version / "not-covered.json.gz").read_bytes()))["events"]
        tasks = {e["activityTaskScheduledEventAttributes"]["activityType"]["name"] for e in events
                 if "activityTaskScheduledEventAttributes" in e}  # fmt: skip
        markers = {
            e["markerRecordedEventAttributes"]["markerName"] for e in events if "markerRecordedEventAttributes" in e
        }
        return tasks, markers

    first, newest = activities(VERSIONS[0]), activities(VERSIONS[-1])
    assert {"load_review_keys", "admit_disclosure"} <= first[0] and "core_local_activity" not in first[1]
    assert not {"load_review_keys", "admit_disclosure"} & newest[0] and "core_local_activity" in newest[1]


async def test_a_field_the_code_no_longer_knows_does_not_break_replay() -> None:
    """Models kept in histories ignore fields they do not know (domain/persisted.py): a history
    written while the start input, the disclosure, a partner and the NSA's message carried a field
    since removed still replays. (With `extra="forbid"`, as before, the input failed to decode.)"""
    recording = json.loads(gzip.decompress((RECORDED / "not-covered.json.gz").read_bytes()))

    def widened(payload: dict, change) -> None:
        value = json.loads(base64.b64decode(payload["data"]))
        change(value)
        payload["data"] = base64.b64encode(json.dumps(value).encode()).decode()

    def start(review: dict) -> None:
        review["retired_field"] = 1
        review["disclosure"]["retired_field"] = "x"
        review["disclosure"]["partners"][0]["retired_field"] = True

    events = recording["events"]
    widened(events[0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0], start)
    [update] = [e for e in events if "workflowExecutionUpdateAcceptedEventAttributes" in e]
    args = update["workflowExecutionUpdateAcceptedEventAttributes"]["acceptedRequest"]["input"]["args"]
    widened(args["payloads"][0], lambda message: message.update(retired_field=[1, 2]))
    # The NSA's signature covers the fields it knew: it still verifies in the audit's terms too.
    review_id = events[0]["workflowExecutionStartedEventAttributes"]["workflowId"]
    assert (await _replayed(WorkflowHistory.from_json(review_id, recording), RECORDED)) is None


async def _replayed(history: WorkflowHistory, version: Path):
    # The recording's anchors beside this session's (a live review in this process still believes
    # its own parties): the recorded keys' private halves were thrown away.
    recorded = json.loads((version / "trust-anchors.json").read_text())
    before = attestation.pinned()
    attestation.pin({p: [*before.get(p, []), *recorded.get(p, [])] for p in {*before, *recorded}})
    try:
        converter = plain_data_converter()
        replayer = Replayer(workflows=[ModelReview], data_converter=converter, workflow_runner=workflow_runner())
        return (await replayer.replay_workflow(history, raise_on_replay_failure=False)).replay_failure
    finally:
        attestation.pin(before)


# ---------------------------------------------------------------- recording (by hand, see above)


@pytest.mark.record
async def test_record_review_histories(client: Client, env: WorkflowEnvironment, policy: Policy, keys: KeyDirectory):
    nsa, dod = AgencyClient(client, Agency.NSA), AgencyClient(client, Agency.DOD)
    ids = {name: await disclose(client, mythos(), policy) for name in NAMES if name != "default-window-elapsed"}
    strict = quick_policy(version="record.1", on_nsa_silence="covered", default_participants=[Agency.DHS])
    ids["default-window-elapsed"] = await disclose(client, mythos(), strict)
    for rid in ids.values():
        await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await nsa.determine(ids["released-covered"], covered=True, agencies=["dod"], rationale="cyber")
    await dod.submit_finding(
        ids["released-covered"], kind="vulnerability", severity="high", summary="s", vulnerability=vulnerability()
    )
    await dod.conclude(ids["released-covered"])
    await nsa.determine(ids["not-covered"], covered=False, rationale="r")
    await LabClient(client).withdraw(ids["withdrawn"], "leaving the program")
    handle = client.get_workflow_handle(ids["default-window-elapsed"])
    await env.fast_forward(handle, timedelta(days=15))
    await wait_stage(client, ids["default-window-elapsed"], Stage.UNDER_REVIEW)
    await env.fast_forward(handle, timedelta(days=31))
    await nsa.determine(ids["open-under-review"], covered=True, agencies=["dod", "dhs"], rationale="r")
    await dod.conclude(ids["open-under-review"])
    for name, rid in ids.items():
        if name != "open-under-review":
            assert isinstance(await client.get_workflow_handle(rid, result_type=ReviewState).result(), ReviewState)
    codec = EncryptionCodec(keys.payload_keyring())
    newest = VERSIONS[-1]  # never an older version's folder: those stay as recorded
    newest.mkdir(parents=True, exist_ok=True)
    for name, rid in ids.items():
        history = await client.get_workflow_handle(rid).fetch_history()
        for event in history.events:
            await _decrypt(event, codec)
        (newest / f"{name}.json.gz").write_bytes(gzip.compress(json.dumps(history.to_json_dict()).encode(), mtime=0))
    (newest / "trust-anchors.json").write_text(json.dumps(keys.trust_anchors(), indent=2, sort_keys=True) + "\n")


async def _decrypt(message: Proto, codec: EncryptionCodec) -> None:
    """Every sealed payload in `message`, opened in place (the rest, search attributes, as they are)."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            values = list(value.values())
        else:
            values = [value] if isinstance(value, Proto) else list(value)
        for item in values:
            if isinstance(item, Payload):
                if item.metadata.get("encoding") == ENCODING:
                    item.CopyFrom(codec.decrypt(item))
            elif isinstance(item, Proto):
                await _decrypt(item, codec)
