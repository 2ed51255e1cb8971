"""The audit trail, rebuilt from event histories: from the server, from the real `temporal`
CLI's export, and through the console script, on reviews that took every path."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.agency import AgencyClient, LabClient
from api.errors import Rejected
from api.report import transparency_report
from audit import Interpreter, audit_export, audit_workflow
from audit.history import decode, fetch
from audit.markdown import to_markdown
from audit.review import ReviewRecord
from audit.trail import interpreter_for
from domain import search_attributes as sa
from domain.agencies import Agency
from domain.policy import Policy
from domain.status import Outcome, ReviewStatus, Stage
from infra.connection import data_converter
from infra.devserver import temporal_cli_path
from infra.keys import KeyDirectory
from tests.conftest import ISOLATED_NAMESPACE, disclose, mythos, quick_policy, running, wait_stage
from tests.test_cli import CLI
from worker import REVIEW, WorkerConfig, build_workers

WORKFLOW_METADATA = "__temporal_workflow_metadata"
ENV = {"PATH": str(Path(sys.executable).parent), "COLUMNS": "200", "TEMPORAL_CONFIG_FILE": "/nonexistent"}
TEST_OUTPUT = Path(__file__).resolve().parent.parent / "test-output"


async def finish(client: Client, rid: str) -> ReviewStatus:
    return await client.get_workflow_handle(rid, result_type=ReviewStatus).result()


def failed_checks(trail) -> list[str]:
    return [f"{c.name}: {c.detail}" for c in trail.checks if not c.ok]


async def test_a_covered_review_reads_as_its_record(client: Client, policy: Policy) -> None:
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    nsa = AgencyClient(client, Agency.NSA)
    await nsa.determine(rid, covered=True, agencies=["dod", "dhs"], rationale="offensive cyber capability")
    await wait_stage(client, rid, Stage.UNDER_REVIEW)
    dod = AgencyClient(client, Agency.DOD)
    await dod.submit_finding(rid, kind="capability", severity="critical", summary="heap overflow exploit")
    # A refused message never reaches the history, so it is not in the trail either.
    with pytest.raises(Rejected):
        await AgencyClient(client, Agency.COMMERCE).submit_finding(rid, kind="capability", severity="low", summary="x")
    await dod.conclude(rid, summary="done")
    await AgencyClient(client, Agency.DHS).conclude(rid)
    final = await finish(client, rid)

    trail = await audit_workflow(client, rid)
    assert trail.status == "COMPLETED" and trail.workflow_type == "ModelReview"
    record = trail.record
    assert isinstance(record, ReviewRecord)
    # The review's own record (its state replayed, held to its result), not rebuilt: the same transitions.
    assert record.read_from == "replay" and record.transitions == final.transitions
    under_review = record.transitions[3]
    assert under_review.actor == "nsa" and "dod, dhs" in under_review.reason
    assert under_review.message_id == record.determination.message_id
    assert "CONCLUDED_EARLY" in record.transitions[4].reason and "last: dhs" in record.transitions[4].reason
    assert record.transitions[4].actor == "dhs"
    assert record.outcome == Outcome.CONCLUDED_EARLY
    assert {v.agency for v in record.standards} == {"whitehouse", "dod", "dhs", "commerce", "treasury"}
    assert next(v for v in record.standards if v.agency == "dod").verdict == "concern"
    assert record.determination is not None and record.determination.sender == "nsa"
    assert record.determination.rationale == "offensive cyber capability"
    # Every applied message, with the client it came from, its signature verified again here.
    messages = {m.message_id: m for m in record.messages}
    assert messages[record.determination.message_id].sent_from, "the client it came from"
    assert [(m.update, m.sender, m.signature) for m in record.messages] == [
        ("record_determination", "nsa", "verified"), ("submit_finding", "dod", "verified"),
        ("conclude_review", "dod", "verified"), ("conclude_review", "dhs", "verified"),
    ]  # fmt: skip
    assert [(f.sender, f.summary) for f in record.findings] == [("dod", "heap overflow exploit")]
    assert [c.sender for c in record.conclusions] == ["dod", "dhs"]
    granted = {p.partner_id: p for p in record.releases}
    assert granted["gridco"].granted and granted["gridco"].grant_id
    assert not granted["shadyscan"].granted and "revoked" in granted["shadyscan"].reason
    assert record.window_deadline == final.window_deadline
    assert failed_checks(trail) == []
    assert not any("commerce" == e.actor for e in trail.timeline if e.kind == "message")
    texts = [e.text for e in trail.timeline]
    assert any(t.startswith("DoD standards check: completed: concern") for t in texts)
    assert any(t.startswith("review window (30 days): started") for t in texts)

    # The closed review's details keep why: how the hold ended, and who was not granted access.
    metadata = await client.get_workflow_handle(rid).query(WORKFLOW_METADATA, result_type=WorkflowMetadata)
    assert "why: CONCLUDED_EARLY: every participating agency concluded (last: dhs)" in metadata.current_details
    assert "not granted: shadyscan" in metadata.current_details

    # Doctored histories, as an insider with the payload key could write them: the NSA's words changed
    # after the fact (its signature no longer verifies), or its message taken out (the record's
    # stage change has no cause left, and the record names a message the history lacks).
    decoded = await decode(await fetch(client, rid), data_converter())
    [nsa_said] = [e for e in decoded.events if e.name == "record_determination" and e.type.endswith("ACCEPTED")]
    altered = dataclasses.replace(nsa_said, values=[{**nsa_said.values[0], "rationale": "nothing to see"}])
    for events, broken in (
        ([altered if e is nsa_said else e for e in decoded.events], "signature does not verify for nsa"),
        ([e for e in decoded.events if e is not nsa_said], "not in the history"),
    ):
        doctored = dataclasses.replace(decoded, events=events)
        reader = interpreter_for("ModelReview")
        await reader.load(doctored)
        failed = {c.name: c.detail for c in reader.interpret(doctored).checks if not c.ok}
        messages = next(d for n, d in failed.items() if n.startswith("every applied message is in the history"))
        assert broken in messages, failed
    # (With the message taken out, the replay fails too: the code would not have written that history.)
    assert "replay failed" in failed["the review's own record was read"], failed
    assert "UNDER_REVIEW (nsa): no update" in failed["every stage change has its cause in the history"], failed

    markdown = to_markdown(trail)
    assert "## Transitions" in markdown and "heap overflow exploit" in markdown
    assert "never enters the event history" in markdown
    TEST_OUTPUT.mkdir(exist_ok=True)
    (TEST_OUTPUT / "audit-covered-review.md").write_text(markdown)


async def test_nsa_silence_and_an_elapsed_window(client: Client, env: WorkflowEnvironment) -> None:
    strict = quick_policy(version="strict-audit.1", on_nsa_silence="covered", default_participants=[Agency.DHS])
    lab = f"SilentLab-{uuid.uuid4().hex[:8]}"
    rid = await disclose(client, mythos(lab=lab), strict)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    handle = client.get_workflow_handle(rid)
    await env.fast_forward(handle, timedelta(days=15))
    await wait_stage(client, rid, Stage.UNDER_REVIEW)
    await env.fast_forward(handle, timedelta(days=31))
    final = await finish(client, rid)
    assert final.outcome == Outcome.WINDOW_ELAPSED

    trail = await audit_workflow(client, rid)
    record = trail.record
    assert isinstance(record, ReviewRecord)
    d = record.determination
    assert d is not None and record.determination_by_default and d.sender == "policy" and d.agencies == ["dhs"]
    under_review = next(t for t in record.transitions if t.stage == Stage.UNDER_REVIEW)
    assert under_review.actor == "policy" and "policy's default" in under_review.reason
    releasing = next(t for t in record.transitions if t.stage == Stage.RELEASING)
    assert releasing.reason.startswith("WINDOW_ELAPSED") and "dhs had not concluded" in releasing.reason
    assert releasing.at - record.window_deadline < timedelta(minutes=1)
    fired = [e.text for e in trail.timeline if e.kind == "timer" and e.text.endswith("fired")]
    assert fired == ["NSA determination deadline: fired", "review window (30 days): fired"]
    # A default is never read as the NSA's decision: not by the audit, the list, or the UI's details.
    assert failed_checks(trail) == [
        "the determination came from the NSA by its deadline: no: the NSA was silent; the policy's default "
        "(covered) applied instead"
    ]
    held = {c.name: c.ok for c in trail.checks}
    assert held["the policy's default applied only when the NSA's deadline had passed"]
    assert held["the DeterminedBy search attribute names who decided"]
    described = await handle.describe()
    assert described.typed_search_attributes.get(sa.DETERMINED_BY) == "policy-default"
    metadata = await handle.query(WORKFLOW_METADATA, result_type=WorkflowMetadata)
    assert "by the policy's default" in metadata.current_details
    # Closed, its details still say why: the window elapsed with DHS not concluded.
    assert "why: WINDOW_ELAPSED" in metadata.current_details and "dhs had not concluded" in metadata.current_details
    for _ in range(100):  # visibility catches up
        report = await transparency_report(client, lab=lab)
        if report.determined:
            break
        await asyncio.sleep(0.1)
    assert report.determined_by == {"policy-default": 1}, "a default never counted as the NSA's decision"

    # Through the console script: the trail is printed, one line names the failed check, exit 1.
    address = client.service_client.config.target_host
    r = await asyncio.to_thread(run_cli, "audit", rid, "--json", "--address", address)
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["record"]["determination"]["sender"] == "policy"
    assert r.stderr.count("\n") == 1 and "1 check(s) failed: the determination came from the NSA" in r.stderr


async def test_silence_and_withdrawal(isolated: Client, worker_config: WorkerConfig, policy: Policy) -> None:
    quick = quick_policy(
        version="quick-audit.1",
        standards_check_timeout=timedelta(seconds=2),
        standards_check_attempt_timeout=timedelta(seconds=1),
    )
    everyone_but_dod = [REVIEW, "whitehouse", "dhs", "commerce", "treasury", "nsa"]
    async with running(build_workers(isolated, everyone_but_dod, worker_config)):
        rid = await disclose(isolated, mythos(), quick)
        await wait_stage(isolated, rid, Stage.AWAITING_DETERMINATION, timeout=20)
        await LabClient(isolated).withdraw(rid, "leaving the program")
        await finish(isolated, rid)
        metadata = await isolated.get_workflow_handle(rid).query(WORKFLOW_METADATA, result_type=WorkflowMetadata)
    trail = await audit_workflow(isolated, rid)
    record = trail.record
    assert isinstance(record, ReviewRecord)
    dod = next(v for v in record.standards if v.agency == "dod")
    assert dod.verdict == "no_response" and dod.rationale == "no answer within 2 s", "the review's own words"
    assert record.transitions[-1].stage == Stage.WITHDRAWN
    assert record.transitions[-1].actor == "lab:anthropic" and record.transitions[-1].reason == "leaving the program"
    assert record.withdrawal and record.withdrawal.sender == "lab:anthropic"
    assert record.transitions[-1].message_id == record.withdrawal.message_id
    assert record.outcome == Outcome.WITHDRAWN and record.determination is None
    assert failed_checks(trail) == []
    # Closed, its details still say at which stage the lab withdrew, and why.
    assert "withdrawn at AWAITING_DETERMINATION by lab:anthropic: leaving the program" in metadata.current_details


async def test_any_workflow_type_gets_a_generic_timeline(client: Client, policy: Policy) -> None:
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    decoded = await decode(await fetch(client, rid), data_converter())
    trail = Interpreter().interpret(decoded)
    assert trail.status == "RUNNING" and trail.closed_at is None
    texts = [e.text for e in trail.timeline]
    assert "ModelReview started" in texts
    assert any("ReviewStage=AWAITING_DETERMINATION" in t for t in texts)
    assert any(t.startswith("NSA determination deadline: started") for t in texts)
    # The review's own interpreter reads an open review too.
    open_trail = await audit_workflow(client, rid)
    assert open_trail.status == "RUNNING" and open_trail.record.stage == Stage.AWAITING_DETERMINATION
    assert open_trail.record.read_from == "replay", "an open run's record: its history replayed by the workflow code"
    assert open_trail.record.determination_deadline is not None and failed_checks(open_trail) == []
    await LabClient(client).withdraw(rid, "test finished")


def cli_env() -> dict[str, str]:
    """The CLI's environment: no profile file, and the session's FRONTIER_REVIEW_* settings."""
    return {**ENV, **{k: v for k, v in os.environ.items() if k.startswith("FRONTIER_REVIEW_")}}


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=cli_env(), timeout=timeout)


async def test_demo_review_audited_from_the_server_and_from_a_temporal_cli_export(
    client: Client, tmp_path: Path
) -> None:
    address = client.service_client.config.target_host
    since = datetime.now(UTC).isoformat(timespec="seconds")
    # The demo brings its own workers (Treasury's with the demo policy): on the isolated
    # namespace they never meet the session's.
    at = ("--address", address, "--namespace", ISOLATED_NAMESPACE)
    demo = await asyncio.to_thread(run_cli, "demo", *at)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    rid = re.search(r"review (review-\S+) under policy", demo.stdout).group(1)

    from_server = await asyncio.to_thread(run_cli, "audit", rid, "--json", *at)
    assert from_server.returncode == 0, from_server.stderr
    served = json.loads(from_server.stdout)
    assert [t["stage"] for t in served["record"]["transitions"]][-1] == "RELEASED"
    assert served["record"]["outcome"] == "CONCLUDED_EARLY"
    assert {f["sender"] for f in served["record"]["findings"]} == {"dod", "dhs"}

    # The same history, exported by the real `temporal` CLI, reads the same.
    export = tmp_path / "history.json"
    shown = await asyncio.to_thread(
        subprocess.run,
        [temporal_cli_path(), "workflow", "show", "-w", rid, *at, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    export.write_text(shown.stdout)
    from_file = await asyncio.to_thread(run_cli, "audit", "--history", str(export), "--json")
    assert from_file.returncode == 0, from_file.stderr
    exported = json.loads(from_file.stdout)
    assert exported["workflow_id"] == rid
    assert exported["record"] == served["record"] and exported["timeline"] == served["timeline"]
    trail = await audit_export(export)
    assert failed_checks(trail) == []

    md = await asyncio.to_thread(run_cli, "audit", "--history", str(export), "--markdown")
    assert md.returncode == 0 and md.stdout.startswith(f"# Audit trail: {rid}")
    assert "| RELEASED | review |" in md.stdout

    report = await asyncio.to_thread(run_cli, "report", "--since", since, "--json", *at)
    assert report.returncode == 0, report.stderr
    figures = json.loads(report.stdout)
    assert figures["reviews"] >= 1 and figures["by_outcome"]["CONCLUDED_EARLY"] >= 1
    assert figures["holds"]["ok"], figures["holds"]


async def test_audit_bad_input(client: Client, tmp_path: Path) -> None:
    address = client.service_client.config.target_host
    r = await asyncio.to_thread(run_cli, "audit", "--address", address)
    assert r.returncode == 2 and "name a review id" in r.stderr
    r = await asyncio.to_thread(run_cli, "audit", "--history", str(tmp_path / "nope.json"))
    assert r.returncode == 2 and "no such file" in r.stderr
    (tmp_path / "bad.json").write_text('{"events": []}')
    r = await asyncio.to_thread(run_cli, "audit", "--history", str(tmp_path / "bad.json"))
    assert r.returncode == 2 and "not a workflow history" in r.stderr
    r = await asyncio.to_thread(run_cli, "audit", "review-no-such-thing-1", "--address", address)
    assert r.returncode == 1 and "no workflow with id" in r.stderr


async def test_audit_refuses_a_history_it_cannot_decode(client: Client, policy: Policy, tmp_path: Path) -> None:
    """With another installation's keys every payload reads as refused: one line and exit 2, no
    plausible trail of failed checks."""
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    address = client.service_client.config.target_host
    elsewhere = KeyDirectory(tmp_path / "other-keys")
    elsewhere.init_development()
    wrong = {**cli_env(), "FRONTIER_REVIEW_KEYS_DIR": str(elsewhere.path)}
    wrong.pop("FRONTIER_REVIEW_PAYLOAD_KEYS", None)
    r = await asyncio.to_thread(
        subprocess.run, [CLI, "audit", rid, "--address", address], capture_output=True, text=True, env=wrong, timeout=60
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout == "" and r.stderr.count("\n") == 1
    assert "cannot decode the history" in r.stderr and "key" in r.stderr
    # An empty key directory is refused before anything is read.
    (tmp_path / "empty").mkdir()
    r = await asyncio.to_thread(
        subprocess.run,
        [CLI, "audit", rid, "--address", address],
        capture_output=True,
        text=True,
        env={**wrong, "FRONTIER_REVIEW_KEYS_DIR": str(tmp_path / "empty")},
        timeout=60,
    )
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    # A directory given as the history: one line, exit 2.
    r = await asyncio.to_thread(run_cli, "audit", "--history", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "directory" in r.stderr
    await LabClient(client).withdraw(rid, "test finished")
