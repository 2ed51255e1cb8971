"""Treasury's clearinghouse on the real dev server: from a review's finding to a case, through
the embargo (time skipped on the case itself) to disclosure."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities.clearinghouse import Outbox
from api.agency import AgencyClient
from api.clearinghouse import (
    CaseParty,
    OperatorClient,
    UnknownCase,
    VendorClient,
    case_status,
    clearinghouse_status,
)
from api.errors import Rejected
from api.reviews import status
from api.waiting import until
from domain import search_attributes as sa
from domain.case import (
    CaseState,
    CaseStatus,
    ExploitationObserved,
    ExtensionRequest,
    FixReady,
    NoticeKind,
    PatchDeployed,
)
from domain.clearinghouse import (
    CLEARINGHOUSE_ID,
    EXPLOITATION_OBSERVED,
    FIX_READY,
    PATCH_DEPLOYED,
    REQUEST_EXTENSION,
    VulnerabilityIntake,
)
from domain.messages import Message
from domain.policy import Policy
from domain.sectors import CRITICAL_INFRASTRUCTURE as CRITICAL
from domain.status import Stage
from domain.vulnerability import Priority, VulnerabilityReport
from infra.connection import data_converter
from tests.conftest import (
    disclose,
    mythos,
    report_signed,
    send_case,
    update_events,
    vulnerability,
    wait_stage,
)
from worker import WorkerConfig
from workflows.clearinghouse import Clearinghouse
from workflows.review import ModelReview
from workflows.sandbox import workflow_runner
from workflows.vulnerability_case import VulnerabilityCase

VENDOR = "vendor:tlskit-foundation"
S = CaseStatus


async def wait_case(client: Client, case_id: str, *statuses: CaseStatus, timeout: float = 30) -> CaseState:
    return await until(
        lambda: case_status(client, case_id),
        lambda c: c.status in statuses,
        timeout=timeout,
        interval=0.05,
        # The clearinghouse may still be starting the case.
        tolerate=(UnknownCase, RPCError, WorkflowQueryFailedError),
        what=f"{case_id} at {'/'.join(statuses)}",
        seen=lambda c: c.status,
    )


def advised(c: CaseState) -> set[str]:
    return {n.recipient for n in c.notices if n.kind == NoticeKind.OPERATOR_ADVISORY}


async def settled(client: Client, case_id: str) -> CaseState:
    """The case under embargo, with every critical-infrastructure sector's advisory sent."""
    return await until(
        lambda: wait_case(client, case_id, S.VENDOR_NOTIFIED, S.FIX_READY, S.PATCH_DISTRIBUTED),
        lambda c: advised(c) == {f"operator:{s.value}" for s in c.sectors if s in CRITICAL},
        timeout=30,
        interval=0.05,
        what=f"{case_id}: every critical sector's advisory",
        seen=lambda c: f"advised {sorted(advised(c))}",
    )


async def open_case(client: Client, policy: Policy, sender: str = "partner:shieldsec", **changes) -> CaseState:
    receipt = await report_signed(client, VulnerabilityIntake(sender=sender, report=vulnerability(**changes)), policy)
    assert not receipt.duplicate
    return await settled(client, receipt.case_id)


async def assert_rejected(client: Client, case_id: str, update: str, message: Message, reason: str) -> None:
    before = await case_status(client, case_id)
    with pytest.raises(Rejected, match=reason):
        await send_case(client, case_id, update, message)
    assert message.message_id not in await update_events(client, case_id), "a rejected update must write nothing"
    assert await case_status(client, case_id) == before


async def covered_review(client: Client, policy: Policy, agencies: list[str]) -> str:
    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await AgencyClient(client, "nsa").determine(rid, covered=True, agencies=agencies, rationale="cyber")
    await wait_stage(client, rid, Stage.UNDER_REVIEW)
    return rid


async def forwarded_case(client: Client, rid: str, finding_id: str, timeout: float = 30) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while finding_id not in (s := await status(client, rid)).clearinghouse_cases:
        assert loop.time() < deadline, f"{rid}: finding {finding_id} never reached the clearinghouse"
        await asyncio.sleep(0.05)
    return s.clearinghouse_cases[finding_id]


# ---------------------------------------------------------------- intake


