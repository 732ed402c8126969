"""Progress bars: ``tqdm.auto`` (a widget in Jupyter, text in a terminal), imported only when
a bar is shown, and silent whenever ``TQDM_DISABLE`` is set (CI sets it); and
:class:`ModelEta`, the cost model's time left that a rebuild's bar shows beside tqdm's."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any


def progress_bar(
    iterable: Iterable[Any] | None = None, *, enabled: bool = True, **kwargs: Any
) -> Any:
    """A ``tqdm.auto`` bar over ``iterable`` (or a manual one), shown when ``enabled``.

    An explicit ``disable`` argument would override tqdm's own reading of ``TQDM_DISABLE``,
    so the environment is consulted here.
    """
    from tqdm.auto import tqdm

    quiet = not enabled or os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false")
    return tqdm(iterable, disable=quiet, **kwargs)


class ModelEta:
    """A bar's second ETA: the time left by a linear cost model, beside tqdm's own.

    The model is ``seconds = overhead + per_event * events``. Given ``per_event`` (a
    calibrated model, e.g. ``es.sim.calibrate``'s ``apply_cost`` and ``rebuild_overhead``)
    it forecasts from the start. Otherwise it is fitted on the first three chunks: the
    fixed cost is the setup time from ``began`` to the start of the first chunk (when this
    object is made) plus the first chunk's seconds beyond the per-event cost (warm-up:
    imports, caches, a first read); the per-event cost is the seconds per event of the
    second and third chunks together (of the first alone until there is a second). Two
    chunks, not one, because a rebuild that folds two ranges at a time in threads
    finishes them in pairs. Then it stands. Its time left after ``done`` events is
    ``per_event * (total - done)``: the model's, not the measured rate's, so a forecast
    that is off shows as a gap between the two ETAs.

    Examples
    --------
    >>> clock = iter([0.0, 3.0, 4.0, 5.0]).__next__  # made at 0 s; chunks end at 3, 4 and 5 s
    >>> bar = progress_bar(total=100, enabled=False)
    >>> eta = ModelEta(bar, total=100, began=-1.0, timer=clock)
    >>> eta.update(25)  # 25 events in 3 s, after 1 s of setup: 0.12 s per event
    >>> eta.per_event, eta.overhead, eta.left, bar.postfix
    (0.12, 1.0, 9.0, 'model 00:09 left')
    >>> eta.update(20)
    >>> eta.update(30)  # 50 events in 2 s: 0.04 s per event, so the first chunk had 2 s of warm-up
    >>> eta.per_event, eta.overhead, eta.predicted, eta.left
    (0.04, 3.0, 7.0, 1.0)
    """

    def __init__(
        self,
        bar: Any,
        *,
        total: int,
        began: float,
        per_event: float | None = None,
        overhead: float = 0.0,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.bar, self.total, self.per_event, self.overhead = bar, total, per_event, overhead
        self.done = 0
        self._timer = timer
        self._last = timer()
        self._chunks: list[tuple[int, float]] | None = None if per_event is not None else []
        if self._chunks is None:
            self._show()
        else:
            self._setup = self._last - began

    @property
    def predicted(self) -> float | None:
        """The model's seconds for the whole run (``None`` before it is fitted)."""
        return None if self.per_event is None else self.overhead + self.per_event * self.total

    @property
    def left(self) -> float | None:
        """The model's seconds still to go (``None`` before it is fitted)."""
        return None if self.per_event is None else self.per_event * (self.total - self.done)

    def update(self, n: int) -> None:
        """``n`` more events are done: fit the model on the first three chunks, show its time left."""
        if self._chunks is not None and len(self._chunks) < 3:
            now = self._timer()
            self._chunks.append((n, now - self._last))
            self._last = now
            rated = self._chunks[1:] or self._chunks
            self.per_event = sum(t for _, t in rated) / max(sum(k for k, _ in rated), 1)
            first, seconds = self._chunks[0]
            self.overhead = self._setup + max(seconds - self.per_event * first, 0.0)
        self.done += n
        self._show(n)

    def _show(self, advanced: int = 0) -> None:
        self.bar.set_postfix_str(f"model {self.bar.format_interval(self.left)} left", refresh=False)
        self.bar.update(advanced)
        self.bar.refresh()  # at once: a chunk is long, and tqdm skips draws within its mininterval
