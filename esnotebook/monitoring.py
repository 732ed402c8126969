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
                         ``overhead + per_event * head``, with the ``costs`` given (e.g.
                         ``es.sim.calibrate``'s ``rebuild_overhead`` and ``apply_cost``),
                         or else fitted on the first three chunks: ``overhead`` is the
                         setup before the first chunk plus that chunk's seconds beyond
                         ``per_event`` (warm-up), ``per_event`` the seconds per event of
                         the second and third chunks together (ranges folded two at a
                         time finish in pairs); null for a Dask rebuild
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

Beside the status, :func:`lag_status` gives the arrival-aware **catch-up time**: how long
until the backlog is gone if both rates hold,

    catch_up_s = backlog / (consume_rate - arrival_rate)

over the window's first and last rows: ``consume_rate`` is the checkpoint's advance per
second, ``arrival_rate`` the head's growth per second (``head = checkpoint + offset_lag``),
and ``backlog`` the last row's offset lag. The verdict, the first rule that matches:

1. ``draining``, 0 s - caught up: the backlog is 0 (also with no rows and no lag).
2. ``stalled``, infinite - not consuming: the Burrow status is ``STOPPED`` (no step for
   longer than the window spans, or never stepped while events wait).
3. unknown (``None``) - one row, or rows that span no time: no rate can be measured
   (``consume_rate``, ``arrival_rate`` and ``catch_up_s`` are ``None``).
4. ``stalled``, infinite - the checkpoint did not advance across the window.
5. ``draining``, the formula - the consumer is faster than the producer (the backlog
   shrank across the window).
6. ``growing``, infinite - it consumes, but no faster than events arrive (the backlog did
   not shrink).
"""

from __future__ import annotations

import html
import itertools
import math
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
Verdict = Literal["draining", "growing", "stalled"]


@dataclass(frozen=True, slots=True)
class LagStatus:
    """A lag verdict: the status, the rule that gave it, and the window's latest numbers;
    and the catch-up time: the rates measured over the window (events per second, ``None``
    when the window spans no time), the seconds until the backlog is gone (``math.inf``
    if never, ``None`` if unknown) and its verdict (rules in :mod:`esnotebook.monitoring`)."""

    status: Status
    rule: str
    offset_lag: int
    time_lag_s: float
    window: int
    consume_rate: float | None = None
    arrival_rate: float | None = None
    catch_up_s: float | None = None
    verdict: Verdict | None = None

    @property
    def catch_up(self) -> str:
        """The catch-up time and its verdict, in words."""
        rates = (
            f" (consuming {_per_s(self.consume_rate)}, arriving {_per_s(self.arrival_rate)})"
            if self.consume_rate is not None and self.arrival_rate is not None
            else ""
        )
        if self.verdict is None:
            return "catch-up time unknown: the window spans no time"
        if self.catch_up_s == 0:
            return "caught up"
        if self.verdict == "draining":
            return f"draining: caught up in {_seconds(self.catch_up_s)}{rates}"  # type: ignore[arg-type]
        if self.verdict == "growing":
            return f"growing: never catches up{rates}"
        return f"stalled: not consuming, never catches up{rates}"

    def __str__(self) -> str:
        return f"{self.status}: {self.rule}; {self.catch_up}"

    def _repr_html_(self) -> str:
        colour = {"OK": "green", "WARNING": "orange", "STALLED": "red", "STOPPED": "darkred"}[self.status]
        return (
            f"<b style='color:{colour}'>{self.status}</b> {html.escape(self.rule)} "
            f"(offset lag {self.offset_lag}, time lag {self.time_lag_s:.1f} s, "
            f"window {self.window} steps); {html.escape(self.catch_up)}"
        )


def _seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _per_s(rate: float) -> str:
    return f"{rate:,.0f} ev/s" if abs(rate) >= 100 else f"{rate:.3g} ev/s"


def lag_status(
    metrics: pl.DataFrame,
    *,
    now: datetime,
    window: int = 10,
    head: int = 0,
    checkpoint: int = 0,
) -> LagStatus:
    """Judge the last ``window`` rows of a runner's metrics, and how long until it catches up
    (rules in the module docstring).

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

    Over 10 s the checkpoint advanced by 500 and the head by 300: 50 - 30 = 20 events per
    second drain the backlog of 400 in 20 s.

    >>> rows = pl.DataFrame({"wall_time": [t0, t0 + timedelta(seconds=10)],
    ...                      "checkpoint": [0, 500], "offset_lag": [600, 400], "time_lag_s": [3.0, 2.0]})
    >>> status = lag_status(rows, now=t0 + timedelta(seconds=10))
    >>> status.consume_rate, status.arrival_rate, status.catch_up_s, status.verdict
    (50.0, 30.0, 20.0, 'draining')
    >>> print(status)
    OK: lag shrinks; draining: caught up in 20.0 s (consuming 50 ev/s, arriving 30 ev/s)
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ValueError(f"'window' must be an int >= 2 (got {window!r})")
    recent = metrics.tail(window)
    n = recent.height
    if n == 0:
        if head <= checkpoint:
            return LagStatus("OK", "nothing to consume yet", 0, 0.0, 0, catch_up_s=0.0, verdict="draining")
        return LagStatus(
            "STOPPED", "never stepped while events wait", head - checkpoint, 0.0, 0,
            catch_up_s=math.inf, verdict="stalled",
        )  # fmt: skip
    lags = [int(x) for x in recent["offset_lag"]]
    checkpoints = [int(x) for x in recent["checkpoint"]]
    times = recent["wall_time"].to_list()
    status, rule = _burrow(lags, checkpoints, times, now)
    span = (times[-1] - times[0]).total_seconds()
    consumed = checkpoints[-1] - checkpoints[0]
    arrived = consumed + lags[-1] - lags[0]  # the head's growth
    measured = span > 0
    return LagStatus(
        status, rule, lags[-1], float(recent["time_lag_s"][-1] or 0.0), n,
        consumed / span if measured else None, arrived / span if measured else None,
        *_catch_up(lags[-1], consumed, arrived, span, stopped=status == "STOPPED"),
    )  # fmt: skip


def _burrow(
    lags: list[int], checkpoints: list[int], times: list[datetime], now: datetime
) -> tuple[Status, str]:
    """The Burrow status and its rule (rules 1-5 of the module docstring)."""
    last_lag = lags[-1]
    if min(lags) == 0:
        return "OK", "caught up within the window (offset lag reached 0)"
    if len(lags) < 2:
        return "WARNING", "lagging, and one step is too few to judge a trend"
    span = (times[-1] - times[0]).total_seconds()
    idle = (now - times[-1]).total_seconds()
    if idle > span:
        return "STOPPED", f"no step for {idle:.1f} s, longer than the window spans ({span:.1f} s)"
    if checkpoints[-1] == checkpoints[0]:
        return "STALLED", f"checkpoint stuck at {checkpoints[-1]} with lag {last_lag}"
    if all(b >= a for a, b in itertools.pairwise(lags)):
        return "WARNING", "checkpoint moves but the lag never shrank in the window"
    return "OK", "lag shrinks"


def _catch_up(
    backlog: int, consumed: int, arrived: int, span: float, *, stopped: bool
) -> tuple[float | None, Verdict | None]:
    """Seconds until ``backlog`` is gone and the verdict (catch-up rules 1-6 of the module
    docstring), from the checkpoint's and the head's advance over ``span`` seconds."""
    if backlog == 0:
        return 0.0, "draining"
    if stopped:
        return math.inf, "stalled"
    if span <= 0:
        return None, None
    if consumed <= 0:
        return math.inf, "stalled"
    if consumed > arrived:
        return backlog * span / (consumed - arrived), "draining"
    return math.inf, "growing"
