"""Starting a `ModelReview` by hand with a chosen input (the issue's 'policy from the starter' and
squatting attacks), and a lab acting on another lab's review."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from api import reviews
from api.agency import LabClient
from api.errors import Rejected
from api.reviews import status
from domain import search_attributes as sa
from domain.agencies import REVIEW_TASK_QUEUE
from domain.ids import review_id_for
from domain.policy import Policy
from domain.review import DISCLOSE, WORKFLOW_TYPE, Filing, ReviewInput, disclosure_digest
from domain.signatures import Signer
from domain.status import ReviewStatus, Stage
from domain.vulnerability import lab_party
from tests.conftest import disclose, mythos, wait_stage
from tests.security.attackers import insider, keyless
from worker import WorkerConfig

# What the attacker presets: a review that looks released, genuine, under the order's policy.
LOOKS_DONE = [
    SearchAttributePair(sa.REVIEW_STAGE, "RELEASED"),
    SearchAttributePair(sa.OUTCOME, "NOT_COVERED"),
    SearchAttributePair(sa.GENUINE, True),
    SearchAttributePair(sa.POLICY_VERSION, "eo-2026.1"),
]


async def test_a_review_started_with_a_chosen_policy_does_nothing_and_the_lab_still_files(
    client: Client, env: WorkflowEnvironment, policy: Policy, worker_config: WorkerConfig, keys
) -> None:
    """The issue's attack: a 3 s NSA deadline labelled eo-2026.1, and a filing 'signed' for the lab
    with the attacker's key. Not admitted: no stage, no grant; the lab's own filing replaces it."""
    disclosure = mythos()
    rid = review_id_for(disclosure)
    chosen = policy.model_copy(update={"determination_deadline": timedelta(seconds=3)})
    mallory = Signer(lab_party(disclosure.lab), Ed25519PrivateKey.generate())
    forged = mallory.sign(
        rid,
        DISCLOSE,
        Filing(
            sender=mallory.party,
            disclosure_sha256=disclosure_digest(disclosure),
            policy_name="eo-2026",
            policy_version="eo-2026.1",
            signed_at=datetime.now(UTC),
        ),
    )
    attacker = await insider(env, client.namespace, keys)
    handle = await attacker.start_workflow(
        WORKFLOW_TYPE,
        ReviewInput(review_id=rid, disclosure=disclosure, filing=forged, policy=chosen),
        id=rid,
        task_queue=REVIEW_TASK_QUEUE,
        search_attributes=TypedSearchAttributes(LOOKS_DONE),
    )
    squatted = ReviewStatus.model_validate(await handle.result())
    assert (squatted.genuine, squatted.stage, squatted.outcome) == (False, Stage.DISCLOSED, None)
    assert "signature does not verify" in (squatted.admission or "")
    assert worker_config.store("review").grants(rid) == []
    described = await handle.describe()
    assert described.typed_search_attributes.get(sa.GENUINE) is False
    assert not [r async for r in reviews.list_reviews(client) if r.review_id == rid and r.genuine]

    # The lab's genuine filing of that very version is accepted, under the office's own policy.
    assert await disclose(client, disclosure, policy) == rid
    s = await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    assert s.genuine is True and s.policy_version == "eo-2026.1"
    assert s.determination_deadline - s.disclosed_at > timedelta(days=1), "the office's deadline, not 3 s"
    rows = [r async for r in reviews.list_reviews(client) if r.review_id == rid]
    assert sorted((r.genuine, r.status) for r in rows) == [(False, "COMPLETED"), (True, "RUNNING")]
    await LabClient(client).withdraw(rid, "test finished")


async def test_a_stuck_squatter_is_terminated_by_the_genuine_filing_with_the_reason_recorded(
    client: Client, env: WorkflowEnvironment, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A keyless client's start input is refused by the codec: the run can never decode it (stuck,
    its workflow task failing with the reason) and never acts. The lab's filing replaces it."""
    monkeypatch.setattr(reviews, "SEAL_WAIT", 1.0)
    disclosure = mythos()
    rid = review_id_for(disclosure)
    attacker = await keyless(env, client.namespace)
    squatter = await attacker.start_workflow(
        WORKFLOW_TYPE,
        {"review_id": rid, "disclosure": disclosure.model_dump(mode="json")},
        id=rid,
        task_queue=REVIEW_TASK_QUEUE,
        search_attributes=TypedSearchAttributes(LOOKS_DONE),
    )
    assert await disclose(client, disclosure, policy) == rid
    old = await client.get_workflow_handle(rid, run_id=squatter.result_run_id).describe()
    assert old.status == WorkflowExecutionStatus.TERMINATED
    history = await client.get_workflow_handle(rid, run_id=squatter.result_run_id).fetch_history()
    reason = next(e for e in history.events if e.HasField("workflow_execution_terminated_event_attributes"))
    assert "not a genuine review" in reason.workflow_execution_terminated_event_attributes.reason
    s = await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    assert s.genuine is True
    await LabClient(client).withdraw(rid, "test finished")


async def test_a_lab_acts_only_on_its_own_reviews(client: Client, policy: Policy, keys) -> None:
    rid = await disclose(client, mythos(), policy)
    other = await disclose(client, mythos(lab="Other Lab"), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    with pytest.raises(Rejected, match="only this review's lab \\(lab:anthropic\\) can withdraw, not 'lab:other-lab'"):
        await LabClient(client, keys.signer("lab:other-lab")).withdraw(rid, "not mine")
    assert (await status(client, rid)).withdrawal_reason is None
    for review in (rid, other):
        await LabClient(client).withdraw(review, "test finished")
