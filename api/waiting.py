"""Waiting for a workflow to reach a state: the one polling loop of the project.

A workflow's state is read by a query (or visibility), so waiting for it is polling: ask, check,
sleep, until a deadline. Every caller that waits (the CLI after a message, `demo`, `disclose`
giving a new run time to be sealed, the benchmark, the tests) goes through `until`, so they all
give up the same way: `StillWaiting`, naming what was last seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class StillWaiting(TimeoutError, Generic[T]):
    """The deadline passed before the state was reached; `last` is what the last probe saw (None if
    every probe failed with a tolerated error)."""

    def __init__(self, message: str, last: T | None) -> None:
        super().__init__(message)
        self.last = last


async def until(
    probe: Callable[[], Awaitable[T]],
    ready: Callable[[T], bool],
    *,
    timeout: float,
    interval: float = 0.1,
    tolerate: tuple[type[BaseException], ...] = (),
    what: str = "the state",
    seen: Callable[[T], str] = repr,
) -> T:
    """Call `probe` until `ready(value)`, every `interval` seconds, for at most `timeout` seconds;
    the first ready value. Probes failing with a `tolerate`d error (a workflow not started yet)
    count as not ready; any other error propagates at once. `what` and `seen` (the last value, in
    words) make the one-line error. The probe runs at least once, and once
    more after the deadline would pass during a sleep, so a state reached at the last moment counts."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: T | None = None
    while True:
        try:
            value = await probe()
        except tolerate:
            pass
        else:
            if ready(value):
                return value
            last = value
        left = deadline - loop.time()
        if left <= 0:
            shown = "nothing" if last is None else _brief(seen(last))
            raise StillWaiting(f"{what} not reached in {timeout:g} s (last seen: {shown})", last)
        await asyncio.sleep(min(interval, left))


def _brief(text: str) -> str:
    return text if len(text) <= 200 else text[:197] + "..."
