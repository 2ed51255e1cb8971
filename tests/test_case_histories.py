"""Recorded case histories (tests/histories/case/): every version's replay against the code as it is.

The first version's are in tests/histories/case/ itself and are never recorded again; each later
version's (a change shipped behind `workflow.patched`) are in a directory named for its patch id,
beside them. `test_record_the_case_histories` below records the newest version's (run it with
`./dev test -m record tests/test_case_histories.py`): it writes only into that directory. Payloads
are decrypted once, at recording, so that no key lives in the repository; they replay with the
unencrypted converter, and with the recording's public trust anchors pinned (`trust-anchors.json`:
the attested results in them were signed by the recording's throwaway parties).
"""

from __future__ import annotations

import gzip
import json
from datetime import timedelta
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message as Proto
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from api.agency import AgencyClient
from api.clearinghouse import OperatorClient, VendorClient
from domain.case import CaseStatus, ExploitationObserved
from domain.clearinghouse import (
    ATTESTED_KEYRING,
    CASE_LOCAL_ACTIVITIES,
    CLEARINGHOUSE_ID,
    EXPLOITATION_OBSERVED,
    LOAD_PUBLIC_KEYS,
    TRIAGE_CASE,
    VALIDATE_REPORT,
    VulnerabilityIntake,
)
from domain.policy import Policy, load_policy
from infra.codec import EncryptionCodec
from infra.connection import plain_data_converter
from infra.keys import KeyDirectory
from tests.conftest import patch_ids, recording_anchors, report_signed, running, send_case, signer_for, vulnerability
from tests.security.test_case_attacks import small_runs
from tests.test_clearinghouse import VENDOR, covered_review, forwarded_case, open_case, settled, wait_case
from tests.test_clearinghouse_intake import end_cases
from tests.test_clearinghouse_runs import fresh_clearinghouse
from worker import WorkerConfig, build_workers
from workflows.clearinghouse import Clearinghouse
from workflows.sandbox import workflow_runner
from workflows.vulnerability_case import VulnerabilityCase

HISTORIES = Path(__file__).parent / "histories" / "case"
# Each version's recordings: the first version's (never written again), then each patch's.
FIRST = "first"
VERSIONS = {
    FIRST: HISTORIES,
    ATTESTED_KEYRING: HISTORIES / ATTESTED_KEYRING,
    CASE_LOCAL_ACTIVITIES: HISTORIES / CASE_LOCAL_ACTIVITIES,
}
# Where the recorder writes: the newest version's directory, never an older version's.
NEWEST = CASE_LOCAL_ACTIVITIES
# closed: opened from a review's finding, a duplicate linked, an extension, the fix, the deployment.
# continued: a case whose run filled up (3 messages per run) and continued as new; open-continued:
# the run it continued into, still under embargo after the vendor's fix.
NAMES = ["case-closed", "case-continued", "case-open-continued"]


def recorded(name: str, version: str = FIRST) -> WorkflowHistory:
    """A recorded history, under the workflow id it ran with (a case checks its own id)."""
    file = VERSIONS[version] / f"{name}.json.gz"
    history = WorkflowHistory.from_json(name, gzip.decompress(file.read_bytes()).decode())
    started = history.events[0].workflow_execution_started_event_attributes
    return WorkflowHistory(started.workflow_id, history.events)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", NAMES)
