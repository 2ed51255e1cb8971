"""The case's audit reads the record the case wrote into its history (the recorded histories of
tests/histories/case/), and its checks fail on doctored copies: a notice sent twice, an embargo
broken, a message whose signature does not verify, a status change without its reason."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re

import pytest
from temporalio.client import Client
from temporalio.worker import Replayer

from api.clearinghouse import VendorClient
from audit import audit_workflow
from audit.case import CaseRecord
from audit.history import DecodedHistory, decode
from audit.markdown import to_markdown
from audit.trail import AuditTrail, interpreter_for
from domain.case import CaseStatus, LinkedReport
from domain.policy import Policy
from infra.connection import plain_data_converter
from tests.conftest import recording_anchors
from tests.test_audit import run_cli
from tests.test_case_histories import FIRST, NAMES, VERSIONS, recorded
from tests.test_clearinghouse import open_case, wait_case
from workflows.sandbox import workflow_runner
from workflows.vulnerability_case import VulnerabilityCase

BASE64_SIGNATURE = re.compile(r"[A-Za-z0-9+/]{80,}={0,2}")


async def decoded(name: str, version: str = FIRST) -> DecodedHistory:
    return await decode(recorded(name, version), plain_data_converter())


def audited(history: DecodedHistory) -> AuditTrail:
    return interpreter_for(history.workflow_type).interpret(history)


def failed(trail: AuditTrail) -> list[str]:
    return [c.name for c in trail.checks if not c.ok]


def event(history: DecodedHistory, type_: str, name: str):
    return next(e for e in history.events if e.type == type_ and e.name == name)


async def test_the_case_audit_reads_the_record_the_case_wrote() -> None:
    trail = audited(await decoded("case-closed"))
    r = trail.record
    assert isinstance(r, CaseRecord) and r.state is not None and r.read_from.startswith("its result")
    assert (r.reporter, r.found_by, r.status) == ("treasury", "dod", "CLOSED")
    assert len(r.reviews) == 1 and r.reviews[0].startswith("review-"), "linked to the review its finding came from"
    actors = {c.status: c.actor for c in r.status_changes}
    assert actors[CaseStatus.FIX_READY] == "vendor:tlskit-foundation", "the fix's verified sender"
    assert actors[CaseStatus.PATCH_DISTRIBUTED] == actors[CaseStatus.DISCLOSED] == "treasury"
    assert all(c.reason for c in r.status_changes)
    assert failed(trail) == []
    assert {c.name for c in trail.checks} >= {
        "the case names who reported it",
        "every status change has its actor and reason, and the case's record matches its history",
        "each notice was sent exactly once",
        "the embargo was kept (disclosed at its end, or earlier only once the patch was deployed everywhere)",
        "every message the case applied is signed by its sender (re-verified with the keyring it loaded)",
    }
    # Messages in words, with their sender; no raw records, no base64 signature anywhere.
    lines = {(e.actor, e.text) for e in trail.timeline}
    assert ("vendor:tlskit-foundation", "fix_ready: fixed in 3.2.5") in lines
    assert ("operator:energy", "patch_deployed: deployed by energy operators") in lines
    document = to_markdown(trail) + trail.model_dump_json()  # what `audit` and `audit --json` print
    assert r.state.fix is not None and r.state.fix.signature and r.state.fix.signature not in document
    assert not BASE64_SIGNATURE.search(document)
    assert not any("{" in e.text for e in trail.timeline)


async def test_only_a_finding_relayed_by_treasury_links_a_case_to_a_review() -> None:
    state = audited(await decoded("case-closed")).record.state
    assert state is not None and len(state.reviews) == 1
    claimed = LinkedReport(
        message_id="m", sender="partner:shieldsec", reference="review-claimed", received_at=state.received_at
    )
    assert state.model_copy(update={"reports": [*state.reports, claimed]}).reviews == state.reviews


async def test_a_continued_case_reads_its_carried_record_and_says_what_came_after() -> None:
    first, then = audited(await decoded("case-continued")), audited(await decoded("case-open-continued"))
    assert failed(first) == [] and failed(then) == []
    assert first.record.read_from.startswith("the input of its next run")
    r = then.record
    assert r.continued_from == first.run_id
    assert [n.run for n in r.notices][:2] == ["an earlier run", "an earlier run"]
    assert r.status == "PATCH_DISTRIBUTED" and r.status_changes[-1].reason.startswith("(made after the last state")


@pytest.mark.parametrize("version", VERSIONS)
async def test_every_versions_recorded_cases_pass_their_audit(version: str) -> None:
    """Genuine histories of each version: no check fails. The newest version's keyrings are Treasury's
    signed ones, verified again with the recording's anchors, and every message verifies with them."""
    with recording_anchors(VERSIONS[version]):
        trails = [audited(await decoded(name, version)) for name in NAMES]
    for name, trail in zip(NAMES, trails, strict=True):
        assert failed(trail) == [], (version, name)
        assert any(c.name.startswith("every message the case applied is signed") for c in trail.checks), name
        keyrings = [
            e.text for e in trail.timeline if e.text.startswith(("load the", "reload the")) and "completed" in e.text
        ]
        assert keyrings and not any("NOT BELIEVED" in k for k in keyrings), (name, keyrings)
        assert all(k.endswith("keys, signed by treasury") for k in keyrings) == (version != FIRST), keyrings


