"""An agency's key replaced while a review runs: the review reloads its keys from the review office
(`refresh_keys`) when the agency's client asks, and no one else's word changes what it believes."""

from __future__ import annotations

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from api.agency import AgencyClient
from api.reviews import status
from domain.clearinghouse import REFRESH_KEYS, REFRESH_TOO_SOON
from domain.messages import Conclusion
from domain.policy import Policy
from domain.review import CONCLUDE_REVIEW, KEY_MISMATCH
from domain.status import Stage
from infra.keys import KeyDirectory
from tests.conftest import disclose, mythos, wait_stage


async def test_an_agency_key_replaced_mid_review_reaches_the_running_review(
    client: Client, policy: Policy, keys: KeyDirectory
) -> None:
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await AgencyClient(client, "nsa").determine(rid, covered=True, agencies=["dod"], rationale="r")
    await wait_stage(client, rid, Stage.UNDER_REVIEW)
    old = keys.signer("dod")
    handle = client.get_workflow_handle(rid)
    run_id = (await handle.describe()).run_id
    # The session's key directory is shared: DoD's key is put back whatever happens here.
    saved = {f: f.read_bytes() for f in (keys.public_file, keys.anchors_file, keys.signing_file("dod"))}
    try:
        keys.add_party("dod", replace=True)
        new = keys.signer("dod")
        assert new.public_key_b64() != old.public_key_b64()

        # The review still holds DoD's old key: a message signed with the new one is refused, with
        # the key it holds as the refusal's detail, and nothing is recorded.
        message = new.sign(rid, CONCLUDE_REVIEW, Conclusion(sender="dod", summary="x"), run_id=run_id)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(CONCLUDE_REVIEW, message, id=message.message_id)
        cause = refused.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == KEY_MISMATCH
        assert cause.details == (old.public_key_b64(),)

        # DoD's own client: the review reloads its keys from the review office, once, and applies it.
        r = await AgencyClient(client, "dod", new).submit_finding(rid, kind="capability", severity="low", summary="s")
        assert r.stage == Stage.UNDER_REVIEW
        s = await status(client, rid)
        assert [(k.asked_for, k.changed) for k in s.key_refreshes] == [("dod", True)]
        assert [f.message_id for f in s.findings] == [r.message_id]

        # Now the old key is the stranger: refused for it, with the new key as the detail.
        stale = old.sign(rid, CONCLUDE_REVIEW, Conclusion(sender="dod", summary="y"), run_id=run_id)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(CONCLUDE_REVIEW, stale, id=stale.message_id)
        assert refused.value.cause.details == (new.public_key_b64(),)

        # Anyone may ask for a reload, but not again so soon: turned away, nothing written.
        with pytest.raises(WorkflowUpdateFailedError) as soon:
            await handle.execute_update(REFRESH_KEYS, "dod", id="flood-1", result_type=bool)
        assert soon.value.cause.type == REFRESH_TOO_SOON
        assert len((await status(client, rid)).key_refreshes) == 1

        await AgencyClient(client, "dod", new).conclude(rid)
        final = await wait_stage(client, rid, Stage.RELEASED)
        assert [t.actor for t in final.transitions if t.stage == Stage.RELEASING] == ["dod"]
    finally:
        for file, data in saved.items():
            file.write_bytes(data)
