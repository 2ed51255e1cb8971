"""Every path of the review lifecycle, on the real dev server, with time skipped where the
policy's clocks are days long."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.agency import AgencyClient, LabClient
from api.reviews import status
from domain import search_attributes as sa
from domain.agencies import STANDARDS_BODIES, Agency
from domain.messages import FindingKind, Severity, Verdict
from domain.policy import Policy
from domain.status import Outcome, ReviewStatus, Stage
from tests.conftest import disclose, mythos, quick_policy, vulnerability, wait_stage

NSA = Agency.NSA


async def finish(client: Client, review_id: str) -> ReviewStatus:
    return await client.get_workflow_handle(review_id, result_type=ReviewStatus).result()


async def test_not_covered_goes_straight_to_release(client: Client, policy: Policy) -> None:
    rid = await disclose(client, mythos(), policy)
    before = await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    assert {v.agency for v in before.standards} == set(STANDARDS_BODIES)
    assert before.pending_agencies == [NSA]
    await AgencyClient(client, NSA).determine(rid, covered=False, rationale="below every threshold that matters")
    final = await finish(client, rid)
    assert final.stage == Stage.RELEASED
    assert final.outcome == Outcome.NOT_COVERED
    assert final.covered is False
    assert final.window_deadline is None
    assert [t.stage for t in final.transitions] == [
        Stage.DISCLOSED,
        Stage.STANDARDS_CHECK,
        Stage.AWAITING_DETERMINATION,
        Stage.RELEASING,
        Stage.RELEASED,
    ]
    assert final.partners_granted == ["gridco", "shieldsec"]


async def test_standards_verdicts_come_from_each_agency_standard(client: Client, policy: Policy) -> None:
    quiet = mythos(
        # Every evaluation of the policy, each low (one left out would be "insufficient information").
        evaluations={name: 0.1 for name in policy.evaluations},
        training_compute_flop=1e24,
        safeguards_level="maximum",
    )
    rid = await disclose(client, quiet, policy)
    s = await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    assert {v.verdict for v in s.standards} == {Verdict.NO_CONCERN}
    loud = await disclose(client, mythos(), policy)
    s = await wait_stage(client, loud, Stage.AWAITING_DETERMINATION)
    by_agency = {v.agency: v for v in s.standards}
    assert by_agency[Agency.DOD].verdict == Verdict.CONCERN
    assert "exploitation" in by_agency[Agency.DOD].rationale
    assert by_agency[Agency.TREASURY].verdict == Verdict.NO_CONCERN
    assert by_agency[Agency.DOD].standard_version == "dod-fictional-2026.1"
    for review in (rid, loud):
        await LabClient(client).withdraw(review, "test finished")


async def test_covered_and_concluded_early(client: Client, policy: Policy) -> None:
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    r = await AgencyClient(client, NSA).determine(
        rid, covered=True, agencies=["dod", "dhs"], rationale="offensive cyber capability"
    )
    # The receipt shows the stage after the determination, not the stage it was sent at.
    assert (r.stage_before, r.stage, r.sender) == (Stage.AWAITING_DETERMINATION, Stage.UNDER_REVIEW, "nsa")
    assert r.pending_agencies == [Agency.DOD, Agency.DHS]
    assert len(r.model_dump_json()) < 600, "a receipt, not the whole state"
    s = await wait_stage(client, rid, Stage.UNDER_REVIEW)
    assert s.covered is True and s.transitions[-1].message_id == r.message_id
    assert s.window_deadline is not None
    determined_at = s.transitions[-1].at
    assert s.window_deadline - determined_at == timedelta(days=30)
    assert s.pending_agencies == [Agency.DOD, Agency.DHS]

    dod = AgencyClient(client, Agency.DOD)
    r = await dod.submit_finding(
        rid, kind="vulnerability", severity="critical", summary="heap overflow exploit", vulnerability=vulnerability()
    )
    assert r.stage == Stage.UNDER_REVIEW and not r.moved and "clearinghouse" in (r.follows or "")
    s = await status(client, rid)
    assert [f.kind for f in s.findings] == [FindingKind.VULNERABILITY]
    assert s.findings[0].severity == Severity.CRITICAL and s.findings[0].message_id == r.message_id
    r = await dod.conclude(rid)
    assert r.pending_agencies == [Agency.DHS] and r.stage == Stage.UNDER_REVIEW
    # The last conclusion closes the window: its receipt shows the release begun.
    r = await AgencyClient(client, Agency.DHS).conclude(rid, summary="nothing further")
    assert (r.stage_before, r.outcome) == (Stage.UNDER_REVIEW, Outcome.CONCLUDED_EARLY)
    assert r.stage in (Stage.RELEASING, Stage.RELEASED)

    final = await finish(client, rid)
    assert final.outcome == Outcome.CONCLUDED_EARLY
    assert final.stage == Stage.RELEASED
    assert len(final.findings) == 1
    released_at = final.transitions[-1].at
    assert released_at < final.window_deadline

    described = await client.get_workflow_handle(rid).describe()
    attrs = described.typed_search_attributes
    assert attrs.get(sa.REVIEW_STAGE) == "RELEASED"
    assert attrs.get(sa.COVERED) is True
    assert attrs.get(sa.WINDOW_DEADLINE) == final.window_deadline
    assert attrs.get(sa.POLICY_VERSION) == policy.version
    assert attrs.get(sa.LAB) == "Anthropic"
    assert attrs.get(sa.MODEL_NAME) == "Mythos"


async def test_window_elapses_at_thirty_days(client: Client, env: WorkflowEnvironment, policy: Policy) -> None:
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await AgencyClient(client, NSA).determine(rid, covered=True, agencies=["dod", "dhs"], rationale="covered")
    s = await wait_stage(client, rid, Stage.UNDER_REVIEW)
    await AgencyClient(client, Agency.DOD).conclude(rid)
    handle = client.get_workflow_handle(rid)

    # 29 days in, the window is still open: the review waits for DHS.
    await env.fast_forward(handle, timedelta(days=29))
    assert (await status(client, rid)).stage == Stage.UNDER_REVIEW

    await env.fast_forward(handle, timedelta(days=2))
    final = await finish(client, rid)
    assert final.outcome == Outcome.WINDOW_ELAPSED
    assert final.stage == Stage.RELEASED
    releasing = next(t for t in final.transitions if t.stage == Stage.RELEASING)
    # Released at the deadline, never after it: the window cannot hold a release longer.
    assert releasing.at >= s.window_deadline
    assert releasing.at - s.window_deadline < timedelta(minutes=1)


async def test_nsa_silence_applies_the_policy_default(client: Client, env: WorkflowEnvironment, policy: Policy) -> None:
    rid = await disclose(client, mythos(), policy)
    s = await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    assert s.determination_deadline is not None
    await env.fast_forward(client.get_workflow_handle(rid), timedelta(days=15))
    final = await finish(client, rid)
    assert final.outcome == Outcome.NOT_COVERED
    assert final.determination_by_default is True
    assert final.determination is not None and final.determination.sender == "policy"
    assert final.transitions[3].at >= s.determination_deadline


async def test_nsa_silence_with_a_covering_default_opens_the_window(client: Client, env: WorkflowEnvironment) -> None:
    strict = quick_policy(version="strict-test.1", on_nsa_silence="covered", default_participants=[Agency.DHS])
    rid = await disclose(client, mythos(), strict)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    handle = client.get_workflow_handle(rid)
    await env.fast_forward(handle, timedelta(days=15))
    s = await wait_stage(client, rid, Stage.UNDER_REVIEW)
    assert s.determination_by_default is True
    assert s.participating_agencies == [Agency.DHS]
    await env.fast_forward(handle, timedelta(days=31))
    final = await finish(client, rid)
    assert final.outcome == Outcome.WINDOW_ELAPSED
