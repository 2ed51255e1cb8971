"""Contracts that every party relies on: disclosures, policies, ids."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from domain.disclosure import Disclosure
from domain.ids import review_id, review_id_for
from domain.policy import POLICY_DIR, PolicyError, load_policy
from domain.sectors import CRITICAL_INFRASTRUCTURE, Sector
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


def test_review_ids_are_slugged() -> None:
    assert review_id("Anthropic", "Mythos", "2.0") == "review-anthropic-mythos-2-0"
    assert review_id("Open Frontier Collective", "Atlas", "5.1-rc2") == "review-open-frontier-collective-atlas-5-1-rc2"
    d = Disclosure.model_validate_json((EXAMPLES / "mythos-2.json").read_text())
    assert review_id_for(d) == "review-anthropic-mythos-2-0"


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