async def test_recorded_case_histories_replay(name: str, version: str) -> None:
    replayer = Replayer(
        workflows=[Clearinghouse, VulnerabilityCase],
        data_converter=plain_data_converter(),
        workflow_runner=workflow_runner(),
    )
    with recording_anchors(VERSIONS[version]):
        result = await replayer.replay_workflow(recorded(name, version), raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def test_each_version_is_recorded_on_its_own_branch() -> None:
    """The versions differ where the patches do: the first loads a plain keyring, the attested one
    a signed one, the newest asks Treasury's desk (keyring, validation, triage) as local activities,
    each under its patch's marker (so the replay above runs every branch)."""
    desk = {LOAD_PUBLIC_KEYS, VALIDATE_REPORT, TRIAGE_CASE}
    for version, attested, local in ((FIRST, False, False), (ATTESTED_KEYRING, True, False), (NEWEST, True, True)):
        for name in NAMES:
            history = recorded(name, version)
            patches = patch_ids(history)
            assert (ATTESTED_KEYRING in patches, CASE_LOCAL_ACTIVITIES in patches) == (attested, local), (version, name)
            tasks = [
                (a.activity_type.name, a.activity_id)
                for e in history.events
                if (a := e.activity_task_scheduled_event_attributes).activity_type.name
            ]
            markers = [
                json.loads(e.marker_recorded_event_attributes.details["data"].payloads[0].data)
                for e in history.events
                if e.marker_recorded_event_attributes.marker_name == "core_local_activity"
            ]
            if local:
                assert not desk & {t for t, _ in tasks}, (version, name, tasks)
                assert markers[0]["activity_id"] == "treasury-keys", (version, name, markers)
                assert desk <= {m["activity_type"] for m in markers} or name == "case-open-continued"
            else:
                loads = [i for t, i in tasks if t == LOAD_PUBLIC_KEYS]
                assert not markers and loads and (loads[0] == "treasury-keys") == attested, (version, name, loads)


# ---------------------------------------------------------------- recording them again


def _decrypt(message: Proto, codec: EncryptionCodec) -> None:
    """Every payload in `message`, opened in place (search attributes and markers were never sealed)."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            items = list(value.values()) if field.message_type.fields_by_name["value"].message_type else []
        else:
            items = list(value) if field.is_repeated else [value]
        for item in items:
            if isinstance(item, Payload):
                item.CopyFrom(codec.decrypt(item))
            else:
                _decrypt(item, codec)


async def _write(client: Client, name: str, case_id: str, run_id: str | None, keys: KeyDirectory) -> None:
    history = await client.get_workflow_handle(case_id, run_id=run_id).fetch_history()
    codec = EncryptionCodec(keys.payload_keyring())
    events = []
    for event in history.events:
        _decrypt(event, codec)
        events.append(MessageToDict(event))
    text = json.dumps({"events": events}, indent=1)
    directory = VERSIONS[NEWEST]
    assert directory != VERSIONS[FIRST], "the first version's histories are never recorded again"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
    anchors = json.dumps(keys.trust_anchors(), indent=2, sort_keys=True) + "\n"
    (directory / "trust-anchors.json").write_text(anchors)


@pytest.mark.record
async def test_record_the_case_histories(
    client: Client, isolated: Client, policy: Policy, worker_config: WorkerConfig, keys: KeyDirectory, tmp_path: Path
) -> None:
    # case-closed
    rid = await covered_review(client, policy, ["dod"])
    details = vulnerability(sectors=["energy"])
    s = await AgencyClient(client, "dod").submit_finding(
        rid, kind="vulnerability", severity="high", summary="s", vulnerability=details
    )
    case_id = await forwarded_case(client, rid, s.message_id)
    await settled(client, case_id)
    await report_signed(client, VulnerabilityIntake(sender="operator:energy", report=details), policy)
    vendor = VendorClient(client, "TLSKit Foundation")
    await vendor.request_extension(case_id, timedelta(days=3), "testing")
    await vendor.fix_ready(case_id, ["3.2.5"])
    await wait_case(client, case_id, CaseStatus.PATCH_DISTRIBUTED)
    await OperatorClient(client, "energy").patch_deployed(case_id)
    await wait_case(client, case_id, CaseStatus.CLOSED)
    await AgencyClient(client, "dod").conclude(rid)
    await _write(client, "case-closed", case_id, None, keys)

    # case-continued and case-open-continued
    await fresh_clearinghouse(isolated)
    async with running(build_workers(isolated, ["treasury"], small_runs(worker_config, tmp_path, per_run=3))):
        try:
            c = await open_case(isolated, load_policy("eo-2026"), sectors=["energy"])
            for i in range(4):
                seen = ExploitationObserved(sender="operator:energy", evidence=f"e{i}")
                await send_case(isolated, c.case_id, EXPLOITATION_OBSERVED, seen)
            await VendorClient(isolated, VENDOR, signer_for(VENDOR)).fix_ready(c.case_id, ["3.2.5"])
            await wait_case(isolated, c.case_id, CaseStatus.PATCH_DISTRIBUTED)
            runs = [wf async for wf in isolated.list_workflows(f'WorkflowId = "{c.case_id}"')]
            first, last = min(runs, key=lambda r: r.start_time), max(runs, key=lambda r: r.start_time)
            assert len(runs) == 2, [r.status for r in runs]
            await _write(isolated, "case-continued", c.case_id, first.run_id, keys)
            await _write(isolated, "case-open-continued", c.case_id, last.run_id, keys)
        finally:
            await isolated.get_workflow_handle(CLEARINGHOUSE_ID).terminate("recorded")
            await end_cases(isolated)
