"""Treasury's keyring (`load_public_keys`) completed by id with one of the attacker's own, then a
message "signed" with the planted key: for the clearinghouse (its first load, before Treasury's
worker answers) and for a case (a `refresh_keys` the attacker asks for while Treasury's worker is
down). The forged keyring is not believed, the forged message is refused, and the attempt shows in
the status (which activity, why).

On the isolated namespace: the clearinghouse's workflows run without Treasury's activities, so the
attacker answers first (the race the review's attacker won 2 of 2 times)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import TimeSkipper, WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.clearinghouse import ClearinghouseDesk, ClearinghouseForwarder, Outbox
from activities.keyring import published_keyring
from api.clearinghouse import case_status, clearinghouse_status, report
from api.errors import Rejected
from api.waiting import until
from audit import audit_workflow
from domain import attestation
from domain.attestation import ResultSigner
from domain.case import CaseState, FixReady
from domain.clearinghouse import (
    CLEARINGHOUSE_ID,
    CLEARINGHOUSE_INTAKE_QUEUE,
    CLEARINGHOUSE_TASK_QUEUE,
    CLEARINGHOUSE_TASK_TIMEOUT,
    CLEARINGHOUSE_WORKFLOW,
    FIX_READY,
    LOAD_PUBLIC_KEYS,
    REFRESH_KEYS,
    REPORT_VULNERABILITY,
    SUBMIT_REPORT,
    TRIAGE_CASE,
    VALIDATE_REPORT,
    ClearinghouseState,
    ReportSubmission,
    VulnerabilityIntake,
)
from domain.policy import Policy, load_policy
from domain.signatures import Signer
from infra.keys import KeyDirectory
from tests.conftest import report_signed, running, signer_for, vulnerability
from tests.security.attackers import complete_by_id, insider
from tests.test_clearinghouse import open_case
from tests.test_clearinghouse_intake import end_cases
from tests.test_clearinghouse_runs import fresh_clearinghouse
from worker import WorkerConfig, build_workers
from workflows.clearinghouse import EVENTS_PER_RUN, Clearinghouse
from workflows.messages import KEYRING_RETRY
from workflows.sandbox import workflow_runner
from workflows.vulnerability_case import VulnerabilityCase


def workflows_only(client: Client, keys: KeyDirectory, config: WorkerConfig) -> list[Worker]:
    """The clearinghouse's and the cases' workflows, with none of Treasury's activity tasks taken
    from the server. A case's first keyring, validation and triage are local activities of the worker
    that runs it (patch case-local-activities): those it runs itself (`no_remote_activities`), as a
    case's worker must to replay one."""
    attestation.pin(keys.trust_anchors())
    desk = ClearinghouseDesk(
        Outbox(config.data_dir / "clearinghouse.db"),
        attester=ClearinghouseForwarder(client, load_policy(config.clearinghouse_policy)).attester,
    )
    local = [desk.load_public_keys, desk.validate_report, desk.triage_case]
    return [
        Worker(
            client, task_queue=CLEARINGHOUSE_INTAKE_QUEUE, workflows=[Clearinghouse], workflow_runner=workflow_runner()
        ),
        Worker(
            client,
            task_queue=CLEARINGHOUSE_TASK_QUEUE,
            workflows=[Clearinghouse, VulnerabilityCase],
            workflow_runner=workflow_runner(),
            activities=local,
            activity_executor=ThreadPoolExecutor(max_workers=4),
            no_remote_activities=True,
        ),
    ]


async def start_clearinghouse(client: Client, policy: Policy) -> WorkflowHandle:
    """The clearinghouse started empty, as Treasury's intake starts it, before any worker runs it."""
    return await client.start_workflow(
        CLEARINGHOUSE_WORKFLOW,
        ClearinghouseState(policy_version=policy.version, policy=policy.clearinghouse),
        id=CLEARINGHOUSE_ID,
        task_queue=CLEARINGHOUSE_INTAKE_QUEUE,
        task_timeout=CLEARINGHOUSE_TASK_TIMEOUT,
    )


