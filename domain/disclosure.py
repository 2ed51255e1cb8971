"""What a lab discloses. Validated before any workflow starts."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.sectors import Sector

Slug = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")]


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

    model_config = ConfigDict(extra="forbid", frozen=True)

    partner_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    sector: Sector


class Disclosure(BaseModel):
    """A lab's disclosure of a new model (the input to a review)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lab: Slug
    model_name: Slug
    model_version: Slug
    checkpoint_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    evaluations: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        description="Evaluation name -> score in [0, 1] (share of tasks solved)."
    )
    training_compute_flop: Annotated[float, Field(gt=0)]
    safeguards_level: SafeguardsLevel
    intended_release_date: date
    partners: list[TrustedPartner] = Field(default_factory=list)

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
