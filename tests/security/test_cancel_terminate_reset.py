"""What a namespace user can do and the review cannot prevent is seen: a cancel request is ignored
and recorded with who sent it; a reset to before the determination never turns a covered review
into a default 'not covered', and is flagged; a terminated run is never a normal outcome."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import ResetReapplyExcludeType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.agency import AgencyClient, LabClient
from api.reviews import status
from audit import audit_workflow
from domain import search_attributes as sa
from domain.policy import Policy
from domain.status import Stage
from tests.conftest import disclose, mythos, wait_stage
from tests.security.attackers import keyless
from worker import WorkerConfig


async def test_a_cancel_request_is_ignored_and_recorded_with_its_sender(
    client: Client, env: WorkflowEnvironment, policy: Policy
) -> None:
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    attacker = await keyless(env, client.namespace)
    await attacker.get_workflow_handle(rid).cancel()
    for _ in range(100):
        s = await status(client, rid)
        if s.cancel_requests:
            break
    assert len(s.cancel_requests) == 1 and s.stage == Stage.AWAITING_DETERMINATION
    described = await client.get_workflow_handle(rid).describe()
    assert described.status.name == "RUNNING"
    assert sa.INTEGRITY_CANCEL_REQUESTED in described.typed_search_attributes.get(sa.INTEGRITY)
    # The review goes on to its genuine outcome.
    await AgencyClient(client, "nsa").determine(rid, covered=False, rationale="r")
    final = await wait_stage(client, rid, Stage.RELEASED)
    assert final.outcome == "NOT_COVERED" and final.partners_granted
    trail = await audit_workflow(client, rid)
    assert any(e.actor == attacker.identity and "cancel requested" in e.text for e in trail.timeline)


async def reset_before_the_determination(client: Client, rid: str, identity: str) -> str:
    """`temporal workflow reset` to the last workflow task before the NSA's update, excluding
    updates (the issue's attack). Returns the new run's id."""
    history = await client.get_workflow_handle(rid).fetch_history()
    point = 0
    for e in history.events:
        if e.HasField("workflow_execution_update_accepted_event_attributes"):
            break
        if e.HasField("workflow_task_completed_event_attributes"):
            point = e.event_id
    response = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=rid),
            reason="mallory wants it released",
            workflow_task_finish_event_id=point,
            request_id=str(uuid.uuid4()),
            reset_reapply_exclude_types=[
                ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_UPDATE,
                ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL,
            ],
            identity=identity,
        )
    )
    return response.run_id


async def test_a_reset_to_before_the_determination_is_flagged_and_applies_no_default(
    client: Client, env: WorkflowEnvironment, policy: Policy, worker_config: WorkerConfig
) -> None:
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await AgencyClient(client, "nsa").determine(rid, covered=True, agencies=["dod"], rationale="r")
    await wait_stage(client, rid, Stage.UNDER_REVIEW)

    new_run = await reset_before_the_determination(client, rid, "mallory@reset")
    handle = client.get_workflow_handle(rid)
    assert (await handle.describe()).run_id == new_run
    # The NSA's deadline passes in the reset run: no default determination, no release.
    await env.fast_forward(handle, policy.determination_deadline + timedelta(hours=1))
    for _ in range(100):
        s = await status(client, rid)
        if s.history_reset:
            break
    assert s.history_reset and s.stage == Stage.AWAITING_DETERMINATION and s.determination is None
    assert worker_config.store("review").grants(rid) == []
    described = await handle.describe()
    assert sa.INTEGRITY_RESET in described.typed_search_attributes.get(sa.INTEGRITY)
    trail = await audit_workflow(client, rid)
    resets = [e for e in trail.timeline if "history RESET" in e.text]
    # The reset's reason is in the history; who asked is not (Temporal records "history-service").
    assert resets and "mallory wants it released" in resets[0].text

    # The NSA determines again (its client signs for the new run): the review goes on, still flagged.
    again = await AgencyClient(client, "nsa").determine(rid, covered=True, agencies=["dod"], rationale="again")
    assert again.stage == Stage.UNDER_REVIEW
    assert (await status(client, rid)).determination.run_id == new_run
    await wait_stage(client, rid, Stage.UNDER_REVIEW)
    await LabClient(client).withdraw(rid, "test finished")