@pytest.mark.parametrize("version", [v for v in VERSIONS if v != FIRST])
async def test_a_keyring_not_signed_by_treasury_is_not_believed_and_its_messages_fail(version: str) -> None:
    """A doctored history of a version that believes only Treasury's signed keyring: its vendor key
    swapped (as if the case had used a keyring completed by id, or a local result altered in the
    export). The audit does not believe it, and the vendor's fix no longer verifies."""
    with recording_anchors(VERSIONS[version]):
        history = await decoded("case-closed", version)
        load = next(e for e in history.events if e.completes_activity and e.name == "load_public_keys")
        envelope = load.values[0]
        forged = {**envelope["result"], "vendor:tlskit-foundation": envelope["result"]["treasury"]}
        history.events[history.events.index(load)] = dataclasses.replace(load, values=[{**envelope, "result": forged}])
        trail = audited(history)
    assert failed(trail) == [
        "every message the case applied is signed by its sender (re-verified with the keyring it loaded)",
        # Nor the report that opened the case (its signature is checked with that keyring).
        "the validation and triage are what the case's report scores (recomputed here)",
    ]
    assert any("NOT BELIEVED" in e.text and "does not verify against treasury's" in e.text for e in trail.timeline)


async def test_a_notice_sent_twice_fails_its_check() -> None:
    history = await decoded("case-closed")
    patch = event(history, "ACTIVITY_TASK_COMPLETED", "distribute_patch")
    history.events.insert(history.events.index(patch) + 1, dataclasses.replace(patch, id=patch.id + 100_000))
    trail = audited(history)
    assert failed(trail) == ["each notice was sent exactly once"]
    assert "patch to operator:energy (2 times)" in trail.checks[2].detail


async def test_a_disclosure_before_the_embargo_ends_without_the_patch_deployed_fails_its_check() -> None:
    history = await decoded("case-closed")
    history.events.remove(event(history, "WORKFLOW_EXECUTION_UPDATE_ACCEPTED", "patch_deployed"))
    trail = audited(history)
    assert failed(trail) == [
        "the embargo was kept (disclosed at its end, or earlier only once the patch was deployed everywhere)"
    ]
    assert "early, deployed by: nobody" in next(c.detail for c in trail.checks if not c.ok)


async def test_an_altered_message_fails_the_signature_check() -> None:
    history = await decoded("case-closed")
    fix = event(history, "WORKFLOW_EXECUTION_UPDATE_ACCEPTED", "fix_ready")
    altered = dataclasses.replace(fix, values=[{**fix.values[0], "fixed_versions": ["9.9"]}])
    history.events[history.events.index(fix)] = altered
    trail = audited(history)
    assert failed(trail) == [
        "every message the case applied is signed by its sender (re-verified with the keyring it loaded)"
    ]


async def test_a_status_change_the_record_does_not_explain_fails() -> None:
    history = await decoded("case-closed")
    result = history.events[-1]
    state = result.values[0]
    transitions = [{**t, "reason": ""} if t["status"] == "FIX_READY" else t for t in state["transitions"]]
    history.events[-1] = dataclasses.replace(result, values=[{**state, "transitions": transitions}])
    trail = audited(history)
    assert failed(trail) == ["every status change has its actor and reason, and the case's record matches its history"]


