"""Calling an activity whose result the workflow acts on: the result must be signed by the party
that produces it (domain/attestation.py), verified here against the worker's pinned anchors.

An unverifiable result (a forgery completed by id, a rogue poller's answer, a payload the codec
refused) is recorded and the question is asked again under a new activity id, a few times while
time remains; after that the caller treats it like silence from that party.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from domain.attestation import Unverifiable, UnverifiedResult, verify

T = TypeVar("T")

# Each attempt is a new race for someone completing activities by id: a few, and the history stays small.
ATTEMPTS = 3


class ResetWatch:
    """Knows whether the history was reset (`temporal workflow reset`) before the point the workflow
    has reached: the SDK reseeds the workflow's randomness exactly there. Create it in
    `@workflow.init`."""

    def __init__(self) -> None:
        self.resets = 0
        workflow.register_random_seed_callback(self._reseeded)

    def _reseeded(self, _seed: int) -> None:
        self.resets += 1


async def attested(
    activity: str,
    *args: Any,
    party: str,
    activity_id: str,
    parse: Callable[[Any], T],
    refused: list[UnverifiedResult],
    deadline: timedelta | None = None,
    local: bool = False,
    **options: Any,
) -> T:
    """The verified, parsed result of `activity`, asked up to ATTEMPTS times; Unverifiable after that.
    `deadline` (schedule-to-close for all attempts together) is shared out: each retry gets what is
    left. Activity failures and timeouts propagate as they are (the caller's silence)."""
    started = workflow.now()
    for attempt in range(1, ATTEMPTS + 1):
        this_id = activity_id if attempt == 1 else f"{activity_id}#{attempt}"
        if deadline is not None:
            left = deadline - (workflow.now() - started)
            if left <= timedelta(0):
                break
            options["schedule_to_close_timeout"] = left
        run = workflow.execute_local_activity if local else workflow.execute_activity
        raw = await run(activity, args=list(args), activity_id=this_id, **options)
        try:
            # Signed for this run or, in a run a reset made, the original run whose results it copied:
            # always both. Choosing by whether the reset's reseed had been seen yet made a copied
            # result believed on one pass and refused on another (the reseed can come in the same
            # activation, applied before it once and after it another time): a reset review's
            # replay failed so under load. A reset of a reset copies results of the middle run,
            # which neither names: they no longer verify, visibly (known limit).
            info = workflow.info()
            result = verify(raw, party=party, workflow_id=info.workflow_id, run_id=info.run_id,
                            other_runs=[info.original_execution_run_id], activity_id=this_id)  # fmt: skip
            return parse(result)
        except (Unverifiable, ValidationError) as e:
            reason = str(e) if isinstance(e, Unverifiable) else "signed result does not have the expected form"
            refused.append(UnverifiedResult(activity_id=this_id, party=party, reason=reason))
            workflow.logger.warning("activity result not believed", extra={"activity_id": this_id, "party": party})
    raise Unverifiable(f"no verifiable result from {party} for {activity_id}")


def model(cls: type[T]) -> Callable[[Any], T]:
    return cls.model_validate  # type: ignore[attr-defined]
