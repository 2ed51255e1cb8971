"""Release: vetting against the trusted-party registry, and access granted exactly once."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client

from activities.release import ReleaseDesk
from api.agency import AgencyClient
from domain.agencies import Agency
from domain.attestation import Attested
from domain.disclosure import TrustedPartner
from domain.policy import Policy
from domain.review import GRANT_ACCESS, PartnerRequest
from domain.status import ReviewStatus, Stage
from tests.conftest import disclose, mythos, running, wait_stage
from worker import WorkerConfig, build_workers

PARTNERS = [
    TrustedPartner(partner_id="gridco", name="GridCo Transmission", sector="energy"),
    TrustedPartner(partner_id="shadyscan", name="ShadyScan Ltd", sector="security-vendor"),
    TrustedPartner(partner_id="nobody-inc", name="Nobody Inc", sector="research"),
    TrustedPartner(partner_id="aquaworks", name="AquaWorks", sector="energy"),
    TrustedPartner(partner_id="firstnational", name="First National Clearing", sector="financial-services"),
]


async def release(client: Client, policy: Policy) -> ReviewStatus:
    rid = await disclose(client, mythos(partners=PARTNERS), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await AgencyClient(client, Agency.NSA).determine(rid, covered=False, rationale="r")
    return await client.get_workflow_handle(rid, result_type=ReviewStatus).result()


async def test_partners_that_fail_vetting_are_skipped_with_a_reason(client: Client, policy: Policy) -> None:
    final = await release(client, policy)
    assert final.stage == Stage.RELEASED
    assert final.partners_granted == ["gridco", "firstnational"]
    reasons = {p.partner_id: p.reason for p in final.partners_skipped}
    assert reasons["shadyscan"].startswith("registry status is revoked")
    assert reasons["nobody-inc"] == "not in the trusted-party registry"
    assert reasons["aquaworks"] == "registered in sector water, disclosed as energy"


class CrashAfterRecording(ReleaseDesk):
    """A grant worker that dies after writing the grant but before reporting it, once."""

    @activity.defn(name=GRANT_ACCESS)
    def grant_access(self, request: PartnerRequest) -> Attested:
        grant = super().grant_access(request)
        if activity.info().attempt == 1:
            raise RuntimeError("worker lost after recording the grant")
        return grant


async def test_a_retried_grant_is_one_grant(isolated: Client, worker_config: WorkerConfig, policy: Policy) -> None:
    store = worker_config.store("review")
    desk = CrashAfterRecording(store)
    async with running(build_workers(isolated, config=worker_config, release_desk=desk)):
        final = await release(isolated, policy)
    assert final.partners_granted == ["gridco", "firstnational"]
    ledger = store.grants(final.review_id)
    assert sorted(g.partner_id for g in ledger) == ["firstnational", "gridco"], "one row per partner, never two"

    history = await isolated.get_workflow_handle(final.review_id).fetch_history()
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert max(attempts) == 2, "the grant activity really was retried"
    # The failure's message is encrypted too (DefaultFailureConverterWithEncodedAttributes).
    last_failures = [
        e.activity_task_started_event_attributes.last_failure
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
        and e.activity_task_started_event_attributes.HasField("last_failure")
    ]
    assert last_failures, "the retried attempt carries the first attempt's failure"
    assert all(f.message == "Encoded failure" and f.HasField("encoded_attributes") for f in last_failures)
    raw = b"".join(e.SerializeToString() for e in history.events)
    assert b"worker lost after recording" not in raw


def test_the_ledger_records_a_grant_once(worker_config: WorkerConfig) -> None:
    store = worker_config.store("ledger-unit")
    first = store.grant("review-x", "gridco")
    second = store.grant("review-x", "gridco")
    assert first.already_granted is False
    assert second.already_granted is True
    assert second.grant_id == first.grant_id
    assert len(store.grants("review-x")) == 1