async def test_a_review_finding_arrives_as_a_case(client: Client, policy: Policy) -> None:
    rid = await covered_review(client, policy, ["dod"])
    details = vulnerability(sectors=["energy", "cloud-provider"])
    s = await AgencyClient(client, "dod").submit_finding(
        rid, kind="vulnerability", severity="critical", summary="remote heap overflow", vulnerability=details
    )
    finding = s
    case_id = await forwarded_case(client, rid, finding.message_id)

    c = await settled(client, case_id)
    assert c.fingerprint == details.fingerprint
    # Relayed by Treasury (whose worker signs it), found by DoD in the review.
    assert [(r.sender, r.reference, r.found_by) for r in c.reports] == [("treasury", rid, "dod")]
    assert c.reviews == [rid], "the case names the review its finding came from"
    assert c.report.summary == details.summary
    assert (c.severity, c.base_score, c.priority) == ("critical", 9.8, Priority.P2)
    assert "affects critical infrastructure (energy)" in c.priority_reason
    assert [t.status for t in c.transitions] == [S.RECEIVED, S.VALIDATED, S.TRIAGED, S.VENDOR_NOTIFIED]
    assert c.embargo_deadline - c.vendor_notified_at == timedelta(days=45)
    # The vendor first, then the critical-infrastructure sector; the cloud provider waits for the patch.
    assert [(n.kind, n.recipient) for n in c.notices] == [
        (NoticeKind.VENDOR_NOTICE, VENDOR),
        (NoticeKind.OPERATOR_ADVISORY, "operator:energy"),
    ]
    attrs = (await client.get_workflow_handle(case_id).describe()).typed_search_attributes
    assert attrs.get(sa.CASE_STATUS) == "VENDOR_NOTIFIED"
    assert attrs.get(sa.SEVERITY) == "critical"
    assert attrs.get(sa.CASE_PRIORITY) == 2
    assert attrs.get(sa.SECTORS) == ["energy", "cloud-provider"]
    assert attrs.get(sa.EMBARGO_DEADLINE) == c.embargo_deadline
    assert attrs.get(sa.POLICY_VERSION) == policy.version

    # The review goes on to its release regardless.
    await AgencyClient(client, "dod").conclude(rid)
    final = await wait_stage(client, rid, Stage.RELEASED)
    assert final.clearinghouse_cases == {finding.message_id: case_id}
    assert final.cases == [case_id], "the review's record names the case its finding opened"


async def test_a_duplicate_finding_joins_the_same_case(client: Client, policy: Policy) -> None:
    details = vulnerability(sectors=["energy"])
    first = await covered_review(client, policy, ["dod"])
    s = await AgencyClient(client, "dod").submit_finding(
        first, kind="vulnerability", severity="high", summary="heap overflow", vulnerability=details
    )
    case_id = await forwarded_case(client, first, s.message_id)
    await settled(client, case_id)

    # Another review finds the same flaw (same product, versions, weakness, location; spelled
    # differently, scored differently, in another sector).
    again = VulnerabilityReport.model_validate(
        {
            **details.model_dump(),
            "product": details.product.upper(),
            "location": "  " + details.location.upper(),
            "cvss_vector": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "sectors": ["water"],
        }
    )
    second = await covered_review(client, policy, ["dhs"])
    s = await AgencyClient(client, "dhs").submit_finding(
        second, kind="vulnerability", severity="high", summary="same overflow", vulnerability=again
    )
    assert await forwarded_case(client, second, s.message_id) == case_id

    # A trusted partner reports it too, and has seen it exploited.
    receipt = await report_signed(
        client,
        VulnerabilityIntake(sender="partner:shieldsec", report=again.model_copy(update={"exploited": True})),
        policy,
    )
    assert (receipt.case_id, receipt.duplicate, receipt.case_closed) == (case_id, True, False)

    c = await settled(client, case_id)
    assert [(r.sender, r.found_by) for r in c.reports] == [
        ("treasury", "dod"),
        ("treasury", "dhs"),
        ("partner:shieldsec", ""),
    ]
    assert c.sectors == ["energy", "water"]
    assert c.exploited and c.priority == Priority.P1
    assert c.embargo_deadline - c.vendor_notified_at < timedelta(days=8), "exploitation shortened the embargo"
    assert {n.recipient for n in c.notices if n.kind == NoticeKind.OPERATOR_ADVISORY} == {
        "operator:energy",
        "operator:water",
    }


