"""Every update the review must turn away: a clear reason, and nothing written to history."""

from __future__ import annotations

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError

from api.agency import AgencyClient, LabClient
from api.errors import DuplicateDisclosure, Rejected, UnknownReview
from api.reviews import status
from domain.agencies import LAB, Agency
from domain.messages import Conclusion, Determination, ReviewFinding, Withdrawal
from domain.policy import Policy
from domain.review import CONCLUDE_REVIEW, RECORD_DETERMINATION, SUBMIT_FINDING, WITHDRAW
from domain.status import Stage
from tests.conftest import disclose, mythos, send_signed, update_events, wait_stage


async def send_as(client: Client, rid: str, update: str, message, update_id: str) -> None:
    try:
        await client.get_workflow_handle(rid).execute_update(update, message, id=update_id)
    except WorkflowUpdateFailedError as e:
        raise Rejected(e.cause.message) from None


async def assert_rejected(client: Client, rid: str, update: str, message, reason: str) -> None:
    before = await status(client, rid)
    with pytest.raises(Rejected, match=reason):
        await send_signed(client, rid, update, message)
    assert message.message_id not in await update_events(client, rid), "a rejected update must write nothing"
    # (The NSA's worker confirming its briefing meanwhile is not the rejected message's doing.)
    after = await status(client, rid)
    assert after.model_dump(exclude={"nsa_briefed"}) == before.model_dump(exclude={"nsa_briefed"})


async def test_determination_rejections(client: Client, policy: Policy) -> None:
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    d = dict(covered=True, agencies=[Agency.DOD], rationale="r")
    await assert_rejected(
        client, rid, RECORD_DETERMINATION, Determination(sender="dod", **d), "only the NSA determines coverage"
    )
    await assert_rejected(
        client, rid, RECORD_DETERMINATION, Determination(sender=LAB, **d), "only the NSA determines coverage"
    )
    await assert_rejected(
        client,
        rid,
        RECORD_DETERMINATION,
        Determination(sender="nsa", covered=True, rationale="r"),
        "must name the participating agencies",
    )
    await assert_rejected(
        client,
        rid,
        RECORD_DETERMINATION,
        Determination(sender="nsa", covered=False, agencies=[Agency.DOD], rationale="r"),
        "only to a covered determination",
    )
    # Findings and conclusions before the window opens are at the wrong stage.
    await assert_rejected(
        client,
        rid,
        SUBMIT_FINDING,
        ReviewFinding(sender="dod", kind="capability", severity="low", summary="s"),
        "at stage AWAITING_DETERMINATION, not UNDER_REVIEW",
    )
    first = Determination(sender="nsa", **d)
    await send_signed(client, rid, RECORD_DETERMINATION, first)
    await wait_stage(client, rid, Stage.UNDER_REVIEW)
    await assert_rejected(client, rid, RECORD_DETERMINATION, Determination(sender="nsa", **d), "already been recorded")
    await LabClient(client).withdraw(rid, "test finished")


async def test_review_window_rejections(client: Client, policy: Policy) -> None:
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await AgencyClient(client, "nsa").determine(rid, covered=True, agencies=["dod", "dhs"], rationale="r")
    await wait_stage(client, rid, Stage.UNDER_REVIEW)

    finding = dict(kind="capability", severity="high", summary="s")
    await assert_rejected(
        client, rid, SUBMIT_FINDING, ReviewFinding(sender="commerce", **finding), "commerce is not a participating"
    )
    await assert_rejected(client, rid, SUBMIT_FINDING, ReviewFinding(sender="cia", **finding), "unknown signer 'cia'")
    await assert_rejected(client, rid, SUBMIT_FINDING, ReviewFinding(sender=LAB, **finding), "unknown agency 'lab'")
    await assert_rejected(
        client, rid, CONCLUDE_REVIEW, Conclusion(sender="treasury"), "treasury is not a participating"
    )
    await assert_rejected(client, rid, WITHDRAW, Withdrawal(sender="dod", reason="r"), "only this review's lab")

    accepted = ReviewFinding(sender="dod", **finding)
    await send_signed(client, rid, SUBMIT_FINDING, accepted)
    # The same message again under another update id is a replay.
    replay = accepted.model_copy()
    with pytest.raises(Rejected, match="already applied"):
        await send_as(client, rid, SUBMIT_FINDING, replay, update_id="another-update-id")
    assert "another-update-id" not in await update_events(client, rid)

    await AgencyClient(client, "dod").conclude(rid)
    await assert_rejected(client, rid, CONCLUDE_REVIEW, Conclusion(sender="dod"), "dod has already concluded")
    await assert_rejected(
        client, rid, SUBMIT_FINDING, ReviewFinding(sender="dod", **finding), "dod has already concluded"
    )
    assert len((await status(client, rid)).findings) == 1
    await LabClient(client).withdraw(rid, "test finished")


async def test_a_resent_message_is_applied_once(client: Client, policy: Policy) -> None:
    """A sender that retries after a lost reply sends the same message id: one finding, not two."""
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await AgencyClient(client, "nsa").determine(rid, covered=True, agencies=["dod"], rationale="r")
    await wait_stage(client, rid, Stage.UNDER_REVIEW)
    finding = ReviewFinding(sender="dod", kind="capability", severity="low", summary="s")
    first = await send_signed(client, rid, SUBMIT_FINDING, finding)
    again = await send_signed(client, rid, SUBMIT_FINDING, finding)
    assert again.message_id == first.message_id == finding.message_id
    assert len((await status(client, rid)).findings) == 1
    await LabClient(client).withdraw(rid, "test finished")


async def test_duplicate_disclosure_names_the_open_review(client: Client, policy: Policy) -> None:
    disclosure = mythos()
    rid = await disclose(client, disclosure, policy)
    with pytest.raises(DuplicateDisclosure, match=f"review {rid} is already open"):
        await disclose(client, disclosure, policy)
    # Withdraw and refile: a new review, with a new clock, under the same id.
    await LabClient(client).withdraw(rid, "refiling with corrected evaluations")
    await wait_stage(client, rid, Stage.WITHDRAWN)
    again = await disclose(client, disclosure, policy)
    assert again == rid
    s = await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    assert s.withdrawal_reason is None
    await AgencyClient(client, "nsa").determine(rid, covered=False, rationale="r")
    await wait_stage(client, rid, Stage.RELEASED)
    with pytest.raises(DuplicateDisclosure, match="already reviewed"):
        await disclose(client, disclosure, policy)


async def test_unknown_review(client: Client) -> None:
    with pytest.raises(UnknownReview, match="no review with id 'review-nobody-nothing-0'"):
        await status(client, "review-nobody-nothing-0")
    with pytest.raises(UnknownReview):
        await LabClient(client).withdraw("review-nobody-nothing-0", "r")
