"""Properties of the door (hypothesis): any input either is refused at the door with a one-line
reason, or validates and then reads back as itself through the project's data converter, exactly as
a worker will decode it. Never an input that is accepted and then cannot be decoded by the workflow
(the issue's 1e400 stuck a review at DISCLOSED for good)."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from api.reviews import admissible
from domain.case import ExploitationObserved, ExtensionRequest, FixReady, PatchDeployed
from domain.clearinghouse import VulnerabilityIntake
from domain.disclosure import Disclosure
from domain.inputs import Refused, parse_model
from domain.messages import Conclusion, Determination, ReviewFinding, Withdrawal
from domain.policy import load_policy
from domain.review import ReviewInput
from domain.sectors import Sector
from domain.vulnerability import VulnerabilityReport
from infra.connection import data_converter
from infra.keys import PayloadKeyring
from tests.conftest import EXAMPLES

CONVERTER = data_converter(PayloadKeyring.generate()).payload_converter
POLICY = load_policy("eo-2026")
DISCLOSURE = json.loads((EXAMPLES / "mythos-2.json").read_text())
REPORT = json.loads((EXAMPLES / "vulnerabilities" / "tls-heap-overflow.json").read_text())
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Anything JSON can say, and what Python's json writes beyond it (NaN, Infinity), lone surrogates included.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # noqa: E501
plausible_scores = st.floats(min_value=-0.5, max_value=1.5) | st.sampled_from([math.nan, math.inf]) | st.booleans()
names = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,70}", fullmatch=True),
    st.text(max_size=70),
    st.sampled_from(["Anthropic", "Acme AI", "Ñandú", "a" * 64, " x", ""]),
)


def mutated(base: dict[str, Any], field_values: dict[str, st.SearchStrategy]) -> st.SearchStrategy[dict]:
    """The base input with some fields replaced (by plausible or arbitrary values), some removed,
    and now and then an unknown field added."""
    replacements = st.fixed_dictionaries(
        {}, optional={k: st.one_of(v, v, v, anything) for k, v in field_values.items()}
    )
    removals = st.one_of(st.just(set()), st.just(set()), st.sets(st.sampled_from(sorted(base)), max_size=1))
    extra = st.one_of(st.just({}), st.just({}), st.just({}), st.dictionaries(st.just("extra"), anything, max_size=1))
    return st.builds(
        lambda r, gone, more: {**{k: v for k, v in base.items() if k not in gone}, **r, **more},
        replacements,
        removals,
        extra,
    )


def encode(value: dict, duplicate: bool) -> bytes:
    text = json.dumps(value, allow_nan=True)  # NaN and Infinity as Python writes them
    if duplicate and text.startswith("{") and len(value) > 0:
        first = json.dumps(next(iter(value)))
        text = "{" + first + ": null, " + text[1:]  # the same key twice
    return text.encode("utf-8", "surrogatepass")


def through_the_door(model: type[BaseModel], data: bytes) -> BaseModel | None:
    try:
        value = parse_model(model, data, "input", model.__name__)
    except Refused as e:
        assert "\n" not in str(e), "one line"
        event("refused")
        return None
    event("accepted")
    return value


def reads_back(value: BaseModel) -> None:
    """The project's converter (pydantic JSON, as every worker decodes) gives back the same value."""
    payloads = CONVERTER.to_payloads([value])
    assert CONVERTER.from_payloads(payloads, [type(value)]) == [value]


@SETTINGS
@given(
    mutated(
        DISCLOSURE,
        {
            "lab": names,
            "model_name": names,
            "model_version": names,
            "evaluations": st.dictionaries(
                st.sampled_from([*POLICY.evaluations, "cyber-offense", "CBRN_uplift", ""]), plausible_scores
            ),
            "training_compute_flop": st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.booleans(),
            "safeguards_level": st.sampled_from(["basic", "enhanced", "Enhanced", "max", "yes"]),
            "intended_release_date": st.dates().map(date.isoformat) | st.integers() | st.text(max_size=12),
            "partners": st.lists(
                st.fixed_dictionaries(
                    {"partner_id": st.from_regex(r"[a-z0-9-]{0,64}", fullmatch=True), "name": names},
                    optional={"sector": st.sampled_from([*Sector, "moon"])},
                ),
                max_size=4,
            ),
        },
    ),
    st.sampled_from([False, False, False, True]),
)
def test_a_disclosure_is_refused_or_reads_back_in_the_workflow(value: dict, duplicate: bool) -> None:
    disclosure = through_the_door(Disclosure, encode(value, duplicate))
    if disclosure is None:
        return
    assert not duplicate or len(value) == 0, "a duplicate key is never accepted"
    reads_back(disclosure)
    try:
        review = admissible(disclosure, POLICY, {})
    except Refused:
        return  # an evaluation outside the policy's vocabulary, a release date in the past
    assert set(review.disclosure.evaluations) <= set(POLICY.evaluations)
    assert review.disclosure.intended_release_date >= date.today() - timedelta(days=1)
    reads_back(review)  # the start input itself, as the workflow receives it
    assert ReviewInput.model_validate_json(review.model_dump_json()) == review


