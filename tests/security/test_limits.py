"""A release can never exceed Temporal's history limit: measured on a real release, the events
each partner adds, times the cap on partners, with every activity result forged and asked again
(the most an attacker completing activities by id can cost), stays under the limit."""

from __future__ import annotations

from temporalio.client import Client

from api.agency import AgencyClient
from domain.disclosure import MAX_PARTNERS
from domain.policy import Policy
from domain.status import ReviewStatus, Stage
from tests.conftest import disclose, mythos, wait_stage
from workflows.attested import ATTEMPTS

HISTORY_EVENT_LIMIT = 51_200  # Temporal's default (limit.historyCount.error)


async def test_the_largest_release_fits_the_history_limit(client: Client, policy: Policy) -> None:
    disclosure = mythos()
    rid = await disclose(client, disclosure, policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await AgencyClient(client, "nsa").determine(rid, covered=False, rationale="r")
    final = await client.get_workflow_handle(rid, result_type=ReviewStatus).result()
    assert final.stage == Stage.RELEASED and final.partners_granted

    history = await client.get_workflow_handle(rid).fetch_history()
    stages = [
        (e.event_id, e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
        for e in history.events
        if e.HasField("upsert_workflow_search_attributes_event_attributes")
    ]
    marks = {
        bytes(fields["ReviewStage"].data).strip(b'"').decode(): eid for eid, fields in stages if "ReviewStage" in fields
    }
    release_events = marks["RELEASED"] - marks["RELEASING"]
    per_partner = release_events / len(disclosure.partners)
    rest = len(history.events) - release_events
    worst = rest + per_partner * MAX_PARTNERS * ATTEMPTS
    print(f"release: {per_partner:.1f} events per partner, worst case {worst:.0f} events")
    assert worst < HISTORY_EVENT_LIMIT, f"{per_partner:.1f} events per partner: {worst:.0f} at worst"
