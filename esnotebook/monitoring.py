"""Consumer-lag monitoring: what each runner step records, and a Burrow-style lag status.

Every :meth:`ProjectionRunner.step` appends one row to ``runner.metrics``:

``wall_time``      when the step ended (UTC)
``head``           the store's head position then
``checkpoint``     the last position the projection has applied
``offset_lag``     ``head - checkpoint``: events not applied yet
``time_lag_s``     age in seconds of the oldest unapplied event (0 when caught up)
``applied``        events read by this step
``seconds``        how long the step took
``events_per_s``   ``applied / seconds``

A :meth:`~esnotebook.ProjectionRunner.rebuild` records rows too (one per committed chunk,
or one at the end), and on its last row two more columns, null on every other row:

``rebuild_predicted_s``  the cost model's seconds for the whole rebuild,
                         ``overhead + per_event * head``: with the ``costs`` given (e.g.
                         ``es.sim.calibrate``'s), or else fitted on the first two chunks
                         (see :class:`esnotebook._progress.ModelEta`); null for a Dask
                         rebuild
``rebuild_actual_s``     the seconds the whole rebuild took, from the call to the last
                         commit

:func:`lag_status` judges the recent window of these rows the way LinkedIn's Burrow judges
a Kafka consumer. The rules, checked in this order (the first that matches wins):

1. ``OK`` - caught up: the offset lag is 0 in some row of the window (Burrow: a consumer
   that reached the head within the window is fine however it got there). An empty window
   over an empty store is ``OK`` too.
2. ``STOPPED`` - the runner has not stepped for longer than the window spans: ``now`` minus
   the last step is greater than the last step minus the first step of the window (and the
   lag is not 0). A runner that never stepped while it lags behind the head is ``STOPPED``
   (with no rows, ``head`` and ``checkpoint`` decide: no lag is ``OK``).
3. ``STALLED`` - it steps, but the checkpoint did not move across the window while lag
   remains (Burrow's ``ERROR``/stalled partition: alive but not consuming).
4. ``WARNING`` - the checkpoint moves, but the offset lag never shrank between two
   consecutive rows of the window: the consumer is falling behind.
5. ``OK`` - otherwise: lag shrank at least once in the window.

Rules 2-4 need at least two rows; with one row and lag > 0 the status is ``WARNING``.
"""

from __future__ import annotations

import html
import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import polars as pl

from ._schema import UTC_DATETIME

__all__ = ["METRICS_SCHEMA", "LagStatus", "lag_status"]

METRICS_SCHEMA: dict[str, pl.DataType] = {
    "wall_time": UTC_DATETIME,
    "head": pl.Int64(),
    "checkpoint": pl.Int64(),
    "offset_lag": pl.Int64(),
    "time_lag_s": pl.Float64(),
    "applied": pl.Int64(),
    "seconds": pl.Float64(),
    "events_per_s": pl.Float64(),
    "rebuild_predicted_s": pl.Float64(),
    "rebuild_actual_s": pl.Float64(),
}

Status = Literal["OK", "WARNING", "STALLED", "STOPPED"]


@dataclass(frozen=True, slots=True)
class LagStatus:
    """A lag verdict: the status, the rule that gave it, and the window's latest numbers."""

    status: Status
    rule: str
    offset_lag: int
    time_lag_s: float
    window: int

    def __str__(self) -> str:
        return f"{self.status}: {self.rule}"

    def _repr_html_(self) -> str:
        colour = {"OK": "green", "WARNING": "orange", "STALLED": "red", "STOPPED": "darkred"}[self.status]
        return (
            f"<b style='color:{colour}'>{self.status}</b> {html.escape(self.rule)} "
            f"(offset lag {self.offset_lag}, time lag {self.time_lag_s:.1f} s, "
            f"window {self.window} steps)"
        )


def lag_status(
    metrics: pl.DataFrame,
    *,
    now: datetime,
    window: int = 10,
    head: int = 0,
    checkpoint: int = 0,
) -> LagStatus:
    """Judge the last ``window`` rows of a runner's metrics (rules in the module docstring).

    Parameters
    ----------
    metrics
        Rows with at least ``wall_time, checkpoint, offset_lag, time_lag_s``, oldest first.
    now
        The current time (timezone-aware).
    window
        How many recent rows to judge (>= 2).
    head, checkpoint
        The store's head and the runner's checkpoint now; used when there are no rows yet.

    Examples
    --------
    >>> from datetime import datetime, timedelta, timezone
    >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> rows = pl.DataFrame({"wall_time": [t0, t0 + timedelta(seconds=1)],
    ...                      "checkpoint": [5, 5], "offset_lag": [3, 4], "time_lag_s": [1.0, 2.0]})
    >>> lag_status(rows, now=t0 + timedelta(seconds=1)).status
    'STALLED'
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ValueError(f"'window' must be an int >= 2 (got {window!r})")
    recent = metrics.tail(window)
    n = recent.height
    if n == 0:
        if head <= checkpoint:
            return LagStatus("OK", "nothing to consume yet", 0, 0.0, 0)
        return LagStatus("STOPPED", "never stepped while events wait", head - checkpoint, 0.0, 0)
    lags = recent["offset_lag"].to_list()
    checkpoints = recent["checkpoint"].to_list()
    times = recent["wall_time"].to_list()
    last_lag, last_time_lag = int(lags[-1]), float(recent["time_lag_s"][-1] or 0.0)

    def verdict(status: Status, rule: str) -> LagStatus:
        return LagStatus(status, rule, last_lag, last_time_lag, n)

    if min(lags) == 0:
        return verdict("OK", "caught up within the window (offset lag reached 0)")
    if n < 2:
        return verdict("WARNING", "lagging, and one step is too few to judge a trend")
    span = (times[-1] - times[0]).total_seconds()
    idle = (now - times[-1]).total_seconds()
    if idle > span:
        return verdict(
            "STOPPED", f"no step for {idle:.1f} s, longer than the window spans ({span:.1f} s)"
        )
    if checkpoints[-1] == checkpoints[0]:
        return verdict("STALLED", f"checkpoint stuck at {checkpoints[-1]} with lag {last_lag}")
    if all(b >= a for a, b in itertools.pairwise(lags)):
        return verdict("WARNING", "checkpoint moves but the lag never shrank in the window")
    return verdict("OK", "lag shrinks")
