"""Stop the running event loop's clock: what completes afterwards completed on events, not on a timer.

"It happened promptly" asserted as a wall-clock bound flakes on a loaded machine, and a bound loose
enough not to flake misses a regression that waits out a short timeout. asyncio runs a timer when
`loop.time()` reaches its deadline (https://docs.python.org/3/library/asyncio-eventloop.html#scheduling-delayed-callbacks),
so once that clock stops no timer armed afterwards ever fires: code that waits on a timeout never
completes and the test's pytest timeout reports it, however fast or slow the machine. I/O and
callbacks run as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any


class Timers:
    """What happened to the loop's timers inside `clock_stopped`."""

    def __init__(self) -> None:
        self.fired: list[float] = []  # delays (seconds after arming) of the timers that ran
        self.stopped = False  # the clock has stopped (at once, or when the awaited timer fired)


@contextlib.contextmanager
def clock_stopped(*, after_timer: float | None = None) -> Iterator[Timers]:
    """Stop the running loop's clock: at once, or when a timer armed for `after_timer` seconds fires
    (e.g. a read timeout: it fires, and nothing may wait on any timer after it). Restored on exit."""
    loop = asyncio.get_running_loop()
    real_time, real_call_at = loop.time, loop.call_at
    timers = Timers()
    stopped_at: list[float] = []

    def time() -> float:
        return stopped_at[0] if stopped_at else real_time()

    def call_at(when: float, callback: Callable[..., object], *args: Any,
                context: Any = None) -> asyncio.TimerHandle:
        delay = when - time()

        def fire(*a: Any) -> None:
            timers.fired.append(delay)
            if after_timer is not None and not stopped_at and abs(delay - after_timer) < 0.01:
                stopped_at.append(real_time())
                timers.stopped = True
            callback(*a)

        return real_call_at(when, fire, *args, context=context)

    if after_timer is None:
        stopped_at.append(real_time())
        timers.stopped = True
    # asyncio reads both through the instance (call_later -> self.call_at, _run_once -> self.time).
    loop.time = time  # type: ignore[method-assign]
    loop.call_at = call_at  # type: ignore[method-assign, assignment]
    try:
        yield timers
    finally:
        del loop.time
        del loop.call_at
