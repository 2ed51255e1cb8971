"""A reset cannot take back a release (red-team F1): anyone with namespace access can reset a released
review to before the NSA's determination. The reset run's history no longer shows the grants, but
the ledger does: the run takes them from there, so the lab cannot withdraw a model its partners
already have, and a second determination grants nobody again."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy

from activities.store import RecordStore
from api.agency import AgencyClient, LabClient
from api.errors import Rejected
from api.reviews import admissible
from audit import audit_workflow
from domain.agencies import REVIEW_TASK_QUEUE
from domain.disclosure import Disclosure
from domain.policy import Policy
from domain.review import DISCLOSE, WORKFLOW_TYPE, Filing, disclosure_digest
from domain.status import ReviewStatus, Stage
from domain.vulnerability import lab_party
from infra.keys import KeyDirectory
from tests.conftest import disclose, file_policy, mythos, wait_stage
from worker import WorkerConfig


async def reset_before_determination(client: Client, rid: str) -> str:
    """As the red team did: reset to the workflow task before the NSA's update. The new run's id."""
    events = (await client.get_workflow_handle(rid).fetch_history()).events
    update = next(e.event_id for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    task = max(
        e.event_id for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and e.event_id < update
    )  # fmt: skip
    reset = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=rid),
            reason="stranger reset", request_id=str(uuid.uuid4()), workflow_task_finish_event_id=task,
        )
    )  # fmt: skip
    return reset.run_id


async def released(client: Client, policy: Policy, disclosure: Disclosure | None = None) -> tuple[str, str]:
    rid = await disclose(client, disclosure or mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await AgencyClient(client, "nsa").determine(rid, covered=False, rationale="below the thresholds")
    first = await client.get_workflow_handle(rid, result_type=ReviewStatus).result()
    assert first.stage == Stage.RELEASED and first.partners_granted == ["gridco", "shieldsec"]
    return rid, (await client.get_workflow_handle(rid).describe()).run_id


async def test_a_reset_released_review_cannot_be_withdrawn_nor_granted_again(
    client: Client, worker_config: WorkerConfig, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = worker_config.store("review")
    rid, first_run = await released(client, policy)
    reset_run = await reset_before_determination(client, rid)
    s = await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    assert s.history_reset
    # The ledger's grants, read by the reset run (its own history no longer has them).
    for _ in range(100):
        if s.partners_granted:
            break
        await asyncio.sleep(0.1)
        s = await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    assert sorted(s.partners_granted) == ["gridco", "shieldsec"], s.releases

    with pytest.raises(Rejected, match="access has already been granted to gridco, shieldsec"):
        await LabClient(client).withdraw(rid, "changed our mind after release")

    # The second variant: determined again, the reset run releases, granting nobody a second time.
    await AgencyClient(client, "nsa").determine(rid, covered=False, rationale="fine again")
    final = await client.get_workflow_handle(rid, result_type=ReviewStatus).result()
    assert final.stage == Stage.RELEASED and final.withdrawal_reason is None
    assert sorted(final.partners_granted) == ["gridco", "shieldsec"], "each partner once in the record"
    ledger = store.grants(rid)
    assert sorted((g.partner_id, g.run_id) for g in ledger) == [("gridco", first_run), ("shieldsec", first_run)]
    assert {r.grant_id for r in final.releases if r.granted} == {g.grant_id for g in ledger}

    # The audit (on the review office's host, where the ledger is): the run was reset, which fails a
    # check; the ledger and the record agree; the header names the reset run, the trail the original.
    monkeypatch.setenv("FRONTIER_REVIEW_DATA_DIR", str(worker_config.data_dir))
    trail = await audit_workflow(client, rid)
    checks = {c.name: c for c in trail.checks}
    reset = checks["the run ran to its own end (not terminated, reset or failed from outside)"]
    assert not reset.ok and "history reset at event" in reset.detail and "stranger reset" in reset.detail
    assert checks["the ledger holds no grant for this review that the record does not show"].ok
    assert checks["the workflow's result is the state its history replays to"].ok
    assert trail.run_id == reset_run and first_run in [r.run_id for r in trail.earlier_runs]


async def test_the_audit_fails_when_the_ledger_holds_a_grant_the_record_does_not_show(
    client: Client, worker_config: WorkerConfig, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad day on the review office's host: the ledger holds a grant for a review whose record
    shows none (as the reset run recorded before this fix). The audit there says so and fails."""
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await LabClient(client).withdraw(rid, "not this one")
    await client.get_workflow_handle(rid).result()
    run_id = (await client.get_workflow_handle(rid).describe()).run_id
    ledger_grant = worker_config.store("review").grant(rid, "gridco", run_id).grant_id
    monkeypatch.setenv("FRONTIER_REVIEW_DATA_DIR", str(worker_config.data_dir))
    trail = await audit_workflow(client, rid)
    ledger = next(c for c in trail.checks if c.name.startswith("the ledger holds no grant"))
    assert not ledger.ok and f"gridco (grant {ledger_grant}, run {run_id})" in ledger.detail, ledger.detail


async def test_a_run_started_under_a_released_reviews_id_is_not_admitted(client: Client, policy: Policy) -> None:
    """The lab itself, past `disclose` (which refuses): a new run under the released review's id with
    a fresh, genuinely signed filing. Withdrawn, it would end the review WITHDRAWN with partners
    granted; the review office does not admit it."""
    disclosure = mythos()
    rid, _ = await released(client, policy, disclosure)
    filed = file_policy(policy)
    review = admissible(disclosure, filed, {})
    lab = lab_party(disclosure.lab)
    filing = Filing(
        sender=lab, disclosure_sha256=disclosure_digest(review.disclosure), policy_name=filed.name,
        policy_version=filed.version, signed_at=datetime.now(UTC),
    )  # fmt: skip
    review = review.model_copy(
        update={"filing": KeyDirectory().signer(lab).sign(rid, DISCLOSE, filing), "policy": None}
    )
    handle = await client.start_workflow(
        WORKFLOW_TYPE, review, id=rid, task_queue=REVIEW_TASK_QUEUE, result_type=ReviewStatus,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )  # fmt: skip
    second = await handle.result()
    assert second.genuine is False and second.partners_granted == []
    assert "already released to trusted partners" in (second.admission or "")


def test_the_ledger_grants_a_partner_once_per_review_whatever_run_asks(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "review.db")
    first = store.grant("review-x", "gridco", "run-1")
    again = store.grant("review-x", "gridco", "run-1")
    other_run = store.grant("review-x", "gridco", "run-2")
    other_review = store.grant("review-y", "gridco", "run-3")
    assert again.already_granted and again.grant_id == first.grant_id, "a retried grant is the same grant"
    assert other_run.already_granted and other_run.grant_id == first.grant_id and other_run.run_id == "run-1"
    assert not other_review.already_granted
    assert [(g.review_id, g.run_id) for g in store.grants("review-x")] == [("review-x", "run-1")]
