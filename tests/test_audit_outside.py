"""The audit is not fooled by what happened to a run from outside it (red-team F4, F5, F6): a result
doctored in an export, an export cut short, a run terminated or reset. Each fails a check (so
`audit` exits 1) and the trail shows what the history's own events say."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory

from api.agency import AgencyClient
from api.reviews import status
from api.waiting import until
from audit import audit_export, audit_workflow
from audit.markdown import to_markdown
from domain.policy import Policy
from domain.status import ReviewStatus, Stage
from tests.conftest import disclose, mythos, wait_stage

FORGED = "no offensive capability found; model is harmless"
RAN_TO_ITS_END = "the run ran to its own end (not terminated, reset or failed from outside)"
RESULT_REPLAYS = "the workflow's result is the state its history replays to"


async def settled(client: Client, rid: str) -> WorkflowHistory:
    """The history once the NSA's briefing is confirmed (nothing more happens until it decides)."""
    await until(lambda: status(client, rid), lambda s: s.nsa_briefed, timeout=30, interval=0.1, what="briefed")
    handle = client.get_workflow_handle(rid)
    history = await handle.fetch_history()
    for _ in range(100):
        await asyncio.sleep(0.3)
        again = await handle.fetch_history()
        if len(again.events) == len(history.events):
            return again
        history = again
    raise AssertionError(f"{rid}: the history never settled")


def failed(trail) -> dict[str, str]:
    return {c.name: c.detail for c in trail.checks if not c.ok}


async def released(client: Client, policy: Policy) -> str:
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await AgencyClient(client, "nsa").determine(rid, covered=False, rationale="below every threshold we hold")
    await client.get_workflow_handle(rid, result_type=ReviewStatus).result()
    return rid


async def test_a_doctored_result_in_an_export_fails_the_audit(client: Client, policy: Policy, tmp_path: Path) -> None:
    """F4: an insider with the payload key rewrites only the result of a completed run and re-seals it;
    every event and signed message stays genuine. The trail shows the replayed state."""
    rid = await released(client, policy)
    history = await client.get_workflow_handle(rid).fetch_history()
    genuine = tmp_path / "genuine.json"
    genuine.write_text(history.to_json())
    clean = await audit_export(genuine)
    assert failed(clean) == {}, failed(clean)

    done = next(e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
    payloads = done.workflow_execution_completed_event_attributes.result.payloads
    codec = client.data_converter.payload_codec
    assert codec is not None
    plain = await codec.decode(list(payloads))
    state = json.loads(plain[0].data)
    state["determination"]["rationale"] = FORGED
    for verdict in state["standards"]:
        verdict["verdict"], verdict["rationale"] = "no_concern", "no threshold met"
    plain[0].data = json.dumps(state).encode()
    sealed = await codec.encode(plain)
    del payloads[:]
    payloads.extend(sealed)
    doctored = tmp_path / "doctored.json"
    doctored.write_text(history.to_json())

    trail = await audit_export(doctored)
    problems = failed(trail)
    assert RESULT_REPLAYS in problems and "determination" in problems[RESULT_REPLAYS], problems
    assert "standards" in problems[RESULT_REPLAYS]
    assert trail.record.determination.rationale == "below every threshold we hold"
    assert FORGED not in to_markdown(trail) and "no threshold met" not in to_markdown(trail)


async def test_a_terminated_run_fails_the_audit_and_shows_how_it_ended(client: Client, policy: Policy) -> None:
    """F6: a run killed from outside is not a clean review: a check fails, and the trail shows
    TERMINATED where the stage goes, never the stage it was cut short at as if it stood there."""
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await client.get_workflow_handle(rid).terminate(reason="just because")
    trail = await audit_workflow(client, rid)
    problems = failed(trail)
    assert RAN_TO_ITS_END in problems and "TERMINATED" in problems[RAN_TO_ITS_END], problems
    assert trail.record.ended == "TERMINATED"
    assert "| stage | TERMINATED (cut short at AWAITING_DETERMINATION) |" in to_markdown(trail)


async def test_an_export_cut_short_says_so_and_fails(client: Client, policy: Policy, tmp_path: Path) -> None:
    """F5: a completed run's export cut after a few events is not an open review: the audit says the
    export ends without a close, and, with the server at hand, how many events the server has."""
    rid = await released(client, policy)
    history = await client.get_workflow_handle(rid).fetch_history()
    cut = tmp_path / "cut.json"
    data = json.loads(history.to_json())
    cut.write_text(json.dumps({"events": data["events"][:3]}))

    alone = await audit_export(cut)
    problems = failed(alone)
    said = "the export ends at event 3 without a close: the run was open when exported, or the export is incomplete"
    assert any(said in detail for detail in problems.values()), problems
    served = await audit_export(cut, client=client)
    detail = next(d for d in failed(served).values() if said in d)
    assert f"the server has {len(history.events)} events for this run (COMPLETED)" in detail

    # An export of a run that is open, read beside the server that has it as exported, holds.
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    open_export = tmp_path / "open.json"
    open_export.write_text((await settled(client, rid)).to_json())
    trail = await audit_export(open_export, client=client)
    assert not [c for c in trail.checks if not c.ok and "export" in c.name], failed(trail)
