"""Clocks a saga runner waits on: a simulated one (the default) and the wall clock.

Backoff and timeouts are waits. On the :class:`SimulatedClock` a wait only moves a number
forward, so a run with thousands of retries takes no real time and is reproducible; the
:class:`WallClock` really sleeps, for running against live systems.

>>> clock = SimulatedClock()
>>> clock.sleep(1.5); clock.now()
1.5
"""

from __future__ import annotations

import time

__all__ = ["SimulatedClock", "WallClock"]


class SimulatedClock:
    """Seconds as a number that moves only when someone waits or :meth:`advance` is called."""

    simulated = True

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        """The current time in seconds."""
        return self._now

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``: move the clock forward."""
        if seconds < 0:
            raise ValueError(f"'seconds' must be >= 0 (got {seconds!r})")
        self._now += seconds

    advance = sleep

    def set(self, seconds: float) -> None:
        """Move the clock to ``seconds`` if that is later than now (a restarted runner
        continues from the time it had reached)."""
        self._now = max(self._now, float(seconds))

    def __repr__(self) -> str:
        return f"SimulatedClock(now={self._now:g})"


class WallClock:
    """Real time: :func:`time.monotonic` seconds since the clock was made; sleeps for real."""

    simulated = False

    def __init__(self) -> None:
        self._origin = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._origin

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"'seconds' must be >= 0 (got {seconds!r})")
        time.sleep(seconds)

    def set(self, seconds: float) -> None:
        """Wall time cannot be moved; kept for the runner's restart logic."""

    def __repr__(self) -> str:
        return "WallClock()"
