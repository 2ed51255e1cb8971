"""Every message into Treasury's clearinghouse is signed: reports into the clearinghouse, vendors'
and operators' messages into a case, duplicate reports linked to a case, and the relay of a
review's finding. Rejections write nothing; parties enrolled later are known after a refresh."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.clearinghouse import ClearinghouseForwarder
from api import reviews
from api.agency import AgencyClient, LabClient
from api.clearinghouse import CaseParty, UnknownCase, VendorClient, case_status, clearinghouse_status
from api.errors import Rejected
from cli.main import main as cli_main
from domain.case import CaseInput, CaseStatus, FixReady
from domain.clearinghouse import (
    CASE_WORKFLOW,
    CLEARINGHOUSE_ID,
    CLEARINGHOUSE_TASK_QUEUE,
    FIX_READY,
    LINK_REPORT,
    PATCH_DEPLOYED,
    REPORT_VULNERABILITY,
    ForwardRequest,
    VulnerabilityIntake,
)
from domain.messages import Message, ReviewFinding
from domain.policy import Policy, load_policy
from domain.review import SUBMIT_FINDING
from domain.sectors import CRITICAL_INFRASTRUCTURE
from domain.signatures import Signer
from domain.status import Stage
from domain.vulnerability import case_id_for
from infra.keys import KeyDirectory, KeyProblem, development_parties, party_file_name
from tests.conftest import mythos, report_signed, update_events, vulnerability, wait_stage
from tests.test_clearinghouse import VENDOR, open_case, settled, wait_case

TLSKIT = "TLSKit Foundation"


async def send_raw(client: Client, workflow_id: str, update: str, message: Message, update_id: str | None = None):
    """Exactly these bytes, as an attacker with a Temporal client would send them (no signing, no
    key refresh on the way)."""
    try:
        return await client.get_workflow_handle(workflow_id).execute_update(
            update, message, id=update_id or message.message_id
        )
    except WorkflowUpdateFailedError as e:
        raise Rejected(e.cause.message) from None


async def history_length(client: Client, workflow_id: str) -> int:
    return len((await client.get_workflow_handle(workflow_id).fetch_history()).events)


# ---------------------------------------------------------------- messages into a case


async def test_forged_and_altered_case_messages_are_rejected(client: Client, policy: Policy, keys: KeyDirectory):
    c = await open_case(client, policy, sectors=["energy"])
    cid = c.case_id
    vendor = keys.signer(VENDOR)
    impostor = Signer(VENDOR, Ed25519PrivateKey.generate())

    def fix(**changes) -> FixReady:
        return FixReady(sender=VENDOR, fixed_versions=["3.2.5"], **changes)

    async def rejected(update: str, message: Message, reason: str, update_id: str | None = None) -> None:
        before, length = await case_status(client, cid), await history_length(client, cid)
        with pytest.raises(Rejected, match=reason):
            await send_raw(client, cid, update, message, update_id)
        assert (update_id or message.message_id) not in await update_events(client, cid)
        assert await history_length(client, cid) == length, "a rejected message writes nothing"
        assert await case_status(client, cid) == before

    # Forged: the vendor's name, someone else's key (a fix would start the early disclosure).
    await rejected(FIX_READY, impostor.sign(cid, FIX_READY, fix()), "signature does not verify for vendor:tlskit")
    # Altered after signing.
    signed = vendor.sign(cid, FIX_READY, fix())
    await rejected(FIX_READY, signed.model_copy(update={"fixed_versions": ["9.9"]}), "does not verify")
    # Signed for another case.
    other = case_id_for(vulnerability().fingerprint)
    await rejected(FIX_READY, vendor.sign(other, FIX_READY, fix()), "signed for another case")
    # Signed as another kind of message.
    await rejected(FIX_READY, vendor.sign(cid, PATCH_DEPLOYED, fix()), "does not verify")
    # Unsigned.
    await rejected(FIX_READY, fix(), "from vendor:tlskit-foundation is not signed")
    # Unknown signer: a vendor nobody enrolled.
    stranger = Signer("vendor:evil-corp", Ed25519PrivateKey.generate())
    message = FixReady(sender="vendor:evil-corp", fixed_versions=["1"])
    await rejected(FIX_READY, stranger.sign(cid, FIX_READY, message), "unknown signer 'vendor:evil-corp'")
    # A real signature of a party that may not send this: the party check still applies.
    meridian = keys.signer("vendor:meridian-controls")
    wrong = FixReady(sender="vendor:meridian-controls", fixed_versions=["1"])
    await rejected(FIX_READY, meridian.sign(cid, FIX_READY, wrong), "only the vendor")

    # The genuine one is accepted; the same message again (another update id) is not.
    genuine = vendor.sign(cid, FIX_READY, fix())
    await send_raw(client, cid, FIX_READY, genuine)
    assert (await case_status(client, cid)).fix == genuine
    await wait_case(client, cid, CaseStatus.PATCH_DISTRIBUTED)  # and quiet again
    await rejected(FIX_READY, genuine, "already applied", update_id="replayed")


async def test_forged_reports_are_rejected(client: Client, policy: Policy, keys: KeyDirectory) -> None:
    await open_case(client, policy)  # the clearinghouse is running
    shieldsec = keys.signer("partner:shieldsec")

    def intake(**changes) -> VulnerabilityIntake:
        return VulnerabilityIntake(sender="partner:shieldsec", report=vulnerability(), **changes)

    async def rejected(message: VulnerabilityIntake, reason: str, update_id: str | None = None) -> None:
        before = await clearinghouse_status(client)
        with pytest.raises(Rejected, match=reason):
            await send_raw(client, CLEARINGHOUSE_ID, REPORT_VULNERABILITY, message, update_id)
        assert (update_id or message.message_id) not in await update_events(client, CLEARINGHOUSE_ID)
        assert (await clearinghouse_status(client)) == before, "nothing recorded"

    impostor = Signer("partner:shieldsec", Ed25519PrivateKey.generate())
    await rejected(impostor.sign(CLEARINGHOUSE_ID, REPORT_VULNERABILITY, intake()), "signature does not verify")
    signed = shieldsec.sign(CLEARINGHOUSE_ID, REPORT_VULNERABILITY, intake())
    altered = signed.model_copy(update={"report": signed.report.model_copy(update={"exploited": True})})
    await rejected(altered, "does not verify")
    case_id = case_id_for(signed.report.fingerprint)
    await rejected(shieldsec.sign(case_id, REPORT_VULNERABILITY, intake()), "signed for another clearinghouse")
    await rejected(intake(), "from partner:shieldsec is not signed")
    stranger = VulnerabilityIntake(sender="partner:nobody", report=vulnerability())
    key = Signer("partner:nobody", Ed25519PrivateKey.generate())
    await rejected(key.sign(CLEARINGHOUSE_ID, REPORT_VULNERABILITY, stranger), "unknown signer 'partner:nobody'")
    # A revoked partner has no key.
    revoked = VulnerabilityIntake(sender="partner:shadyscan", report=vulnerability())
    key = Signer("partner:shadyscan", Ed25519PrivateKey.generate())
    await rejected(key.sign(CLEARINGHOUSE_ID, REPORT_VULNERABILITY, revoked), "unknown signer 'partner:shadyscan'")

    # The genuine report is taken once; the same message under another update id is not.
    receipt = await send_raw(client, CLEARINGHOUSE_ID, REPORT_VULNERABILITY, signed)
    assert receipt["case_id"] == case_id
    await rejected(signed, "already applied", update_id="replayed-report")


async def test_a_forged_linked_report_is_dropped(client: Client, policy: Policy, keys: KeyDirectory) -> None:
    """A case's duplicate reports arrive as signals, which cannot be refused: one that does not
    verify (here: sent straight to the case, claiming exploitation in a new sector) is dropped."""
    c = await open_case(client, policy, sectors=["energy"])
    report = vulnerability(product=c.report.product, sectors=["water"], exploited=True)
    forged = Signer("partner:shieldsec", Ed25519PrivateKey.generate()).sign(
        CLEARINGHOUSE_ID, REPORT_VULNERABILITY, VulnerabilityIntake(sender="partner:shieldsec", report=report)
    )
    await client.get_workflow_handle(c.case_id).signal(LINK_REPORT, forged)
    unsigned = VulnerabilityIntake(sender="operator:water", report=report)
    await client.get_workflow_handle(c.case_id).signal(LINK_REPORT, unsigned)
    # A genuine duplicate after them: once it is linked, the forged ones have been handled.
    genuine = VulnerabilityIntake(
        sender="operator:energy", report=vulnerability(product=c.report.product, sectors=["energy"])
    )
    assert (await report_signed(client, genuine, policy)).duplicate
    for _ in range(200):
        linked = await case_status(client, c.case_id)
        if len(linked.reports) == 2:
            break
        await asyncio.sleep(0.05)
    assert [r.sender for r in linked.reports] == ["partner:shieldsec", "operator:energy"]
    assert (linked.exploited, linked.sectors, linked.embargo_deadline) == (False, ["energy"], c.embargo_deadline)


async def test_a_party_enrolled_after_the_case_opened_is_known_after_a_refresh(
    client: Client, policy: Policy, keys: KeyDirectory
) -> None:
    """A report names a vendor nobody has enrolled; the vendor is notified, enrolled
    (`keys add`), and its fix is accepted: the API has the case reload Treasury's keys."""
    newco = f"Newco {uuid.uuid4().hex[:8]}"
    c = await open_case(client, policy, vendor=newco, sectors=[])
    party = c.vendor_party
    with pytest.raises(KeyProblem, match="no signing key"):
        VendorClient(client, newco)
    keys.add_party(party)
    fixed = await VendorClient(client, newco).fix_ready(c.case_id, ["2.0"])
    assert fixed.fix is not None and fixed.fix.sender == party
    # A partner enrolled now reports the same vulnerability, exploited: the clearinghouse and
    # the case both reload their keys, and the linked report counts.
    partner = f"partner:late-{uuid.uuid4().hex[:8]}"
    keys.add_party(partner)
    receipt = await CaseParty(client, partner).report(vulnerability(product=c.report.product, exploited=True), policy)
    assert (receipt.case_id, receipt.duplicate) == (c.case_id, True)
    for _ in range(200):
        linked = await case_status(client, c.case_id)
        if linked.exploited:
            break
        await asyncio.sleep(0.05)
    assert [r.sender for r in linked.reports] == ["partner:shieldsec", partner]
    assert linked.exploited