async def test_an_impact_free_report_is_invalid(client: Client, policy: Policy) -> None:
    details = vulnerability(cvss_vector="CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N")
    receipt = await report_signed(client, VulnerabilityIntake(sender="treasury", report=details), policy)
    c = await wait_case(client, receipt.case_id, S.INVALID)
    assert "describes no impact" in c.invalid_reason
    assert c.notices == [], "nobody is notified of an invalid report"
    with pytest.raises(Rejected, match="the case is closed \\(status INVALID\\)"):
        await VendorClient(client, details.vendor).fix_ready(receipt.case_id, ["1"])
    again = await report_signed(client, VulnerabilityIntake(sender="treasury", report=details), policy)
    assert (again.case_id, again.duplicate, again.case_closed) == (receipt.case_id, True, True)


# ---------------------------------------------------------------- the embargo


async def test_the_embargo_elapses_and_the_case_is_disclosed(
    client: Client, env: WorkflowEnvironment, policy: Policy
) -> None:
    c = await open_case(client, policy, sectors=["energy"])
    handle = client.get_workflow_handle(c.case_id)
    await env.fast_forward(handle, timedelta(days=44))
    assert (await case_status(client, c.case_id)).status == S.VENDOR_NOTIFIED

    await env.fast_forward(handle, timedelta(days=2))
    d = await wait_case(client, c.case_id, S.DISCLOSED)
    assert d.disclosure_reason == "embargo ended (45 days from vendor notification)"
    assert timedelta(0) <= d.disclosed_at - d.embargo_deadline < timedelta(minutes=1)
    assert d.notices[-1].kind == NoticeKind.PUBLIC_ADVISORY
    assert (await handle.describe()).typed_search_attributes.get(sa.CASE_STATUS) == "DISCLOSED"

    # Disclosed without a fix: the vendor's late fix still reaches the operators, and the case closes.
    await VendorClient(client, "TLSKit Foundation").fix_ready(c.case_id, ["3.2.5"])
    closed = await wait_case(client, c.case_id, S.CLOSED)
    assert closed.transitions[-1].reason == "disclosed; fix 3.2.5 distributed"
    assert closed.notices[-1].kind == NoticeKind.PATCH


async def test_a_case_disclosed_without_a_fix_closes_after_the_followup(
    client: Client, env: WorkflowEnvironment, policy: Policy
) -> None:
    c = await open_case(client, policy, sectors=[])
    await env.fast_forward(client.get_workflow_handle(c.case_id), timedelta(days=46 + 91))
    closed = await wait_case(client, c.case_id, S.CLOSED)
    assert closed.transitions[-1].reason == "no fix within 90 days of disclosure"


async def test_a_deployed_patch_discloses_before_the_embargo_ends(
    client: Client, policy: Policy, worker_config: WorkerConfig
) -> None:
    c = await open_case(client, policy, sectors=["cloud-provider", "energy"])
    vendor = VendorClient(client, "TLSKit Foundation")
    c = await vendor.fix_ready(c.case_id, ["3.2.5"], advisory="upgrade")
    assert c.status == S.FIX_READY
    c = await wait_case(client, c.case_id, S.PATCH_DISTRIBUTED)

    c = await OperatorClient(client, "energy").patch_deployed(c.case_id)
    assert c.status == S.PATCH_DISTRIBUTED, "cloud providers have not deployed yet"
    await OperatorClient(client, "cloud-provider").patch_deployed(c.case_id)
    c = await wait_case(client, c.case_id, S.CLOSED)

    assert [t.status for t in c.transitions][3:] == [
        S.VENDOR_NOTIFIED,
        S.FIX_READY,
        S.PATCH_DISTRIBUTED,
        S.DISCLOSED,
        S.CLOSED,
    ]
    assert c.disclosed_at < c.embargo_deadline
    assert c.disclosure_reason.startswith("patch deployed (operator:energy, operator:cloud-provider)")
    # Critical infrastructure first, the public last; recorded once each in Treasury's outbox,
    # with the registered operators of the sector (GridCo, for energy).
    sent = [
        (kind, recipient)
        for kind, recipient, _ in Outbox(worker_config.data_dir / "clearinghouse.db").notices(c.case_id)
    ]
    assert sent == [
        ("vendor-notice", VENDOR),
        ("operator-advisory", "operator:energy"),
        ("operator-advisory", "partner:gridco"),
        ("patch", "operator:energy"),
        ("patch", "partner:gridco"),
        ("patch", "operator:cloud-provider"),
        ("public-advisory", "public"),
    ]