async def keyring_loads(client: Client, workflow_id: str) -> tuple[list[str], list[str]]:
    """The `load_public_keys` activities of the workflow's current run: (scheduled, still open)."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    scheduled: dict[int, str] = {}
    closed: set[int] = set()
    for e in history.events:
        if e.HasField("activity_task_scheduled_event_attributes"):
            a = e.activity_task_scheduled_event_attributes
            if a.activity_type.name == LOAD_PUBLIC_KEYS:
                scheduled[e.event_id] = a.activity_id
        for field in (
            "activity_task_completed_event_attributes",
            "activity_task_failed_event_attributes",
            "activity_task_timed_out_event_attributes",
            "activity_task_canceled_event_attributes",
        ):
            if e.HasField(field):
                closed.add(getattr(e, field).scheduled_event_id)
    return list(scheduled.values()), [a for s, a in scheduled.items() if s not in closed]


async def forge_open_loads(
    attacker: Client,
    workflow_id: str,
    forgery: Callable[[str], object],
    until: Callable[[list[str]], bool],
    timeout: float = 30,
) -> list[str]:
    """Complete by id every keyring load the workflow schedules, each with `forgery(activity_id)`,
    until `until(answered)`; the ids answered."""
    answered: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not until(answered):
        assert loop.time() < deadline, f"{workflow_id}: still waiting after forging {answered}"
        _, still_open = await keyring_loads(attacker, workflow_id)
        for activity_id in still_open:
            if activity_id in answered:
                continue
            try:
                await complete_by_id(attacker, workflow_id, activity_id, forgery(activity_id))
                answered.append(activity_id)
            except RPCError:
                pass  # closed meanwhile
        await asyncio.sleep(0.05)
    return answered


@asynccontextmanager
async def clearinghouse_of_its_own(client: Client) -> AsyncIterator[None]:
    """The isolated namespace's clearinghouse for one test: none left over from others before it,
    and after it, the clearinghouse and the cases it opened ended (so no later worker meets them)."""
    await fresh_clearinghouse(client)
    try:
        yield
    finally:
        await client.get_workflow_handle(CLEARINGHOUSE_ID).terminate("test finished")
        await end_cases(client)


async def test_a_forged_keyring_completed_by_id_lets_nobody_report_as_a_party(
    env: WorkflowEnvironment, isolated: Client, worker_config: WorkerConfig, policy: Policy, keys: KeyDirectory
) -> None:
    """The clearinghouse's first keyring load, completed by an insider (it holds the payload key)
    with the genuine keyring but partner:shieldsec's key replaced by its own; then a report 'from
    partner:shieldsec' signed with that key."""
    async with clearinghouse_of_its_own(isolated):
        mallory = Signer("partner:shieldsec", Ed25519PrivateKey.generate())
        forged = {**published_keyring(keys), "partner:shieldsec": mallory.public_key_b64()}
        attacker = await insider(env, isolated.namespace, keys)
        await start_clearinghouse(isolated, policy)
        async with running(workflows_only(isolated, keys, worker_config)):
            answered = await forge_open_loads(attacker, CLEARINGHOUSE_ID, lambda _: forged, lambda a: len(a) == 1)
        # Treasury's worker comes up: it answers the policy (and whatever keyring load is still open).
        async with running(build_workers(isolated, ["treasury"], worker_config)):
            impostor = VulnerabilityIntake(sender="partner:shieldsec", report=vulnerability(product="Backdoored"))
            with pytest.raises(Rejected, match="signature does not verify for partner:shieldsec"):
                await report(isolated, impostor, policy, mallory)
            # The genuine partner is still heard, with its own key.
            genuine = await report_signed(
                isolated, VulnerabilityIntake(sender="partner:shieldsec", report=vulnerability()), policy
            )
            assert not genuine.duplicate
            view = await clearinghouse_status(isolated)
        # One case (the genuine report's); the impostor's report refused. Counted once, or again for
        # each copy the API handed in while the clearinghouse was slow to answer (seen with two suites
        # running at once: every copy of a refused report is refused, and counted, on its own).
        assert view.cases_opened == 1 and view.refused >= 1, (view.cases_opened, view.refused)
        # Visible: which keyring load was not believed, and why.
        assert [(u.activity_id, u.party) for u in view.unverified_results] == [(answered[0], "treasury")]
        assert "result is not signed" in view.unverified_results[0].reason