async def test_a_case_history_with_fields_this_version_does_not_know_still_replays() -> None:
    """Models kept in a case's history ignore unknown fields: a field added by a later version (or
    one removed since) does not break replay of a running case."""
    history = recorded("case-open-continued")
    started = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    case = json.loads(started.data)
    case["retired_field"] = 1
    case["intake"]["report"]["retired_field"] = "x"
    case["carried"]["retired_field"] = [1]
    case["carried"]["transitions"][0]["retired_field"] = True
    case["policy"]["retired_field"] = "P1D"
    started.data = json.dumps(case).encode()
    replayer = Replayer(
        workflows=[VulnerabilityCase], data_converter=plain_data_converter(), workflow_runner=workflow_runner()
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


async def test_an_open_case_is_read_where_its_history_ends(client: Client, policy: Policy) -> None:
    """An open run has not handed its latest state over yet: the audit replays it with the case's
    own code, so the change after the vendor's fix (PATCH_DISTRIBUTED) has its actor and reason;
    and so for a run terminated from outside."""
    c = await open_case(client, policy, sectors=["energy"])
    await VendorClient(client, "TLSKit Foundation").fix_ready(c.case_id, ["3.2.5"])
    await wait_case(client, c.case_id, CaseStatus.PATCH_DISTRIBUTED)
    for _ in range(100):
        trail = await audit_workflow(client, c.case_id)
        if trail.record.status == "PATCH_DISTRIBUTED":
            break
        await asyncio.sleep(0.1)
    r = trail.record
    assert trail.status == "RUNNING" and r.read_from == "its state where the history ends (replayed)"
    last = r.status_changes[-1]
    assert (last.status, last.actor, last.reason) == ("PATCH_DISTRIBUTED", "treasury", "fix 3.2.5 sent to: energy")
    assert failed(trail) == [] and "the history replays with the case's own code" in {c.name for c in trail.checks}
    # Terminated from outside: the audit says so, and still reads the case's state where it was cut.
    await client.get_workflow_handle(c.case_id).terminate(reason="cut short")
    cut = await audit_workflow(client, c.case_id)
    assert (cut.status, cut.record.read_from) == ("TERMINATED", "its state where the history ends (replayed)")
    assert cut.record.status_changes[-1].status == "PATCH_DISTRIBUTED" and failed(cut) == []
    assert cut.timeline[-1].text == "terminated: cut short"


async def test_an_open_case_is_audited_by_another_process_with_its_own_anchors(client: Client, policy: Policy) -> None:
    """The console script pins no worker's anchors: the case's replay (an open run) believes Treasury's
    keyring with the reader's own trust anchors, as the case's worker did."""
    c = await open_case(client, policy)
    address = client.service_client.config.target_host
    r = await asyncio.to_thread(run_cli, "audit", c.case_id, "--json", "--address", address)
    assert r.returncode == 0, r.stderr
    checks = {check["name"]: check for check in json.loads(r.stdout)["checks"]}
    assert checks["the history replays with the case's own code"]["ok"], checks


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_doctored_triage_fails_its_check(version: str) -> None:
    """Validation and triage are unsigned results (a local activity's marker since
    `case-local-activities`): someone holding the payload key could make a critical vulnerability
    read as low in an exported history, its record to match. The audit recomputes both from the
    report that opened the case."""
    with recording_anchors(VERSIONS[version]):
        genuine = audited(await decoded("case-closed", version))
        history = await decoded("case-closed", version)
        triage = next(e for e in history.events if e.completes_activity and e.name == "triage_case")
        low = {**triage.values[0], "base_score": 3.1, "severity": "low"}
        history.events[history.events.index(triage)] = dataclasses.replace(triage, values=[low])
        result = history.events[-1]
        state = {**result.values[0], "triage": low}
        history.events[-1] = dataclasses.replace(result, values=[state])
        trail = audited(history)
    check = "the validation and triage are what the case's report scores (recomputed here)"
    assert check in [c.name for c in genuine.checks] and check not in failed(genuine)
    assert failed(trail) == [check]
    detail = next(c.detail for c in trail.checks if c.name == check)
    assert f"event {triage.id} (triage_case)" in detail and "the case's record" in detail, detail
