"""Contracts that every party relies on: disclosures, policies, ids."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from domain.disclosure import Disclosure
from domain.ids import review_id, review_id_for
from domain.policy import POLICY_DIR, PolicyError, load_policy
from domain.sectors import CRITICAL_INFRASTRUCTURE, Sector
from domain.vulnerability import is_party, vendor_party
from tests.conftest import EXAMPLES


def test_sample_disclosures_are_valid() -> None:
    for path in EXAMPLES.glob("*.json"):
        Disclosure.model_validate_json(path.read_text())


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing-field.json", "checkpoint_sha256"),
        ("unknown-sector.json", "partners.0.sector"),
        ("bad-checksum.json", "checkpoint_sha256"),
    ],
)
def test_invalid_disclosures_name_the_field(name: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Disclosure.model_validate_json((EXAMPLES / "invalid" / name).read_text())


def test_sixteen_critical_infrastructure_sectors() -> None:
    assert len(CRITICAL_INFRASTRUCTURE) == 16
    assert Sector.SECURITY_VENDOR not in CRITICAL_INFRASTRUCTURE


def test_review_ids_are_slugged_and_hashed() -> None:
    """Readable (the slug) and unique (a hash of the names, case and spacing aside)."""
    rid = review_id("Anthropic", "Mythos", "2.0")
    assert re.fullmatch(r"review-anthropic-mythos-2-0-[0-9a-f]{16}", rid)
    assert review_id("Open Frontier Collective", "Atlas", "5.1-rc2").startswith(
        "review-open-frontier-collective-atlas-5-1-rc2-"
    )
    d = Disclosure.model_validate_json((EXAMPLES / "mythos-2.json").read_text())
    assert review_id_for(d) == rid
    assert review_id("anthropic", "mythos", "2.0") == rid, "the same lab, model and version, however capitalised"
    assert review_id(" Anthropic", "Mythos ", "2.0") == rid


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("Acme AI", "Nova", "1"), ("Acme", "AI Nova", "1")),  # the pair: the boundary moved
        (("Acme", "Nova", "1.0"), ("Acme", "Nova", "1-0")),  # punctuation the slug drops
        (("Acme", "Nova", "1.0"), ("Acme", "Nova", "1 0")),
        (("Acme", "Nova 2", "1"), ("Acme", "Nova", "2 1")),
    ],
)
def test_review_ids_never_collide(one: tuple[str, str, str], other: tuple[str, str, str]) -> None:
    assert review_id(*one) != review_id(*other)


def test_vendor_ids_are_readable_and_never_collide() -> None:
    assert vendor_party("TLSKit Foundation") == "vendor:tlskit-foundation"
    assert vendor_party("tlskit  foundation") == "vendor:tlskit-foundation", "case and spacing aside"
    names = ["株式会社", "Ñandú Systèmes", "Nandu Systemes", "Ñandú-Systèmes", "Acme, Inc.", "Acme Inc", "Ⅻ", "ⅩⅠⅠ"]
    ids = {vendor_party(n) for n in names}
    assert len(ids) == len(names) - 1, "only Ⅻ and its compatibility form ⅩⅠⅠ (NFKC) are one name"
    assert vendor_party("Ñandú Systèmes").startswith("vendor:nandu-systemes-")
    assert vendor_party("株式会社").startswith("vendor:x-")
    for n in names + ["a" * 200]:
        assert is_party(vendor_party(n)), "every vendor id is a canonical party id (a key file name)"


def test_policies() -> None:
    eo = load_policy("eo-2026")
    assert eo.review_window == timedelta(days=30)
    assert eo.on_nsa_silence == "not_covered"
    demo = load_policy("demo")
    assert demo.review_window < timedelta(minutes=1)


def test_a_policy_cannot_exceed_the_orders_window(tmp_path: Path) -> None:
    text = (POLICY_DIR / "eo-2026.toml").read_text()
    long = tmp_path / "long.toml"
    long.write_text(text.replace('review_window = "P30D"', 'review_window = "P90D"'))
    with pytest.raises(PolicyError, match="exceeds the order's cap of 30 days"):
        load_policy(long)
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('"P14D"', '"fourteen days"'))
    with pytest.raises(PolicyError, match="determination_deadline"):
        load_policy(bad)
    with pytest.raises(PolicyError, match="not found"):
        load_policy("no-such-policy")
