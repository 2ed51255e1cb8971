"""A standards body's check: the disclosure judged against that agency's classified standard.

The same code serves all five bodies; what differs is the standard, which each agency's
worker loads from its own configuration and which never leaves that worker. The review
sees only the verdict and its rationale.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from temporalio import activity

from domain.agencies import Agency
from domain.attestation import Attested, ResultSigner
from domain.disclosure import Disclosure, SafeguardsLevel
from domain.messages import StandardsVerdict, Verdict
from domain.policy import one_line
from domain.review import CHECK_STANDARD


class Rule(BaseModel):
    """One threshold. Exactly one of the three kinds of test is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str
    evaluation: str | None = None
    at_least: Annotated[float, Field(ge=0, le=1)] | None = None
    training_compute_flop_at_least: Annotated[float, Field(gt=0)] | None = None
    safeguards_below: SafeguardsLevel | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Rule:
        kinds = [
            self.evaluation is not None or self.at_least is not None,
            self.training_compute_flop_at_least is not None,
            self.safeguards_below is not None,
        ]
        if sum(kinds) != 1:
            raise ValueError(
                "a rule needs exactly one of evaluation+at_least, training_compute_flop_at_least, safeguards_below"
            )
        if kinds[0] and (self.evaluation is None or self.at_least is None):
            raise ValueError("an evaluation rule needs both `evaluation` and `at_least`")
        return self

    def lacks(self, d: Disclosure) -> str | None:
        """The evaluation this rule needs and the disclosure does not report (the rule cannot tell)."""
        if self.evaluation is not None and self.evaluation not in d.evaluations:
            return self.evaluation
        return None

    def fires(self, d: Disclosure) -> bool:
        if self.evaluation is not None and self.at_least is not None:
            return self.evaluation in d.evaluations and d.evaluations[self.evaluation] >= self.at_least
        if self.training_compute_flop_at_least is not None:
            return d.training_compute_flop >= self.training_compute_flop_at_least
        assert self.safeguards_below is not None
        return d.safeguards_level.rank < self.safeguards_below.rank


class Standard(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agency: Agency
    version: str
    notice: str = ""
    rules: list[Rule]


def load_standard(path: Path) -> Standard:
    try:
        data = tomllib.loads(Path(path).read_text())
        return Standard.model_validate(data.get("standard", data))
    except FileNotFoundError:
        raise ValueError(f"standard {path}: file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"standard {path}: malformed TOML: {e}") from None
    except ValidationError as e:
        raise ValueError(f"standard {path}: {one_line(e)}") from None


class StandardsBody:
    """One agency's standards desk. Registered only on that agency's queue."""

    def __init__(self, standard: Standard, signer: ResultSigner) -> None:
        self.standard = standard
        # The agency's own key: the review believes a verdict only with this agency's signature.
        self.signer = signer

    @activity.defn(name=CHECK_STANDARD)
    def check_standard(self, disclosure: Disclosure) -> Attested:
        return self.signer.attest(self.judge(disclosure))

    def judge(self, disclosure: Disclosure) -> StandardsVerdict:
        fired = [r.reason for r in self.standard.rules if r.fires(disclosure)]
        lacking = sorted({name for r in self.standard.rules if (name := r.lacks(disclosure))})
        # No verdict and no count of concerns in the log: they are the classified standard's output.
        activity.logger.info("standards check", extra={"agency": self.standard.agency.value})
        not_reported = f"not reported: {', '.join(lacking)}" if lacking else ""
        if fired:
            return StandardsVerdict(
                agency=self.standard.agency,
                verdict=Verdict.CONCERN,
                rationale="; ".join([*fired, *([not_reported] if lacking else [])]),
                standard_version=self.standard.version,
            )
        if lacking:
            # A threshold the disclosure gives nothing to test against is not a threshold unmet.
            return StandardsVerdict(
                agency=self.standard.agency,
                verdict=Verdict.INSUFFICIENT_INFORMATION,
                rationale=f"cannot tell: the disclosure does not report {', '.join(lacking)}",
                standard_version=self.standard.version,
            )
        return StandardsVerdict(
            agency=self.standard.agency,
            verdict=Verdict.NO_CONCERN,
            rationale="no threshold of the standard is met",
            standard_version=self.standard.version,
        )
