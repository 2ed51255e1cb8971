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

    def activity_runs(self) -> tuple[str, ...]:
        """The runs an activity result may have been signed for: this run, or, in a reset run, the
        original run whose part of the history it copied. Both, always, rather than choosing by
        whether a reset was seen yet: the SDK's reseed can come in the same activation as a copied
        result, before it on one pass and after it on another, and a result believed live but not on
        replay (or the reverse) broke the replay of reset reviews (seen here under load: live refused
        the NSA's copied receipt and asked again, the replay believed it). A genuine result made for
        the original run of this workflow, for this activity id, is what a reset run may read. (A
        reset of a reset copies results of the middle run, which neither names: they no longer
        verify, visibly. Known limit.)"""
        info = workflow.info()
        return tuple(dict.fromkeys((info.original_execution_run_id, info.run_id)))


async def attested(
    activity: str,
    *args: Any,
    party: str,
    activity_id: str,
    parse: Callable[[Any], T],
    watch: ResetWatch,
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
            result = _verified(raw, party, watch.activity_runs(), this_id)
            return parse(result)
        except (Unverifiable, ValidationError) as e:
            reason = str(e) if isinstance(e, Unverifiable) else "signed result does not have the expected form"
            refused.append(UnverifiedResult(activity_id=this_id, party=party, reason=reason))
            workflow.logger.warning("activity result not believed", extra={"activity_id": this_id, "party": party})
    raise Unverifiable(f"no verifiable result from {party} for {activity_id}")


def model(cls: type[T]) -> Callable[[Any], T]:
    return cls.model_validate  # type: ignore[attr-defined]


def _verified(raw: Any, party: str, runs: tuple[str, ...], activity_id: str) -> Any:
    """The result, if `party` signed it for this workflow, one of `runs` and this activity."""
    wid = workflow.info().workflow_id
    for run_id in runs[:-1]:
        try:
            return verify(raw, party=party, workflow_id=wid, run_id=run_id, activity_id=activity_id)
        except Unverifiable:
            continue
    return verify(raw, party=party, workflow_id=wid, run_id=runs[-1], activity_id=activity_id)
