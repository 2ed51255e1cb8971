"""A message signed for one run of a review is refused by every other run: after withdraw + refile,
the withdrawn run's genuine, signed messages (captured by an insider who reads histories) are
replayed into the new run."""

from __future__ import annotations

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from api.agency import AgencyClient, LabClient
from api.reviews import status
from domain.messages import Determination, Withdrawal
from domain.policy import Policy
from domain.review import RECORD_DETERMINATION, WITHDRAW
from domain.status import ReviewStatus, Stage
from tests.conftest import disclose, mythos, signer_for, update_events, wait_stage
from tests.security.attackers import insider


async def test_the_withdrawn_runs_signed_messages_are_refused_by_the_refiled_run(
    client: Client, env: WorkflowEnvironment, policy: Policy, keys
) -> None:
    disclosure = mythos()
    rid = await disclose(client, disclosure, policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    first_run = (await client.get_workflow_handle(rid).describe()).run_id
    lab = (await status(client, rid)).lab
    # What the parties signed for the first run (the insider reads them from its history).
    determination = signer_for("nsa").sign(
        rid, RECORD_DETERMINATION, Determination(sender="nsa", covered=False, rationale="first run"), run_id=first_run
    )
    await LabClient(client).withdraw(rid, "refiling with a fix")
    withdrawn = await client.get_workflow_handle(rid, result_type=ReviewStatus).result()
    assert withdrawn.stage == Stage.WITHDRAWN
    lab_party = withdrawn.transitions[-1].actor
    old_withdrawal = signer_for(lab_party).sign(
        rid, WITHDRAW, Withdrawal(sender=lab_party, reason="replayed"), run_id=first_run
    )

    await disclose(client, disclosure, policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    second_run = (await client.get_workflow_handle(rid).describe()).run_id
    assert second_run != first_run and lab

    mallory = await insider(env, client.namespace, keys)
    for update, message in ((RECORD_DETERMINATION, determination), (WITHDRAW, old_withdrawal)):
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await mallory.get_workflow_handle(rid).execute_update(update, message, id=message.message_id)
        assert f"signed for run {first_run}" in str(refused.value.cause)
        assert message.message_id not in await update_events(client, rid)
    assert (await status(client, rid)).stage == Stage.AWAITING_DETERMINATION

    # The parties' own clients sign for the run the server names: accepted.
    decided = await AgencyClient(client, "nsa").determine(rid, covered=True, agencies=["dod"], rationale="r")
    assert decided.stage == Stage.UNDER_REVIEW
    assert (await status(client, rid)).determination.run_id == second_run
    await LabClient(client).withdraw(rid, "test finished")