MESSAGES: list[tuple[type[BaseModel], dict[str, Any], dict[str, st.SearchStrategy]]] = [
    (
        Determination,
        {"sender": "nsa", "covered": True, "agencies": ["dod"], "rationale": "r"},
        {
            "covered": st.booleans() | st.sampled_from(["yes", "true", 1, 0]),
            "agencies": st.lists(st.sampled_from(["dod", "dhs", "nsa", "cia", "DoD"]), max_size=6),
            "rationale": st.text(max_size=50),
        },
    ),
    (
        ReviewFinding,
        {"sender": "dod", "kind": "capability", "severity": "high", "summary": "s"},
        {
            "kind": st.sampled_from(["capability", "vulnerability", "mitigation", "other"]),
            "severity": st.sampled_from(["low", "critical", "severe"]),
            "summary": st.text(max_size=50),
            "vulnerability": st.just(REPORT),
        },
    ),
    (Conclusion, {"sender": "dod", "summary": ""}, {"summary": st.text(max_size=50) | st.integers()}),
    (Withdrawal, {"sender": "lab", "reason": "r"}, {"reason": st.text(max_size=50), "sender": names}),
    (
        VulnerabilityIntake,
        {"sender": "partner:shieldsec", "report": REPORT},
        {"reference": st.text(max_size=250), "found_by": st.text(max_size=120)},
    ),
    (
        FixReady,
        {"sender": "vendor:tlskit-foundation", "fixed_versions": ["3.2.5"]},
        {"fixed_versions": st.lists(st.text(max_size=5), max_size=3)},
    ),  # noqa: E501
    (PatchDeployed, {"sender": "operator:energy"}, {"note": st.text(max_size=20)}),
    (ExploitationObserved, {"sender": "operator:energy", "evidence": "e"}, {"evidence": st.text(max_size=20)}),
    (
        ExtensionRequest,
        {"sender": "vendor:tlskit-foundation", "extension": "P14D", "reason": "r"},
        {"extension": st.sampled_from(["P14D", "P1000000000D", "-P1D", "PT0S", "P3650D", "P3651D"]) | st.integers()},
    ),
]


@SETTINGS
@given(st.sampled_from(range(len(MESSAGES))).flatmap(lambda i: st.tuples(st.just(i), mutated(*MESSAGES[i][1:]))))
def test_every_message_is_refused_or_reads_back_in_the_workflow(case: tuple[int, dict]) -> None:
    index, value = case
    model = MESSAGES[index][0]
    message = through_the_door(model, encode(value, duplicate=False))
    if message is not None:
        reads_back(message)


@SETTINGS
@given(
    mutated(
        REPORT,
        {
            "vendor": names,
            "affected_versions": st.lists(st.text(max_size=8), max_size=3),
            "cwe": st.sampled_from(["CWE-787", "cwe-79", "CWE-0", "787"]),
            "cvss_vector": st.sampled_from(
                [REPORT["cvss_vector"], "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", "CVSS:2"]
            ),
            "sectors": st.lists(st.sampled_from([*Sector, "moon"]), max_size=4),
            "exploited": st.booleans() | st.sampled_from(["yes", "no", 1]),
        },
    ),
    st.sampled_from([False, False, False, True]),
)
def test_a_vulnerability_report_is_refused_or_reads_back(value: dict, duplicate: bool) -> None:
    report = through_the_door(VulnerabilityReport, encode(value, duplicate))
    if report is None:
        return
    assert type(value.get("exploited", False)) is bool, '"yes" and 1 are not booleans'
    reads_back(report)
    reads_back(VulnerabilityIntake(sender="treasury", report=report))
