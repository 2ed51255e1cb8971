"""Activities on their own, in the SDK's ActivityEnvironment, and the contracts they rely on."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError
from temporalio.testing import ActivityEnvironment

from activities.nsa import NsaBriefingDesk
from activities.release import ReleaseDesk
from activities.standards import Standard, StandardsBody, load_standard
from activities.store import RecordStore
from domain.agencies import STANDARDS_BODIES, Agency
from domain.attestation import ResultSigner
from domain.disclosure import Disclosure, TrustedPartner
from domain.messages import AccessGrant, Briefing, BriefingReceipt, StandardsVerdict, Verdict, VettingResult
from domain.review import PartnerRequest
from infra.keys import KeyDirectory
from tests.conftest import EXAMPLES, mythos

STANDARDS = EXAMPLES / "standards"


@pytest.fixture
def store(tmp_path: Path) -> RecordStore:
    s = RecordStore(tmp_path / "records.db")
    s.load_registry(EXAMPLES / "registry.toml")
    return s


def check(agency: str, disclosure: Disclosure) -> StandardsVerdict:
    body = StandardsBody(
        load_standard(STANDARDS / f"{agency}.toml"), ResultSigner(agency, Ed25519PrivateKey.generate())
    )
    return StandardsVerdict.model_validate(ActivityEnvironment().run(body.check_standard, disclosure).result)


def test_every_sample_standard_loads_and_is_labelled_fictional() -> None:
    for agency in STANDARDS_BODIES:
        standard = load_standard(STANDARDS / f"{agency.value}.toml")
        assert standard.agency == agency
        assert "FICTIONAL" in standard.notice


def test_evaluation_threshold_rule() -> None:
    assert check("dod", mythos()).verdict == Verdict.CONCERN
    below = mythos(evaluations={"cyber_offense": 0.49, "cbrn_uplift": 0.0})
    assert check("dod", below).verdict == Verdict.NO_CONCERN
    at = mythos(evaluations={"cyber_offense": 0.5})
    verdict = check("dod", at)
    assert verdict.verdict == Verdict.CONCERN
    assert verdict.rationale == "autonomous exploitation of software vulnerabilities; not reported: cbrn_uplift"
    assert verdict.standard_version == "dod-fictional-2026.1"


def test_a_standard_that_lacks_an_evaluation_cannot_tell() -> None:
    """A threshold the disclosure gives nothing to test against is not a threshold unmet: the issue's
    misspelt `cyber-offense` passed every standard as "no concern"."""
    silent = mythos(evaluations={"autonomy": 0.1}, training_compute_flop=1e20, safeguards_level="maximum")
    dod = check("dod", silent)
    assert dod.verdict == Verdict.INSUFFICIENT_INFORMATION and dod.verdict.is_concern
    assert dod.rationale == "cannot tell: the disclosure does not report cbrn_uplift, cyber_offense"
    assert check("commerce", silent).verdict == Verdict.NO_CONCERN, "compute is always reported"


def test_compute_and_safeguards_rules() -> None:
    assert check("commerce", mythos(training_compute_flop=1e26)).verdict == Verdict.CONCERN
    assert check("commerce", mythos(training_compute_flop=9.9e25)).verdict == Verdict.NO_CONCERN
    weak = mythos(evaluations={"ics_vuln_discovery": 0.1}, safeguards_level="standard")
    assert "safeguards" in check("dhs", weak).rationale
    strong = mythos(evaluations={"ics_vuln_discovery": 0.1}, safeguards_level="maximum")
    assert check("dhs", strong).verdict == Verdict.NO_CONCERN


def test_a_broken_standard_is_refused_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "dod.toml"
    bad.write_text('[standard]\nagency = "dod"\nversion = "x"\n[[standard.rules]]\nreason = "r"\nevaluation = "e"\n')
    with pytest.raises(ValueError, match="needs both `evaluation` and `at_least`"):
        load_standard(bad)
    with pytest.raises(ValueError, match="file not found"):
        load_standard(tmp_path / "missing.toml")
    with pytest.raises(ValidationError):
        Standard.model_validate({"agency": "cia", "version": "x", "rules": []})


def test_vetting(store: RecordStore, keys: KeyDirectory) -> None:
    desk = ReleaseDesk(store, keys)
    env = ActivityEnvironment()

    def vet(partner_id: str, sector: str):
        partner = TrustedPartner(partner_id=partner_id, name=partner_id, sector=sector)
        return VettingResult.model_validate(
            env.run(desk.vet_partner, PartnerRequest(review_id="r", partner=partner)).result
        )

    assert vet("gridco", "energy").approved
    assert vet("shadyscan", "security-vendor").reason.startswith("registry status is revoked")
    assert vet("unknown-co", "energy").reason == "not in the trusted-party registry"
    assert not vet("gridco", "water").approved


def test_grant_is_idempotent(store: RecordStore, keys: KeyDirectory) -> None:
    desk = ReleaseDesk(store, keys)
    request = PartnerRequest(
        review_id="review-a", partner=TrustedPartner(partner_id="gridco", name="GridCo", sector="energy")
    )
    first, second = (
        AccessGrant.model_validate(ActivityEnvironment().run(desk.grant_access, request).result) for _ in "12"
    )
    assert (first.already_granted, second.already_granted) == (False, True)
    assert first.grant_id == second.grant_id
    assert len(store.grants("review-a")) == 1


def test_nsa_briefing_is_delivered_once(tmp_path: Path) -> None:
    desk = NsaBriefingDesk(RecordStore(tmp_path / "nsa.db"), ResultSigner("nsa", Ed25519PrivateKey.generate()))
    briefing = Briefing(
        review_id="review-b",
        verdicts=[StandardsVerdict(agency=Agency.DOD, verdict=Verdict.CONCERN, rationale="r")],
        determination_deadline=datetime(2027, 1, 1, tzinfo=UTC),
    )
    first, second = (
        BriefingReceipt.model_validate(ActivityEnvironment().run(desk.brief_nsa, briefing).result) for _ in "12"
    )
    assert first.delivered_at == second.delivered_at
