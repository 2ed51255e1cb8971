"""Activity results forged by someone with namespace access: completed by id (racing, or before, the
genuine worker) or answered by a rogue poller. None of them is believed; each is recorded.

Each test runs on the isolated namespace so the attacker can be first: it answers before any genuine
worker runs, which is the race the issue's attacker won 2 of 2 times.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.standards import StandardsBody, load_standard
from api.agency import AgencyClient, LabClient
from api.clearinghouse import clearinghouse_status
from api.reviews import status
from domain import attestation
from domain.agencies import Agency
from domain.attestation import ResultSigner
from domain.clearinghouse import (
    CLEARINGHOUSE_ID,
    CLEARINGHOUSE_TASK_QUEUE,
    CLEARINGHOUSE_WORKFLOW,
    FORWARD_VULNERABILITY,
    ClearinghouseState,
    ForwardRequest,
    IntakeReceipt,
    TreasuryPolicy,
)
from domain.disclosure import Disclosure
from domain.messages import Determination, StandardsVerdict, Verdict
from domain.policy import Policy
from domain.review import CHECK_STANDARD, RECORD_DETERMINATION
from domain.signatures import Signer
from domain.status import Stage
from infra.keys import KeyDirectory
from tests.conftest import EXAMPLES, disclose, mythos, running, vulnerability, wait_stage
from tests.security.attackers import activity_events, complete_by_id, insider, keyless, scheduled
from tests.test_clearinghouse_runs import fresh_clearinghouse
from worker import REVIEW, WorkerConfig, build_workers
from workflows.clearinghouse import Clearinghouse
from workflows.sandbox import workflow_runner
from workflows.vulnerability_case import VulnerabilityCase

ALL_BUT_DOD = [REVIEW, *(a.value for a in Agency if a != Agency.DOD)]


async def test_the_review_offices_keyring_is_no_task_anyone_can_complete(
    env: WorkflowEnvironment, isolated: Client, worker_config: WorkerConfig, policy: Policy, keys: KeyDirectory
) -> None:
    """The issue's critical attack: a keyring of the attacker's own keys completed by id, then a
    determination 'signed' with the planted key. The review office's keyring and admission are local
    activities of the office's own worker: there is no task on the server to complete, before the
    review runs or while it does (before this, the attacker's keyring was at least recorded as tried)."""
    mallory = {party: Signer(party, Ed25519PrivateKey.generate()) for party in ("nsa", "lab")}
    planted = {p: s.public_key_b64() for p, s in mallory.items()}
    rid = await disclose(isolated, mythos(), policy)
    attacker = await keyless(env, isolated.namespace)
    for activity_id in ("review-keys", "admission"):  # no worker has run the review yet
        with pytest.raises(RPCError) as nothing:
            await complete_by_id(attacker, rid, activity_id, planted)
        assert nothing.value.status == RPCStatusCode.NOT_FOUND

    async with running(build_workers(isolated, config=worker_config)):
        s = await wait_stage(isolated, rid, Stage.AWAITING_DETERMINATION)
        with pytest.raises(RPCError) as nothing:
            await complete_by_id(attacker, rid, "review-keys#2", planted)
        assert nothing.value.status == RPCStatusCode.NOT_FOUND
        assert s.unverified_results == []
        answered = await activity_events(isolated, rid)
        assert "review-keys" not in answered and "admission" not in answered

        # The planted NSA key was never loaded: sent sealed (an insider's client), it is refused ...
        forged = mallory["nsa"].sign(
            rid, RECORD_DETERMINATION, Determination(sender="nsa", covered=False, rationale="cleared")
        )
        sealed = await insider(env, isolated.namespace, keys)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await sealed.get_workflow_handle(rid).execute_update(RECORD_DETERMINATION, forged, id=forged.message_id)
        assert "signature does not verify for nsa" in str(refused.value.cause)
        # ... and sent in plaintext it cannot even be decoded.
        with pytest.raises(WorkflowUpdateFailedError):
            await attacker.get_workflow_handle(rid).execute_update(
                RECORD_DETERMINATION, forged.model_dump(mode="json"), id="plain-" + forged.message_id
            )
        after = await status(isolated, rid)
        assert (after.stage, after.determination) == (Stage.AWAITING_DETERMINATION, None)
        # The genuine NSA still decides.
        decided = await AgencyClient(isolated, "nsa").determine(rid, covered=True, agencies=["dod"], rationale="r")
        assert decided.stage == Stage.UNDER_REVIEW
        await LabClient(isolated).withdraw(rid, "test finished")


def genuine_verdict(agency: str, disclosure: Disclosure) -> StandardsVerdict:
    return StandardsBody(load_standard(EXAMPLES / "standards" / f"{agency}.toml"), None).judge(disclosure)  # type: ignore[arg-type]


async def test_a_verdict_completed_by_id_by_an_insider_is_not_believed(
    env: WorkflowEnvironment, isolated: Client, worker_config: WorkerConfig, policy: Policy, keys: KeyDirectory
) -> None:
    """The insider holds the payload key (it can seal) and signs with a key of its own as 'dod'."""
    disclosure = mythos()
    expected = genuine_verdict("dod", disclosure)
    assert expected.verdict == Verdict.CONCERN, "the sample disclosure meets DoD's standard"
    rid = await disclose(isolated, disclosure, policy)
    attacker = await insider(env, isolated.namespace, keys)
    async with running(build_workers(isolated, roles=ALL_BUT_DOD, config=worker_config)):
        await scheduled(isolated, rid, "standards-dod")
        own_key = ResultSigner("dod", Ed25519PrivateKey.generate())
        forged = StandardsVerdict(agency=Agency.DOD, verdict=Verdict.NO_CONCERN, rationale="all clear")
        run_id = (await isolated.get_workflow_handle(rid).describe()).run_id
        await complete_by_id(attacker, rid, "standards-dod", own_key.attest_for(rid, run_id, "standards-dod", forged))
        async with running(build_workers(isolated, roles=["dod"], config=worker_config)):
            s = await wait_stage(isolated, rid, Stage.AWAITING_DETERMINATION)
    dod = next(v for v in s.standards if v.agency == Agency.DOD)
    assert (dod.verdict, dod.rationale) == (expected.verdict, expected.rationale)
    assert [(u.activity_id, u.party) for u in s.unverified_results] == [("standards-dod", "dod")]
    assert "does not verify against dod's trust anchors" in s.unverified_results[0].reason
    async with running(build_workers(isolated, roles=[REVIEW], config=worker_config)):
        await LabClient(isolated).withdraw(rid, "test finished")


async def test_a_rogue_poller_on_an_agency_queue_is_silence_not_an_answer(
    env: WorkflowEnvironment, isolated: Client, worker_config: WorkerConfig, policy: Policy, keys: KeyDirectory
) -> None:
    """A process polling `agency-dod` answers every check `no_concern`, signed with its own key; DoD's
    worker is down. The review records DoD as silent (never as 'no concern') and each attempt."""
    rogue_client = await insider(env, isolated.namespace, keys)
    own_key = ResultSigner("dod", Ed25519PrivateKey.generate())

    @activity.defn(name=CHECK_STANDARD)
    async def rogue_check(disclosure: Disclosure) -> object:
        return own_key.attest(StandardsVerdict(agency=Agency.DOD, verdict=Verdict.NO_CONCERN, rationale="fine"))

    rogue = Worker(rogue_client, task_queue=Agency.DOD.task_queue, activities=[rogue_check], identity="rogue@dod")
    rid = await disclose(isolated, mythos(), policy)
    async with running([*build_workers(isolated, roles=ALL_BUT_DOD, config=worker_config), rogue]):
        s = await wait_stage(isolated, rid, Stage.AWAITING_DETERMINATION)
        dod = next(v for v in s.standards if v.agency == Agency.DOD)
        assert dod.verdict == Verdict.NO_RESPONSE and "no verifiable answer" in dod.rationale
        assert [u.activity_id for u in s.unverified_results if u.party == "dod"] == [
            "standards-dod",
            "standards-dod#2",
            "standards-dod#3",
        ]
        answered = await activity_events(isolated, rid)
        assert {who for a, ids in answered.items() if a.startswith("standards-dod") for who in ids} == {"rogue@dod"}
        await LabClient(isolated).withdraw(rid, "test finished")


async def test_clearinghouse_policy_completed_by_id_is_not_applied(
    env: WorkflowEnvironment, isolated: Client, worker_config: WorkerConfig, keys: KeyDirectory
) -> None:
    """Terminate the clearinghouse, start it again, complete its policy load by id with a 1 s
    exploited embargo (the issue's attack): the run applies Treasury's own policy."""
    await fresh_clearinghouse(isolated)
    attacker = await insider(env, isolated.namespace, keys)
    treasury = worker_config.clearinghouse_policy
    from domain.policy import load_policy

    genuine = load_policy(treasury)
    forged = TreasuryPolicy(
        version="attacker-1s",
        policy=genuine.clearinghouse.model_copy(update={"exploited_embargo": timedelta(seconds=1)}),
    )
    await attacker.start_workflow(
        CLEARINGHOUSE_WORKFLOW,
        ClearinghouseState(policy_version=forged.version, policy=forged.policy),
        id=CLEARINGHOUSE_ID,
        task_queue=CLEARINGHOUSE_TASK_QUEUE,
    )
    plain = await keyless(env, isolated.namespace)
    # The clearinghouse's workflows run, its activities do not (yet): the attacker answers first.
    attestation.pin(keys.trust_anchors())
    workflows_only = Worker(
        isolated,
        task_queue=CLEARINGHOUSE_TASK_QUEUE,
        workflows=[Clearinghouse, VulnerabilityCase],
        workflow_runner=workflow_runner(),
    )
    async with running([workflows_only]):
        await scheduled(isolated, CLEARINGHOUSE_ID, "treasury-policy")
        await complete_by_id(plain, CLEARINGHOUSE_ID, "treasury-policy", forged.model_dump(mode="json"))
        await scheduled(isolated, CLEARINGHOUSE_ID, "treasury-policy#2")
        await complete_by_id(attacker, CLEARINGHOUSE_ID, "treasury-policy#2", forged)  # sealed, unsigned
        await scheduled(isolated, CLEARINGHOUSE_ID, "treasury-policy#3")
    async with running(build_workers(isolated, roles=["treasury"], config=worker_config)):
        for _ in range(100):
            answered = await activity_events(isolated, CLEARINGHOUSE_ID)
            if answered.get("treasury-policy#3"):
                break
            await __import__("asyncio").sleep(0.1)
        view = await clearinghouse_status(isolated)
    assert view.policy_version == genuine.version != forged.version
    assert answered["treasury-policy"] == [plain.identity]
    assert answered["treasury-policy#2"] == [attacker.identity]
    assert answered["treasury-policy#3"] and answered["treasury-policy#3"] != [attacker.identity]
    await fresh_clearinghouse(isolated)


async def test_a_rogue_clearinghouse_poller_cannot_swallow_a_finding(
    env: WorkflowEnvironment, isolated: Client, worker_config: WorkerConfig, policy: Policy, keys: KeyDirectory
) -> None:
    """The issue's rogue poller on `clearinghouse` answered the review's relay with a receipt for a
    case that does not exist. Its receipts are not Treasury's: recorded, asked again, and in the
    end the finding shows as not delivered (never as filed under a made-up case)."""
    own_key = ResultSigner("treasury", Ed25519PrivateKey.generate())

    @activity.defn(name=FORWARD_VULNERABILITY)
    async def swallow(request: ForwardRequest) -> object:
        return own_key.attest(IntakeReceipt(case_id="case-does-not-exist", fingerprint="x", duplicate=False))

    rogue_client = await insider(env, isolated.namespace, keys)
    rogue = Worker(rogue_client, task_queue=CLEARINGHOUSE_TASK_QUEUE, activities=[swallow], identity="rogue@ch")
    genuine = [w for w in build_workers(isolated, config=worker_config) if w.task_queue != CLEARINGHOUSE_TASK_QUEUE]
    rid = await disclose(isolated, mythos(), policy)
    async with running([*genuine, rogue]):
        await wait_stage(isolated, rid, Stage.AWAITING_DETERMINATION)
        await AgencyClient(isolated, "nsa").determine(rid, covered=True, agencies=["dod"], rationale="r")
        await wait_stage(isolated, rid, Stage.UNDER_REVIEW)
        s = await AgencyClient(isolated, "dod").submit_finding(
            rid, kind="vulnerability", severity="high", summary="s", vulnerability=vulnerability()
        )
        finding = s.message_id
        for _ in range(200):
            s = await status(isolated, rid)
            if finding in s.clearinghouse_refused:
                break
            await __import__("asyncio").sleep(0.1)
        await LabClient(isolated).withdraw(rid, "test finished")
    assert "no verifiable receipt from Treasury" in s.clearinghouse_refused[finding]
    assert finding not in s.clearinghouse_cases
    forged = [u for u in s.unverified_results if u.party == "treasury"]
    assert len(forged) == 3 and all("does not verify against treasury's" in u.reason for u in forged)
