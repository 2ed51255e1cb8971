"""Each standards body's public summary: beside its standard, for its version, naming every
dimension the standard looks at and none of its thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.standards import Rule, load_standard
from domain.agencies import STANDARDS_BODIES
from domain.public_standards import COMPUTE, SAFEGUARDS, SUFFIX, evaluation, load_summaries, load_summary

STANDARDS = Path(__file__).resolve().parent.parent / "examples" / "standards"


def dimension(rule: Rule) -> str:
    if rule.evaluation is not None:
        return evaluation(rule.evaluation)
    return COMPUTE if rule.training_compute_flop_at_least is not None else SAFEGUARDS


def thresholds(rule: Rule) -> list[str]:
    """Every way a rule's threshold could be written down."""
    values = [v for v in (rule.at_least, rule.training_compute_flop_at_least) if v is not None]
    written = [f"{v}" for v in values] + [f"{v:g}" for v in values] + [f"{v:.0e}" for v in values]
    return written + ([rule.safeguards_below.value] if rule.safeguards_below else [])


@pytest.mark.parametrize("body", STANDARDS_BODIES, ids=lambda a: a.value)
def test_every_body_publishes_what_its_standard_looks_at_and_no_threshold(body) -> None:
    standard = load_standard(STANDARDS / f"{body.value}.toml")
    path = STANDARDS / f"{body.value}{SUFFIX}"
    summary = load_summary(path)
    assert summary.agency == body and summary.standard_version == standard.version
    assert summary.dimensions == {dimension(r) for r in standard.rules}
    text = path.read_text()
    for rule in standard.rules:
        for secret in thresholds(rule):
            assert secret not in text, f"{path.name} gives away a threshold: {secret}"
    assert [s.agency for s in load_summaries(STANDARDS)] == list(STANDARDS_BODIES)


def test_a_summary_that_is_not_a_dimension_list_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / f"dod{SUFFIX}"
    bad.write_text(
        '[summary]\nagency = "dod"\nstandard_version = "v"\n'
        'looks_at = [{ dimension = "cyber_offense >= 0.5", concern = "x" }]\n'
    )
    with pytest.raises(ValueError, match="looks_at.0.dimension"):
        load_summary(bad)