async def test_exploitation_shortens_the_embargo(client: Client, env: WorkflowEnvironment, policy: Policy) -> None:
    c = await open_case(client, policy, sectors=["energy"])
    assert c.priority == Priority.P2
    # Any sector's operators may have seen it exploited.
    c = await OperatorClient(client, "water").exploitation_observed(c.case_id, "seen against a utility")
    assert c.exploited and c.priority == Priority.P1
    assert timedelta(days=7) <= c.embargo_deadline - c.vendor_notified_at < timedelta(days=7, minutes=1)
    attrs = (await client.get_workflow_handle(c.case_id).describe()).typed_search_attributes
    assert (attrs.get(sa.CASE_PRIORITY), attrs.get(sa.EMBARGO_DEADLINE)) == (1, c.embargo_deadline)
    with pytest.raises(Rejected, match="exploitation has been observed: the embargo cannot be extended"):
        await VendorClient(client, "TLSKit Foundation").request_extension(c.case_id, timedelta(days=1), "r")

    await env.fast_forward(client.get_workflow_handle(c.case_id), timedelta(days=8))
    d = await wait_case(client, c.case_id, S.DISCLOSED)
    assert d.disclosure_reason == "embargo ended (shortened to 7 days once exploitation was observed)"

    # Reported as exploited from the start: 7 days from vendor notification.
    e = await open_case(client, policy, exploited=True)
    assert e.embargo_deadline - e.vendor_notified_at == timedelta(days=7)


async def test_the_vendor_extends_the_embargo_up_to_the_cap(client: Client, policy: Policy) -> None:
    c = await open_case(client, policy)
    vendor = VendorClient(client, "TLSKit Foundation")
    longer = await vendor.request_extension(c.case_id, timedelta(days=30), "patch needs a hardware re-certification")
    assert longer.embargo_deadline - c.embargo_deadline == timedelta(days=30)
    assert longer.extended_by == timedelta(days=30)
    message = ExtensionRequest(sender=VENDOR, extension=timedelta(days=20), reason="more")
    await assert_rejected(
        client, c.case_id, REQUEST_EXTENSION, message, "exceeds the policy's cap of 45 days \\(15 days left\\)"
    )
    last = await vendor.request_extension(c.case_id, timedelta(days=15), "final")
    assert last.embargo_deadline - c.vendor_notified_at == timedelta(days=90)


# ---------------------------------------------------------------- bad input


async def test_wrong_party_and_wrong_stage_updates_are_rejected(client: Client, policy: Policy) -> None:
    c = await open_case(client, policy, sectors=["energy"])
    cid = c.case_id
    fix = dict(fixed_versions=["3.2.5"])
    # Another enrolled vendor, signing with its own key.
    await assert_rejected(
        client, cid, FIX_READY, FixReady(sender="vendor:meridian-controls", **fix), f"only the vendor \\({VENDOR}\\)"
    )
    await assert_rejected(client, cid, FIX_READY, FixReady(sender="operator:energy", **fix), "only the vendor")
    await assert_rejected(client, cid, PATCH_DEPLOYED, PatchDeployed(sender="operator:energy"), "no fix is ready yet")
    await assert_rejected(
        client, cid, PATCH_DEPLOYED, PatchDeployed(sender="operator:water"), "operators of water are not affected"
    )
    await assert_rejected(
        client, cid, PATCH_DEPLOYED, PatchDeployed(sender="partner:shieldsec"), "is not a party to this case"
    )
    await assert_rejected(
        client,
        cid,
        EXPLOITATION_OBSERVED,
        ExploitationObserved(sender="partner:shieldsec", evidence="e"),
        "cannot report exploitation",
    )
    await assert_rejected(
        client,
        cid,
        REQUEST_EXTENSION,
        ExtensionRequest(sender="operator:energy", extension=timedelta(days=1), reason="r"),
        "only the vendor",
    )

    accepted = FixReady(sender=VENDOR, **fix)
    await send_case(client, cid, FIX_READY, accepted)
    await wait_case(client, cid, S.PATCH_DISTRIBUTED)
    await assert_rejected(client, cid, FIX_READY, FixReady(sender=VENDOR, fixed_versions=["4"]), "already recorded")
    await CaseParty(client, "treasury").patch_deployed(cid, "confirmed by Treasury for every sector")
    await wait_case(client, cid, S.CLOSED)
    with pytest.raises(Rejected, match="the case is closed \\(status CLOSED\\)"):
        await OperatorClient(client, "energy").patch_deployed(cid)


