"""The case audit's recomputed validation and triage, attacked: a payload-key holder who doctors
the report that opened the case as well (the recomputation is only as good as the report it
starts from), and genuine cases the recomputation must not fail (a duplicate that added sectors
or exploitation before the triage ran: the desk triages the case as it stands, not the first
report alone)."""

from __future__ import annotations

import dataclasses

from temporalio.client import Client

from api.clearinghouse import OperatorClient, case_status
from api.waiting import until
from audit import audit_workflow
from domain.case import CaseStatus, triage_of, validation_of
from domain.clearinghouse import CLEARINGHOUSE_TASK_QUEUE, VulnerabilityIntake
from domain.policy import Policy, load_policy
from domain.sectors import Sector
from domain.vulnerability import Priority, VulnerabilityReport
from tests.conftest import recording_anchors, report_signed, running, vulnerability
from tests.test_case_audit import VERSIONS, audited, decoded, failed
from tests.test_case_histories import NEWEST
from tests.test_clearinghouse import open_case, settled
from tests.test_clearinghouse_intake import end_cases
from tests.test_clearinghouse_runs import fresh_clearinghouse
from worker import WorkerConfig, build_workers

CHECK = "the validation and triage are what the case's report scores (recomputed here)"
LOW = "CVSS:3.1/AV:N/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"


async def test_a_doctored_report_with_its_triage_to_match_fails_the_audit() -> None:
    """The attacker edits the report in the case's start input (a low vector), then the validation,
    triage and record to what that report scores: every recomputation agrees with the doctored
    report. The report is signed by its reporter: that signature no longer verifies."""
    version = NEWEST  # the newest version: local activities, Treasury's signed keyring
    with recording_anchors(VERSIONS[version]):
        history = await decoded("case-closed", version)
        started = history.events[0]
        case = started.values[0]
        report = {**case["intake"]["report"], "cvss_vector": LOW}
        low = VulnerabilityReport.model_validate(report)
        assert low.fingerprint == VulnerabilityReport.model_validate(case["intake"]["report"]).fingerprint
        intake = {**case["intake"], "report": report}
        history.events[0] = dataclasses.replace(started, values=[{**case, "intake": intake}])
        triage, validation = triage_of(low).model_dump(mode="json"), validation_of(low).model_dump(mode="json")
        for i, e in enumerate(history.events):
            if e.completes_activity and e.name == "triage_case":
                history.events[i] = dataclasses.replace(e, values=[triage])
            if e.completes_activity and e.name == "validate_report":
                history.events[i] = dataclasses.replace(e, values=[validation])
        result = history.events[-1]
        state = {**result.values[0], "triage": triage, "report": report}
        history.events[-1] = dataclasses.replace(result, values=[state])
        trail = audited(history)
    assert triage["severity"] == "low"
    assert CHECK in failed(trail), [(c.name, c.detail) for c in trail.checks]


async def test_a_duplicate_linked_before_the_triage_passes_the_audit(
    isolated: Client, worker_config: WorkerConfig
) -> None:
    """A bad day: Treasury's case worker is away while its intake takes a report and a duplicate
    from an energy operator who has seen it exploited. The case's first task then links the
    duplicate before its triage: the desk triages the case as it stands (energy, exploited: P1).
    That is genuine; the audit must not fail it."""
    policy = load_policy("eo-2026")
    await fresh_clearinghouse(isolated)
    try:
        async with running(build_workers(isolated, ["treasury"], worker_config)):
            await report_signed(
                isolated, VulnerabilityIntake(sender="partner:shieldsec", report=vulnerability()), policy
            )
        details = vulnerability(sectors=[])
        treasury = build_workers(isolated, ["treasury"], worker_config)
        cases = [w for w in treasury if w.task_queue == CLEARINGHOUSE_TASK_QUEUE]
        async with running([w for w in treasury if w not in cases]):
            first = await report_signed(
                isolated, VulnerabilityIntake(sender="partner:shieldsec", report=details), policy
            )
            again = details.model_copy(update={"sectors": [Sector.ENERGY], "exploited": True})
            dup = await report_signed(isolated, VulnerabilityIntake(sender="operator:energy", report=again), policy)
        assert dup.duplicate and dup.case_id == first.case_id
        async with running(cases):  # back: the case's first task takes the report and its duplicate
            c = await settled(isolated, first.case_id)
            trail = await audit_workflow(isolated, first.case_id)
    finally:
        await end_cases(isolated)
    assert c.status == CaseStatus.VENDOR_NOTIFIED and c.priority == Priority.P1 and c.triage is not None
    assert c.triage.priority == Priority.P1, "triaged with the duplicate's sector and exploitation"
    assert failed(trail) == [], [(ch.name, ch.detail) for ch in trail.checks if not ch.ok]


CVSS4 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"


async def test_genuine_cases_of_every_kind_pass_the_recomputation(client: Client, policy: Policy) -> None:
    """Real cases the recomputation must hold: a CVSS 4.0 vector, a report exploited from the start,
    a duplicate (after the triage) adding a critical sector and exploitation, an operator's report
    of exploitation."""
    four = await open_case(client, policy, cvss_vector=CVSS4, sectors=["cloud-provider"])
    exploited = await open_case(client, policy, exploited=True, sectors=["energy"])
    joined = await open_case(client, policy, sectors=[])
    again = joined.report.model_copy(update={"sectors": [Sector.WATER, Sector.ENERGY], "exploited": True})
    await report_signed(client, VulnerabilityIntake(sender="operator:water", report=again), policy)
    observed = await open_case(client, policy, sectors=["cloud-provider"])
    await OperatorClient(client, "energy").exploitation_observed(observed.case_id, "seen in the wild")
    await until(
        lambda: case_status(client, joined.case_id), lambda c: c.exploited, timeout=30, what="the duplicate linked"
    )
    for c in (four, exploited, joined, observed):
        trail = await audit_workflow(client, c.case_id)
        assert CHECK in {ch.name for ch in trail.checks}, c.case_id
        assert failed(trail) == [], (c.case_id, [(ch.name, ch.detail) for ch in trail.checks if not ch.ok])
    assert four.triage is not None and four.triage.cvss_version == "4.0"


async def test_a_continued_case_whose_reporter_has_no_key_any_more_passes() -> None:
    """A partner suspended during a long embargo has no key in the keyring a later run loads: the
    report was checked by the run that opened the case; the continued run's audit says so, and holds."""
    history = await decoded("case-open-continued")  # the first version: its keyring is the plain one
    load = next(e for e in history.events if e.completes_activity and e.name == "load_public_keys")
    reporter = history.events[0].values[0]["intake"]["sender"]
    keyring = {party: key for party, key in load.values[0].items() if party != reporter}
    history.events[history.events.index(load)] = dataclasses.replace(load, values=[keyring])
    trail = audited(history)
    assert failed(trail) == [], [(c.name, c.detail) for c in trail.checks if not c.ok]
    assert f"{reporter} has no key in this run's keyring" in next(c.detail for c in trail.checks if c.name == CHECK)
