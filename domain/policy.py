"""Policy as data: every number of the process comes from a versioned TOML file.

The policy is loaded once, at disclosure, and captured in the workflow's input, so a
later change of the file never alters a running review.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from domain.agencies import STANDARDS_BODIES, Agency

POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"
DEFAULT_POLICY = "eo-2026"

# The order: "up to 30 days". No policy may hold a release longer.
STATUTORY_WINDOW_CAP = timedelta(days=30)

Positive = Annotated[timedelta, Field(gt=timedelta(0))]
NonNegative = Annotated[timedelta, Field(ge=timedelta(0))]

# Temporal caps one workflow run at 2000 updates: the clearinghouse continues as new well before.
MAX_REPORTS_PER_RUN = 1500


class ClearinghousePolicy(BaseModel):
    """Treasury's clearinghouse: the disclosure embargo and how cases are run (`[policy.clearinghouse]`)."""

    # Kept in every case's input: a field dropped later is ignored on replay; policy files are held
    # strictly by `load_policy`.
    model_config = ConfigDict(extra="ignore", frozen=True)

    # CERT/CC's default: public disclosure 45 days after the vendor is notified.
    embargo: Positive = timedelta(days=45)
    # Once exploitation is observed the embargo ends at most this long after (never later than it was).
    exploited_embargo: NonNegative = timedelta(days=7)
    # The most a vendor's extensions may add to the embargo, all requests together.
    max_extension: NonNegative = timedelta(days=45)
    # A case disclosed without a fix stays open this long for the vendor's fix, then closes.
    disclosure_followup: Positive = timedelta(days=90)
    # One notice (vendor, operators, public) may be retried this long before it is recorded as undelivered.
    notice_timeout: Positive = timedelta(days=1)
    # Validation and triage, one attempt.
    activity_timeout: Positive = timedelta(minutes=5)
    # A review's vulnerability finding is retried this long while the clearinghouse is unreachable.
    forward_timeout: Positive = timedelta(days=1)
    # The clearinghouse continues as new after this many reports, keeping each run's history bounded.
    reports_per_run: Annotated[int, Field(ge=1, le=MAX_REPORTS_PER_RUN)] = 1000

    @model_validator(mode="after")
    def _exploitation_shortens(self) -> ClearinghousePolicy:
        if self.exploited_embargo > self.embargo:
            raise ValueError("clearinghouse.exploited_embargo exceeds clearinghouse.embargo")
        return self


class Policy(BaseModel):
    # Kept in every review's history (the review office's admission): a field dropped later is
    # ignored on replay; policy files are held strictly by `load_policy`.
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    version: str
    description: str = ""
    # Standards check: how long each agency has to answer before it counts as "no response".
    standards_check_timeout: Positive
    standards_check_attempt_timeout: Positive
    # NSA determination.
    determination_deadline: Positive
    on_nsa_silence: Literal["not_covered", "covered"] = "not_covered"
    default_participants: list[Agency] = Field(default_factory=lambda: list(STANDARDS_BODIES))
    # Review window, from the determination.
    review_window: Positive
    # The longest a review may hold the model from its disclosure, whatever stage it is in. Every
    # stage's clock is cut to what is left of it; at the bound the review releases, whatever is
    # pending. Unset: every clock together (standards check + NSA deadline + window), i.e. no
    # bound beyond the stages' own.
    max_hold: Positive | None = None
    # The evaluations a disclosure may report (name -> what it measures): a controlled vocabulary, so a
    # misspelt name is refused at the door instead of slipping past every standard.
    evaluations: Annotated[dict[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$")], str], Field(min_length=1)]
    # Release.
    release_activity_timeout: Positive = timedelta(minutes=5)
    # Treasury's vulnerability clearinghouse (defaults: CERT/CC's 45-day embargo).
    clearinghouse: ClearinghousePolicy = Field(default_factory=ClearinghousePolicy)

    @model_validator(mode="after")
    def _within_the_order(self) -> Policy:
        if self.review_window > STATUTORY_WINDOW_CAP:
            raise ValueError(f"review_window {self.review_window} exceeds the order's cap of 30 days")
        if self.standards_check_attempt_timeout > self.standards_check_timeout:
            raise ValueError("standards_check_attempt_timeout exceeds standards_check_timeout")
        bad = [a for a in self.default_participants if a not in STANDARDS_BODIES]
        if bad:
            raise ValueError(f"default_participants must be standards bodies, not {bad}")
        return self

    @property
    def every_clock(self) -> timedelta:
        """The stages' clocks end to end: the longest hold if no stage is cut."""
        return self.standards_check_timeout + self.determination_deadline + self.review_window

    @property
    def hold_bound(self) -> timedelta:
        """The longest this policy may hold a model from its disclosure."""
        return self.max_hold if self.max_hold is not None else self.every_clock

    def unknown_evaluations(self, names: Iterable[str]) -> str | None:
        """Why these evaluation names are not acceptable under this policy, or None."""
        unknown = sorted(n for n in names if n not in self.evaluations)
        if not unknown:
            return None
        return (
            f"unknown evaluation{'s' if len(unknown) > 1 else ''} {', '.join(repr(n) for n in unknown)} "
            f"(policy {self.version} knows: {', '.join(sorted(self.evaluations))})"
        )


def clocks_fit(policy: Policy) -> str | None:
    """Why the policy's clocks cannot fit its bound on the whole hold (None when they do).

    The stages before the review (standards check, the NSA's deadline) must leave some of the
    bound for a covered model's review window. (A bound longer than every clock together is
    allowed: it simply never binds, and `hold_bound` is what the status and the report show.)"""
    before_review = policy.standards_check_timeout + policy.determination_deadline
    if policy.hold_bound <= before_review:
        return (
            f"max_hold {describe(policy.hold_bound)} leaves no review window after the standards check "
            f"({describe(policy.standards_check_timeout)}) and the NSA's deadline "
            f"({describe(policy.determination_deadline)})"
        )
    return None


class PolicyError(ValueError):
    pass


def load_policy(name_or_path: str | Path = DEFAULT_POLICY) -> Policy:
    """A policy by name (`eo-2026` -> policies/eo-2026.toml) or by file path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = POLICY_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in POLICY_DIR.glob("*.toml")))
        raise PolicyError(f"policy {str(name_or_path)!r} not found (known: {known})")
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise PolicyError(f"policy {path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise PolicyError(f"policy {path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(f"policy {path}: malformed TOML: {e}") from None
    try:
        policy = Policy.model_validate(data.get("policy", data), extra="forbid")  # strict at the door
    except ValidationError as e:
        raise PolicyError(f"policy {path}: {one_line(e)}") from None
    problem = clocks_fit(policy)
    if problem:
        raise PolicyError(f"policy {path}: {problem}")
    return policy


def one_line(e: ValidationError) -> str:
    """A pydantic error as one line naming each bad field."""
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def describe(duration: timedelta) -> str:
    """A duration as people say it: '30 days', '14 days 12 h', '30 s'."""
    total = int(duration.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [
        f"{days} day{'s' if days != 1 else ''}" if days else "",
        f"{hours} h" if hours else "",
        f"{minutes} min" if minutes else "",
        f"{seconds} s" if seconds else "",
    ]
    return " ".join(p for p in parts if p) or "0 s"