async def test_an_unknown_reporter_is_rejected_and_nothing_recorded(client: Client, policy: Policy) -> None:
    await open_case(client, policy)  # the clearinghouse is running
    before = await clearinghouse_status(client)
    intake = VulnerabilityIntake(sender="mallory", report=vulnerability())
    with pytest.raises(Rejected, match="unknown signer 'mallory'"):
        await report_signed(client, intake, policy)
    assert intake.message_id not in await update_events(client, CLEARINGHOUSE_ID)
    assert (await clearinghouse_status(client)).reports == before.reports


async def test_a_resent_report_is_applied_once(client: Client, policy: Policy) -> None:
    intake = VulnerabilityIntake(sender="operator:energy", report=vulnerability())
    first = await report_signed(client, intake, policy)
    again = await report_signed(client, intake, policy)
    assert again == first
    assert len((await settled(client, first.case_id)).reports) == 1


async def test_recorded_histories_replay(client: Client, policy: Policy) -> None:
    """Determinism: a released review that forwarded a finding, its closed case, and the
    clearinghouse's run replay, in the sandbox, against the code as it is."""
    rid = await covered_review(client, policy, ["dod"])
    details = vulnerability(sectors=["energy"])
    s = await AgencyClient(client, "dod").submit_finding(
        rid, kind="vulnerability", severity="high", summary="s", vulnerability=details
    )
    case_id = await forwarded_case(client, rid, s.message_id)
    await settled(client, case_id)
    # A duplicate, linked to the case (its signature verified there too).
    await report_signed(client, VulnerabilityIntake(sender="operator:energy", report=details), policy)
    await VendorClient(client, "TLSKit Foundation").request_extension(case_id, timedelta(days=3), "testing")
    await VendorClient(client, "TLSKit Foundation").fix_ready(case_id, ["3.2.5"])
    await wait_case(client, case_id, S.PATCH_DISTRIBUTED)
    await OperatorClient(client, "energy").patch_deployed(case_id)
    await AgencyClient(client, "dod").conclude(rid)
    await wait_case(client, case_id, S.CLOSED)
    await client.get_workflow_handle(rid).result()

    closed = await case_status(client, case_id)
    assert [r.sender for r in closed.reports] == ["treasury", "operator:energy"]

    # The case's audit record: its reporter and the review it came from, each status change with
    # its reason, each notice once, the embargo kept; and the review's audit names the case.
    from audit import audit_workflow
    from audit.case import CaseRecord

    trail = await audit_workflow(client, case_id)
    assert (trail.workflow_type, trail.status) == ("VulnerabilityCase", "COMPLETED")
    record = trail.record
    assert isinstance(record, CaseRecord) and record.state is not None
    assert (record.reporter, record.found_by, record.reviews) == ("treasury", "dod", [rid])
    statuses = [c.status for c in record.status_changes]
    for case_stage in ("TRIAGED", "VENDOR_NOTIFIED", "FIX_READY", "DISCLOSED", "CLOSED"):
        assert case_stage in statuses
    assert all(c.reason for c in record.status_changes)
    assert [c.name for c in trail.checks if not c.ok] == [], trail.checks
    messages = [(e.actor, e.text.split(":")[0]) for e in trail.timeline if e.kind == "message"]
    assert ("vendor:tlskit-foundation", "fix_ready") in messages
    assert ("operator:energy", "patch_deployed") in messages
    review_trail = await audit_workflow(client, rid)
    assert review_trail.record.cases == [case_id]
    # A history in which the vendor was notified twice fails the check that says so.
    from audit.history import decode, fetch
    from audit.trail import interpreter_for

    decoded = await decode(await fetch(client, case_id), data_converter())
    notice = next(e for e in decoded.events if e.type == "ACTIVITY_TASK_COMPLETED" and e.name == "notify_vendor")
    decoded.events.insert(decoded.events.index(notice) + 1, dataclasses.replace(notice, id=notice.id + 100_000))
    doubled = interpreter_for("VulnerabilityCase").interpret(decoded)
    [failed] = [c for c in doubled.checks if not c.ok]
    assert failed.name == "each notice was sent exactly once" and "vendor-notice" in failed.detail

    replayer = Replayer(
        workflows=[ModelReview, Clearinghouse, VulnerabilityCase],
        data_converter=data_converter(),
        workflow_runner=workflow_runner(),
    )
    for workflow_id in (rid, case_id, CLEARINGHOUSE_ID):
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{workflow_id}: {result.replay_failure}"
