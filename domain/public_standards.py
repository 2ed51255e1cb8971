"""What labs and the public may know of each classified standard: the dimensions it looks at
(which evaluations, training compute, safeguards), never its thresholds.

Each standards body publishes a summary beside its standard (`<agency>.public.toml` next to
`<agency>.toml`), for the standard's version; the transparency report publishes them all.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domain.agencies import STANDARDS_BODIES, Agency
from domain.policy import one_line

SUFFIX = ".public.toml"
# The dimensions a standard's rule can look at (activities/standards.py, `Rule`).
COMPUTE = "training_compute_flop"
SAFEGUARDS = "safeguards_level"


def evaluation(name: str) -> str:
    return f"evaluation:{name}"


class Dimension(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dimension: Annotated[str, Field(pattern=r"^(evaluation:[a-z0-9_]+|training_compute_flop|safeguards_level)$")]
    concern: Annotated[str, Field(min_length=1, max_length=300)]


class PublicSummary(BaseModel):
    """One body's published summary of one version of its standard."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agency: Agency
    standard_version: str
    notice: str = ""
    looks_at: Annotated[list[Dimension], Field(min_length=1)]

    @property
    def dimensions(self) -> set[str]:
        return {d.dimension for d in self.looks_at}


def load_summary(path: Path) -> PublicSummary:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return PublicSummary.model_validate(data.get("summary", data))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"public summary {path}: cannot read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"public summary {path}: malformed TOML: {e}") from None
    except ValidationError as e:
        raise ValueError(f"public summary {path}: {one_line(e)}") from None


def load_summaries(directory: Path) -> list[PublicSummary]:
    """Every standards body's published summary in `directory`, in the order the bodies are named."""
    found = {s.agency: s for s in (load_summary(p) for p in sorted(directory.glob(f"*{SUFFIX}")))}
    return [found[a] for a in STANDARDS_BODIES if a in found]