async def test_a_refresh_answered_with_a_forged_keyring_lets_nobody_speak_for_the_vendor(
    env: WorkflowEnvironment, isolated: Client, worker_config: WorkerConfig, policy: Policy, keys: KeyDirectory
) -> None:
    """Treasury's worker is down; the attacker asks a case to reload its keys (anyone may) and
    answers every load by id: a plaintext keyring with the vendor's key replaced, then the same
    keyring 'signed' by Treasury with a key of its own. Then a fix 'from the vendor' (which would
    start the patch's distribution and let the case disclose early)."""
    async with clearinghouse_of_its_own(isolated):
        async with running(build_workers(isolated, ["treasury"], worker_config)):
            case = await open_case(isolated, policy)
        vendor = Signer(case.vendor_party, Ed25519PrivateKey.generate())
        forged = {
            **published_keyring(keys),
            vendor.party: vendor.public_key_b64(),
            "vendor:mallory": vendor.public_key_b64(),
        }
        own_treasury_key = ResultSigner("treasury", Ed25519PrivateKey.generate())
        attacker = await insider(env, isolated.namespace, keys)
        run_id = (await attacker.get_workflow_handle(case.case_id).describe()).run_id

        def forgery(activity_id: str) -> object:
            if activity_id.endswith("#2"):
                return own_treasury_key.attest_for(case.case_id, run_id, activity_id, forged)
            return forged

        async with running(workflows_only(isolated, keys, worker_config)):
            loads_before, _ = await keyring_loads(isolated, case.case_id)
            refresh = asyncio.create_task(
                attacker.get_workflow_handle(case.case_id).execute_update(
                    REFRESH_KEYS, "vendor:mallory", result_type=bool
                )
            )
            answered = await forge_open_loads(attacker, case.case_id, forgery, lambda _: refresh.done())
            known = await refresh
            fix = vendor.sign(case.case_id, FIX_READY, FixReady(sender=vendor.party, fixed_versions=["9.9.9"]))
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await attacker.get_workflow_handle(case.case_id).execute_update(
                    FIX_READY, fix, id=fix.message_id, result_type=CaseState
                )
            assert "signature does not verify for " + vendor.party in str(refused.value.cause)
            after = await case_status(isolated, case.case_id)
        assert not known, "the planted party is not in the keyring"
        assert after.fix is None and after.status == case.status
        # Each forged load is recorded with why it was not believed; none of them was Treasury's.
        assert [u.activity_id for u in after.unverified_results] == answered
        assert len(answered) == 3 and not set(answered) & set(loads_before)
        reasons = [u.reason for u in after.unverified_results]
        assert "result is not signed" in reasons[0] and "does not verify against treasury's" in reasons[1]
        # The case's audit says the same, from the history: each forged keyring NOT BELIEVED, with who
        # completed it; the messages the case applied verify with the keyrings it did use.
        trail = await audit_workflow(isolated, case.case_id)
        assert [c.name for c in trail.checks if not c.ok] == []
        refused = [e.text for e in trail.timeline if "NOT BELIEVED" in e.text]
        assert len(refused) == 3 and all(f"completed by {attacker.identity}" in t for t in refused)


async def test_a_clearinghouse_with_no_verifiable_keyring_waits_and_asks_treasury_again(
    env: WorkflowEnvironment, isolated: Client, worker_config: WorkerConfig, policy: Policy, keys: KeyDirectory
) -> None:
    """Every attempt of the first load answered by the attacker: the clearinghouse does not stop (nor
    take reports with anyone's keys). It asks Treasury again after a pause; once Treasury's worker
    answers, reports are taken, and the forgeries stay in the status."""
    async with clearinghouse_of_its_own(isolated):
        forged = {
            **published_keyring(keys),
            "partner:shieldsec": Signer("x", Ed25519PrivateKey.generate()).public_key_b64(),
        }
        attacker = await insider(env, isolated.namespace, keys)
        handle = await start_clearinghouse(isolated, policy)
        async with running(workflows_only(isolated, keys, worker_config)):
            answered = await forge_open_loads(attacker, CLEARINGHOUSE_ID, lambda _: forged, lambda a: len(a) == 3)
            await until(lambda: paused(isolated), lambda p: p, timeout=30, interval=0.05, what="the pause")
        async with running(build_workers(isolated, ["treasury"], worker_config)):
            # The isolated namespace's own skipper (the environment's fast-forwards the default namespace).
            await TimeSkipper(isolated).fast_forward(handle, KEYRING_RETRY + timedelta(seconds=1))
            receipt = await report_signed(
                isolated, VulnerabilityIntake(sender="partner:shieldsec", report=vulnerability()), policy
            )
            view = await clearinghouse_status(isolated)
        loads, still_open = await keyring_loads(isolated, CLEARINGHOUSE_ID)
        assert not receipt.duplicate and view.cases_opened == 1
        assert loads == [*answered, "treasury-keys-2"] and not still_open
        assert (
            [u.activity_id for u in view.unverified_results]
            == answered
            == [
                "treasury-keys",
                "treasury-keys#2",
                "treasury-keys#3",
            ]
        )


async def paused(client: Client) -> bool:
    """Whether the clearinghouse has started its pause before asking Treasury again."""
    history = await client.get_workflow_handle(CLEARINGHOUSE_ID).fetch_history()
    return any(e.HasField("timer_started_event_attributes") for e in history.events)


