"""What a lab discloses. Validated before any workflow starts."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, field_validator, model_validator

from domain.persisted import PERSISTED
from domain.sectors import Sector

Slug = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")]
# Names of evaluations: the policy's vocabulary (domain/policy.py `evaluations`) says which exist,
# and the door refuses any other name with the list of known ones.
EvaluationName = Annotated[str, Field(min_length=1, max_length=64)]
# Numbers are finite and numbers only: `true` is not a score, "3e26" is not a compute figure.
Score = Annotated[float, Field(ge=0.0, le=1.0, strict=True, allow_inf_nan=False)]
Flop = Annotated[float, Field(gt=0, lt=1e40, strict=True, allow_inf_nan=False)]

# Caps well under what one Temporal payload and one history hold (domain/inputs.py): the brief's
# largest sharing programme invited 150 organisations.
MAX_PARTNERS = 500
MAX_EVALUATIONS = 64


class SafeguardsLevel(StrEnum):
    """How strongly the lab protects the weights and the deployment (lab-declared)."""

    BASIC = "basic"
    STANDARD = "standard"
    ENHANCED = "enhanced"
    MAXIMUM = "maximum"

    @property
    def rank(self) -> int:
        return list(SafeguardsLevel).index(self)


class TrustedPartner(BaseModel):
    """An organisation the lab will share the model with once the review ends."""

    model_config = PERSISTED  # in histories: unknown fields ignored (refused at the door)

    partner_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    sector: Sector


class Disclosure(BaseModel):
    """A lab's disclosure of a new model (the input to a review)."""

    model_config = PERSISTED  # in histories: unknown fields ignored (refused at the door)

    lab: Slug
    model_name: Slug
    model_version: Slug
    checkpoint_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    evaluations: dict[EvaluationName, Score] = Field(
        max_length=MAX_EVALUATIONS,
        description="Evaluation name -> score in [0, 1] (share of tasks solved). Names come from the "
        "policy's vocabulary (`frontier-review schema evaluations`).",
    )
    training_compute_flop: Flop
    safeguards_level: SafeguardsLevel
    intended_release_date: date
    partners: list[TrustedPartner] = Field(default_factory=list, max_length=MAX_PARTNERS)

    @field_validator("intended_release_date", mode="before")
    @classmethod
    def _a_calendar_date(cls, v: object) -> object:
        # Lax pydantic reads 1700000000 as a date; a disclosure names a day, as "2027-01-15".
        if isinstance(v, bool | int | float):
            raise ValueError("a date is written as YYYY-MM-DD")
        return v

    @field_validator("evaluations")
    @classmethod
    def _at_least_one_evaluation(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("at least one evaluation result is required")
        return v

    @model_validator(mode="after")
    def _partners_unique(self) -> Disclosure:
        seen: set[str] = set()
        for p in self.partners:
            if p.partner_id in seen:
                raise ValueError(f"partner {p.partner_id!r} is listed twice")
            seen.add(p.partner_id)
        return self
