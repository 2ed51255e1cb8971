"""The clearinghouse's contracts on their own: CVSS scoring, the report, its fingerprint, the
priority, party ids, the policy, and Treasury's activities in the SDK's ActivityEnvironment."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.clearinghouse import ClearinghouseDesk, Outbox
from domain.case import Notice, NoticeKind
from domain.messages import ReviewFinding
from domain.policy import POLICY_DIR, PolicyError, load_policy
from domain.sectors import Sector
from domain.vulnerability import (
    CvssRating,
    Priority,
    VulnerabilityReport,
    case_id_for,
    cvss_score,
    parse_party,
    priority,
    vendor_party,
)
from tests.conftest import EXAMPLES, vulnerability

VULNS = EXAMPLES / "vulnerabilities"

# Vectors and base scores from the test vectors the `cvss` library publishes with its source
# (tests/vectors_simple31 and vectors_simple4), and ratings from the CVSS
# specification's qualitative scale: the clearinghouse must agree with them exactly.
PUBLISHED = [
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0, "critical"),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8, "critical"),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5, "high"),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1, "medium"),
    ("CVSS:3.1/AV:N/AC:L/PR:L/UI:R/S:U/C:L/I:N/A:N", 3.5, "low"),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0, "none"),
    ("CVSS:3.1/AV:N/AC:L/PR:L/UI:R/S:C/C:H/I:H/A:H", 9.0, "critical"),
    ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:L/VI:H/VA:L/SC:N/SI:H/SA:L", 9.2, "critical"),
    ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:A/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 8.6, "high"),
    ("CVSS:4.0/AV:N/AC:L/AT:P/PR:N/UI:P/VC:L/VI:L/VA:N/SC:H/SI:N/SA:N", 4.9, "medium"),
    ("CVSS:4.0/AV:N/AC:L/AT:P/PR:N/UI:A/VC:N/VI:N/VA:N/SC:L/SI:N/SA:N", 2.1, "low"),
]


@pytest.mark.parametrize(("vector", "score", "rating"), PUBLISHED)
def test_severity_of_known_vectors_matches_the_published_scores(vector: str, score: float, rating: str) -> None:
    s = cvss_score(vector)
    assert (s.base_score, s.rating) == (score, CvssRating(rating))
    assert s.version == vector[5:8]


def test_a_cvss_30_vector_is_scored_too() -> None:
    assert cvss_score("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H").base_score == 9.8


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        ("CVSS:3.1/AV:Q/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 'Unknown value "Q" in field "AV:Q"'),
        ("CVSS:3.1/AV:N/AC:L", "Missing mandatory metrics"),
        ("AV:N/AC:L/Au:N/C:P/I:P/A:P", "must start with CVSS:3.0/, CVSS:3.1/ or CVSS:4.0/"),
        ("", "must start with"),
    ],
)
def test_an_invalid_cvss_vector_is_named(vector: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cvss_score(vector)
    with pytest.raises(ValidationError, match="cvss_vector"):
        vulnerability(cvss_vector=vector)


def test_sample_reports_are_valid_and_bad_ones_name_the_field() -> None:
    for path in VULNS.glob("*.json"):
        VulnerabilityReport.model_validate_json(path.read_text())
    with pytest.raises(ValidationError, match="cvss_vector"):
        VulnerabilityReport.model_validate_json((VULNS / "invalid" / "bad-cvss.json").read_text())
    with pytest.raises(ValidationError, match="sectors.1"):
        VulnerabilityReport.model_validate_json((VULNS / "invalid" / "unknown-sector.json").read_text())
    with pytest.raises(ValidationError, match="cwe"):
        vulnerability(cwe="787")
    with pytest.raises(ValidationError, match="affected_versions"):
        vulnerability(affected_versions=[])
    assert vulnerability(cwe=" cwe-787 ").cwe == "CWE-787"


def test_the_fingerprint_is_product_versions_weakness_and_location() -> None:
    r = vulnerability(affected_versions=["3.0", "3.1"])
    same = r.model_copy(
        update={
            "product": f"  {r.product.upper()} ",
            "affected_versions": ["3.1", "3.0", "3.1"],
            "location": r.location.upper(),
            "vendor": "Someone Else",
            "cvss_vector": "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N",
            "sectors": [Sector.WATER],
            "exploited": True,
        }
    )
    assert same.fingerprint == r.fingerprint
    for change in ({"cwe": "CWE-787"}, {"location": "elsewhere"}, {"affected_versions": ["3.2"]}):
        assert r.model_copy(update=change).fingerprint != r.fingerprint
    assert case_id_for(r.fingerprint) == f"case-{r.fingerprint[:16]}"


def test_priority_puts_exploited_and_critical_infrastructure_first() -> None:
    ci, other = [Sector.ENERGY], [Sector.CLOUD_PROVIDER]
    assert priority(CvssRating.LOW, ci, exploited=True) == Priority.P1
    assert priority(CvssRating.LOW, other, exploited=True) == Priority.P2
    assert priority(CvssRating.LOW, ci, exploited=False) == Priority.P2
    assert priority(CvssRating.CRITICAL, other, exploited=False) == Priority.P3
    assert priority(CvssRating.MEDIUM, [], exploited=False) == Priority.P4
    # A low-severity flaw in the grid outranks a critical one nobody in critical infrastructure runs.
    assert priority(CvssRating.LOW, ci, False) < priority(CvssRating.CRITICAL, other, False)


def test_party_ids() -> None:
    assert parse_party("Treasury") == "treasury"
    assert parse_party("operator:Energy") == "operator:energy"
    assert parse_party("vendor:tlskit-foundation") == vendor_party("TLSKit Foundation")
    assert parse_party("partner:shieldsec") == "partner:shieldsec"
    with pytest.raises(ValueError, match="unknown sector 'moon'"):
        parse_party("operator:moon")
    with pytest.raises(ValueError, match="unknown party 'mallory'"):
        parse_party("mallory")
    with pytest.raises(ValueError, match="lowercase letters, digits and dashes"):
        parse_party("vendor:Acme Corp")


def test_a_vulnerability_finding_needs_its_details() -> None:
    with pytest.raises(ValidationError, match="a vulnerability finding needs its details"):
        ReviewFinding(sender="dod", kind="vulnerability", severity="high", summary="s")
    with pytest.raises(ValidationError, match="only to kind vulnerability"):
        ReviewFinding(sender="dod", kind="capability", severity="high", summary="s", vulnerability=vulnerability())
    ReviewFinding(sender="dod", kind="vulnerability", severity="high", summary="s", vulnerability=vulnerability())


def test_the_embargo_is_policy(tmp_path: Path) -> None:
    eo = load_policy("eo-2026").clearinghouse
    assert (eo.embargo, eo.exploited_embargo, eo.max_extension) == (
        timedelta(days=45),
        timedelta(days=7),
        timedelta(days=45),
    )
    assert load_policy("demo").clearinghouse.embargo < timedelta(minutes=5)
    # A policy file without a [policy.clearinghouse] table gets CERT/CC's defaults.
    text = (POLICY_DIR / "eo-2026.toml").read_text()
    bare = tmp_path / "bare.toml"
    bare.write_text(text.split("[policy.clearinghouse]")[0])
    assert load_policy(bare).clearinghouse == eo
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('exploited_embargo = "P7D"', 'exploited_embargo = "P60D"'))
    with pytest.raises(PolicyError, match="exploited_embargo exceeds clearinghouse.embargo"):
        load_policy(bad)
    bad.write_text(text.replace("reports_per_run = 1000", "reports_per_run = 5000"))
    with pytest.raises(PolicyError, match="clearinghouse.reports_per_run"):
        load_policy(bad)


# ---------------------------------------------------------------- Treasury's activities


@pytest.fixture
def desk(tmp_path: Path) -> ClearinghouseDesk:
    outbox = Outbox(tmp_path / "clearinghouse.db")
    outbox.load_registry(EXAMPLES / "registry.toml")
    return ClearinghouseDesk(outbox)


def test_validation_and_triage(desk: ClearinghouseDesk) -> None:
    env = ActivityEnvironment()
    assert env.run(desk.validate_report, vulnerability()).valid
    impact_free = vulnerability(cvss_vector="CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N")
    verdict = env.run(desk.validate_report, impact_free)
    assert not verdict.valid and "describes no impact" in verdict.reason

    t = env.run(desk.triage_case, vulnerability(sectors=["energy", "research"], exploited=True))
    assert (t.base_score, t.severity, t.priority, t.critical_sectors) == (
        9.8,
        CvssRating.CRITICAL,
        Priority.P1,
        [Sector.ENERGY],
    )


def test_a_notice_is_recorded_once_with_the_sectors_registered_operators(desk: ClearinghouseDesk) -> None:
    env = ActivityEnvironment()
    notice = Notice(
        case_id="case-1",
        kind=NoticeKind.OPERATOR_ADVISORY,
        recipient="operator:energy",
        sector="energy",
        subject="s",
        body="b",
    )
    first = env.run(desk.notify_operators, notice)
    again = env.run(desk.notify_operators, notice)
    assert (first.already_sent, again.already_sent) == (False, True)
    assert first.recipients == ["partner:gridco"]
    assert again.sent_at == first.sent_at
    assert [r for _, r, _ in desk.outbox.notices("case-1")] == ["operator:energy", "partner:gridco"]
    # Revoked operators hear nothing.
    assert "shadyscan" not in desk.outbox.approved_in(Sector.SECURITY_VENDOR)


def test_embargoed_advisories_go_only_to_critical_infrastructure(desk: ClearinghouseDesk) -> None:
    notice = Notice(
        case_id="case-2",
        kind=NoticeKind.OPERATOR_ADVISORY,
        recipient="operator:research",
        sector="research",
        subject="s",
        body="b",
    )
    with pytest.raises(ApplicationError, match="not a critical-infrastructure sector"):
        ActivityEnvironment().run(desk.notify_operators, notice)