async def test_a_clearinghouse_waiting_for_its_keyring_still_continues_as_new_when_full(
    env: WorkflowEnvironment, isolated: Client, worker_config: WorkerConfig, policy: Policy, keys: KeyDirectory
) -> None:
    """While no verifiable keyring comes, reports handed in queue up; a flood of them (here one report
    handed in again and again) fills the run, which continues as new with the queue rather than
    grow: the next run asks Treasury for its keyring first, then takes what was queued."""
    async with clearinghouse_of_its_own(isolated):
        attacker = await insider(env, isolated.namespace, keys)
        partner = signer_for("partner:shieldsec")
        intake = partner.sign(
            CLEARINGHOUSE_ID,
            REPORT_VULNERABILITY,
            VulnerabilityIntake(sender="partner:shieldsec", report=vulnerability()),
        )
        handle = await start_clearinghouse(isolated, policy)
        first_run = handle.first_execution_run_id
        async with running(workflows_only(isolated, keys, worker_config)):
            await forge_open_loads(attacker, CLEARINGHOUSE_ID, lambda _: {}, lambda a: len(a) == 3)
            sent, full_since = 0, None
            while (described := await handle.describe()).run_id == first_run:
                assert sent < 3000, await what_it_did(isolated, first_run)
                if described.raw_description.workflow_execution_info.history_length >= EVENTS_PER_RUN:
                    # Full: the flood pauses while the run continues as new. A signal that lands while
                    # the worker completes the run makes the server fail that task to show it the
                    # signal (UnhandledCommand), so a flood faster than a workflow task can starve
                    # the continue-as-new on a loaded machine (the server's own per-run signal limit
                    # bounds it there). That starvation is Temporal's, not what this test is about.
                    full_since = full_since or asyncio.get_running_loop().time()
                    assert asyncio.get_running_loop().time() - full_since < 60, await what_it_did(isolated, first_run)
                    await asyncio.sleep(0.2)
                    continue
                await asyncio.gather(
                    *(
                        handle.signal(SUBMIT_REPORT, ReportSubmission(intake=intake, attempt=uuid.uuid4().hex))
                        for _ in range(50)
                    )
                )
                sent += 50
            first = await isolated.get_workflow_handle(CLEARINGHOUSE_ID, run_id=first_run).fetch_history()
        assert len(first.events) < 1200, "bounded like any run"
        assert first.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
        # The run that gave up waiting (its pause and keyring load cancelled) replays as it ran.
        replayer = Replayer(
            workflows=[Clearinghouse], data_converter=isolated.data_converter, workflow_runner=workflow_runner()
        )
        assert (await replayer.replay_workflow(first, raise_on_replay_failure=False)).replay_failure is None
        async with running(build_workers(isolated, ["treasury"], worker_config)):
            receipt = await report(isolated, VulnerabilityIntake.model_validate(intake.model_dump()), policy, partner)
            view = await clearinghouse_status(isolated)
        assert (view.runs, view.reports, view.cases_opened) == (2, 1, 1), "the queued report applied once"
        assert not receipt.duplicate


async def what_it_did(client: Client, run_id: str) -> str:
    """Why a run did not continue as new: its events by type, its failed tasks' causes, its last events."""
    history = await client.get_workflow_handle(CLEARINGHOUSE_ID, run_id=run_id).fetch_history()
    kinds = Counter(EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events)
    causes = Counter(
        WorkflowTaskFailedCause.Name(e.workflow_task_failed_event_attributes.cause)
        for e in history.events
        if e.HasField("workflow_task_failed_event_attributes")
    )
    last = [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events[-8:]]
    events = f"{len(history.events)} events {dict(kinds)}"
    return f"the run never continued as new: {events}; task failures {dict(causes)}; last {last}"


async def test_a_cases_validation_and_triage_are_no_tasks_anyone_can_complete(
    env: WorkflowEnvironment, isolated: Client, worker_config: WorkerConfig, policy: Policy, keys: KeyDirectory
) -> None:
    """Validation and triage decide whether a report opens a case and how urgent it is; their results
    were not signed, so before the case ran them as local activities anyone with the payload key
    could complete them by id (`valid: true` for junk, `low` for a critical flaw). Now no such task
    exists on the server: the case's keyring, validation and triage are markers its own worker wrote."""
    async with clearinghouse_of_its_own(isolated):
        async with running(build_workers(isolated, ["treasury"], worker_config)):
            case = await open_case(isolated, policy)
        attacker = await insider(env, isolated.namespace, keys)
        history = await isolated.get_workflow_handle(case.case_id).fetch_history()
        tasks = {e.activity_task_scheduled_event_attributes.activity_type.name for e in history.events}
        locals_ = {
            e.marker_recorded_event_attributes.marker_name
            for e in history.events
            if e.HasField("marker_recorded_event_attributes")
        }
        assert not {LOAD_PUBLIC_KEYS, VALIDATE_REPORT, TRIAGE_CASE} & tasks and "core_local_activity" in locals_
        for activity_id in ("treasury-keys", "1", "2", "3"):
            with pytest.raises(RPCError) as nothing:
                await complete_by_id(attacker, case.case_id, activity_id, {"valid": True, "reason": "forged"})
            assert nothing.value.status == RPCStatusCode.NOT_FOUND