# ---------------------------------------------------------------- where cases come from


async def test_a_case_started_outside_the_clearinghouse_refuses_to_run(
    client: Client, policy: Policy, keys: KeyDirectory
) -> None:
    """Someone with a Temporal client starts a case themselves (with a genuine, signed report, and
    a policy of their own): it fails before it notifies anyone, and the real report still gets
    its case under that id."""
    details = vulnerability(sectors=["energy"])
    intake = keys.signer("partner:shieldsec").sign(
        CLEARINGHOUSE_ID, REPORT_VULNERABILITY, VulnerabilityIntake(sender="partner:shieldsec", report=details)
    )
    case_id = case_id_for(details.fingerprint)
    short = load_policy("demo").clearinghouse  # embargoes of seconds
    handle = await client.start_workflow(
        CASE_WORKFLOW,
        CaseInput(case_id=case_id, fingerprint=details.fingerprint, intake=intake, policy_version="x", policy=short),
        id=case_id,
        task_queue=CLEARINGHOUSE_TASK_QUEUE,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert "not a genuine case: it was not started by the clearinghouse" in str(failed.value.cause)

    receipt = await report_signed(client, intake, policy)
    assert (receipt.case_id, receipt.duplicate) == (case_id, False)
    c = await settled(client, case_id)
    assert c.policy_version == policy.version


async def test_treasury_relays_only_findings_it_can_verify(client: Client, policy: Policy, keys: KeyDirectory) -> None:
    """Someone's own keys for `nsa` and `dod` get nowhere: the review verifies with the review
    office's keys (so their determination is refused), and Treasury, as a second line, verifies
    a finding's signature against its own keyring before it relays and signs a report."""
    nsa = Signer("nsa", Ed25519PrivateKey.generate())
    dod = Signer("dod", Ed25519PrivateKey.generate())
    ring = {**keys.public_keys(), "nsa": nsa.public_key_b64(), "dod": dod.public_key_b64()}
    rid = await reviews.disclose(client, mythos(), policy, ring)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    with pytest.raises(Rejected, match="signature does not verify for nsa"):
        await AgencyClient(client, "nsa", nsa).determine(rid, covered=True, agencies=["dod"], rationale="r")
    await LabClient(client).withdraw(rid, "test finished")

    finding = dod.sign(
        rid,
        SUBMIT_FINDING,
        ReviewFinding(
            sender="dod", kind="vulnerability", severity="critical", summary="s", vulnerability=vulnerability()
        ),
    )
    forwarder = ClearinghouseForwarder(client, policy, keys=keys)
    with pytest.raises(ApplicationError, match="not relayed: signature does not verify for dod"):
        await ActivityEnvironment().run(forwarder.forward_vulnerability, ForwardRequest(review_id=rid, finding=finding))
    with pytest.raises(UnknownCase):
        await case_status(client, case_id_for(finding.vulnerability.fingerprint))


# ---------------------------------------------------------------- keys


def test_development_keys_cover_the_clearinghouse_parties(tmp_path: Path) -> None:
    parties = development_parties()
    assert {f"operator:{s.value}" for s in CRITICAL_INFRASTRUCTURE} <= set(parties)
    assert {"partner:gridco", "partner:shieldsec", "vendor:tlskit-foundation", "vendor:meridian-controls"} <= set(
        parties
    )
    assert "partner:shadyscan" not in parties, "a revoked partner gets no key"
    keys = KeyDirectory(tmp_path)
    keys.init_development()
    assert set(parties) <= set(keys.public_keys())
    assert (tmp_path / "signing" / "vendor_tlskit-foundation.pem").is_file()
    assert (tmp_path / "signing" / "operator_energy.pem").is_file()
    assert keys.init_development() == [], "nothing new the second time"
    for bad in ("../nsa", "vendor:../../etc", "Vendor:Acme", "mallory"):
        with pytest.raises(KeyProblem):
            party_file_name(bad)


def test_keys_add_enrols_a_party(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home, vendor_host = tmp_path / "treasury", tmp_path / "acme"
    # On the vendor's own host: a key pair; the public key is printed.
    assert cli_main(["keys", "add", "vendor:acme", "--dir", str(vendor_host)]) == 0
    out = capsys.readouterr().out
    assert "vendor_acme.pem" in out
    public = out.split("public key ")[-1].strip()
    assert (vendor_host / "signing" / "vendor_acme.pem").is_file()
    # At Treasury: only the public key is published.
    assert cli_main(["keys", "add", "vendor:acme", "--public-key", public, "--dir", str(home)]) == 0
    assert KeyDirectory(home).public_keys() == {"vendor:acme": public}
    assert not (home / "signing").exists()
    assert KeyDirectory(vendor_host).signer("vendor:acme").public_key_b64() == public
    # Refusals: exit 2, one line.
    for args, message in (
        (["vendor:acme"], "already has a public key"),
        (["mallory"], "unknown party 'mallory'"),
        (["vendor:bad", "--public-key", "c2hvcnQ="], "not an Ed25519 public key"),
    ):
        assert cli_main(["keys", "add", *args, "--dir", str(home)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert cli_main(["keys", "add", "vendor:acme", "--replace", "--dir", str(home)]) == 0
    assert KeyDirectory(home).public_keys()["vendor:acme"] != public
