"""What the explorers compute: pure functions of their controls' values, testable without
a widget in sight. Each returns a result object and (where there is one) a summary text."""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

__all__ = [
    "BrowserPage",
    "browse",
    "burst_schedule",
    "lag_explorer_result",
    "lag_summary_html",
    "rebuild_explorer_result",
    "saga_explorer_result",
]

#: Share of the run before the burst starts: a calm stretch first, so the burst stands out.
BURST_START = 0.2

#: Rows a browser page shows at most: more would make the notebook's output heavy.
MAX_PAGE_ROWS = 50

#: Default costs of the rebuild explorer when no calibration is given (seconds): a vectorised
#: rebuild near 2 M events/s, an aggregate load near 100 k events/s plus 50 µs, snapshots at
#: 100 µs to read and 200 µs to write. ``es.sim.calibrate(store)`` measures a real store.
DEFAULT_COSTS = {
    "apply_cost": 5e-7,
    "load_event_cost": 1e-5,
    "load_overhead": 5e-5,
    "snapshot_read_cost": 1e-4,
    "snapshot_write_cost": 2e-4,
}


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(
            f"{name!r} must be a number {'>= 0' if allow_zero else '> 0'} (got {value!r})"
        )
    return float(value)


# ---------------------------------------------------------------------- lag
def burst_schedule(
    producer_rate: float, *, burst_size: float, burst_length: float, duration: float
) -> list[tuple[float, float]]:
    """A calm producer with one burst: ``(start, events/s)`` pairs for ``simulate_lag``.

    The burst multiplies the rate by ``burst_size`` for ``burst_length`` seconds, starting a
    fifth of the way into the run; ``burst_size=1`` or ``burst_length=0`` is no burst.

    Examples
    --------
    >>> burst_schedule(100, burst_size=3, burst_length=10, duration=100)
    [(0.0, 100.0), (20.0, 300.0), (30.0, 100.0)]
    """
    rate = _positive("producer_rate", producer_rate)
    size = _positive("burst_size", burst_size)
    if size < 1:
        raise ValueError(
            f"'burst_size' must be >= 1 (a multiple of the producer rate; got {burst_size!r})"
        )
    length = _positive("burst_length", burst_length, allow_zero=True)
    duration = _positive("duration", duration)
    start = BURST_START * duration
    if size == 1 or length == 0:
        return [(0.0, rate)]
    end = min(start + length, duration)
    return [(0.0, rate), (start, rate * size), (end, rate)]


def lag_explorer_result(
    *,
    producer_rate: float,
    burst_size: float,
    burst_length: float,
    consumer_rate: float,
    consumers: int = 1,
    partitions: int = 0,
    batch_size: int = 1,
    duration: float = 300.0,
    seed: int = 0,
) -> tuple[Any, list[tuple[float, float]]]:
    """Simulate the lag explorer's configuration; return the ``LagResult`` and the schedule.

    ``partitions=0`` is one shared queue (competing consumers); a number keys the events to
    that many partitions.

    Examples
    --------
    >>> r, _ = lag_explorer_result(producer_rate=50, burst_size=2, burst_length=10,
    ...                            consumer_rate=80, duration=60)
    >>> r.grows_without_bound
    False
    """
    from ..sim import simulate_lag

    schedule = burst_schedule(
        producer_rate, burst_size=burst_size, burst_length=burst_length, duration=duration
    )
    result = simulate_lag(
        schedule, service_rate=consumer_rate, consumers=consumers,
        partitions=partitions or None, batch_size=batch_size, duration=duration,
        keep_events=False, progress=False, seed=seed,
    )  # fmt: skip
    return result, schedule


def lag_summary_html(result: Any, schedule: Sequence[tuple[float, float]]) -> str:
    """The lag explorer's summary: verdict, capacity, peak and p99 lags, recovery."""
    s = result.settings
    peak = max(r for _, r in schedule)
    mean_rate = _mean_rate(schedule, float(s["duration"]))
    capacity = float(s["capacity"])
    verdict = (
        "falls behind for good" if result.grows_without_bound
        else ("lags during the burst, then recovers" if peak > capacity else "keeps up")
    )  # fmt: skip
    rows = [
        ("verdict", verdict),
        ("group capacity", f"{capacity:,.1f} events/s"),
        ("producer mean / peak", f"{mean_rate:,.1f} / {peak:,.1f} events/s"),
        ("max offset lag", f"{result['max_offset_lag']:,.0f} events"),
        ("p99 time lag", f"{result['p99_time_lag']:,.2f} s"),
        ("max time lag", f"{result['max_time_lag']:,.2f} s"),
        ("utilisation", f"{result['utilisation']:.0%}"),
    ]
    body = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
        f"<td class='esn-{html.escape(k.replace(' ', '-').replace('/', ''))}'>{html.escape(v)}</td></tr>"
        for k, v in rows
    )
    return f"<table class='esn-lag-summary-table'>{body}</table>"


def _mean_rate(schedule: Sequence[tuple[float, float]], duration: float) -> float:
    total, points = 0.0, [*schedule, (duration, 0.0)]
    for (t0, r), (t1, _) in itertools.pairwise(points):
        total += r * max(0.0, min(t1, duration) - t0)
    return total / duration


# ---------------------------------------------------------------------- rebuild cost
def rebuild_explorer_result(
    *,
    events: int,
    streams: int,
    snapshot_interval: int,
    live_rate: float,
    costs: Any = None,
) -> Any:
    """The rebuild-cost explorer's prediction (``es.sim.rebuild_cost``).

    ``snapshot_interval=0`` means no snapshots. ``costs`` is a ``RebuildCosts`` from
    ``es.sim.calibrate`` (measured on a real store) or ``None`` for :data:`DEFAULT_COSTS`.

    Examples
    --------
    >>> r = rebuild_explorer_result(events=1_000_000, streams=10_000, snapshot_interval=20,
    ...                             live_rate=0)
    >>> r["replayed_tail"]
    9.5
    """
    from ..sim import rebuild_cost

    if costs is None:
        given = dict(DEFAULT_COSTS)
    else:
        given = {k: v for k, v in costs.to_dict().items() if k not in ("events", "streams")}
    return rebuild_cost(
        int(events), streams=int(streams), interval=int(snapshot_interval) or None,
        live_rate=float(live_rate), **given,
    )  # fmt: skip


# ---------------------------------------------------------------------- sagas
def saga_explorer_result(
    *,
    failure: Sequence[float],
    retries: int,
    duplicate: float,
    idempotency: bool,
    instances: int = 200,
    seed: int = 0,
) -> Any:
    """The saga failure explorer's Monte Carlo (``es.sim.simulate_sagas`` on a chain saga
    with one step per ``failure`` probability); the result carries the closed forms too.

    Examples
    --------
    >>> r = saga_explorer_result(failure=[0.0, 0.0], retries=0, duplicate=0.0,
    ...                          idempotency=True, instances=20)
    >>> r["success_rate"]
    1.0
    """
    from ..sim import simulate_sagas

    probs = [float(p) for p in failure]
    return simulate_sagas(
        int(instances), saga="chain", steps=len(probs), failure=probs, retries=int(retries),
        duplicate=float(duplicate), idempotency="on" if idempotency else "off",
        seed=seed, progress=False,
    )  # fmt: skip


# ---------------------------------------------------------------------- the store browser
@dataclass(frozen=True, slots=True)
class BrowserPage:
    """One page of the store browser: the rows shown and where they sit in the match."""

    frame: pl.DataFrame
    matches: int
    page: int
    pages: int
    page_size: int

    @property
    def first_row(self) -> int:
        """1-based number of the first row shown (0 when nothing matches)."""
        return 0 if self.matches == 0 else self.page * self.page_size + 1

    @property
    def last_row(self) -> int:
        return self.page * self.page_size + self.frame.height

    def caption(self) -> str:
        return (
            f"rows {self.first_row:,}–{self.last_row:,} of {self.matches:,} matching events "
            f"(page {self.page + 1} of {max(self.pages, 1)})"
        )

    def to_polars(self) -> pl.DataFrame:
        return self.frame

    def to_pandas(self) -> Any:
        return self.frame.to_pandas()

    def _repr_html_(self) -> str:
        from ..report import html_table

        return f"<p>{html.escape(self.caption())}</p>" + html_table(
            self.frame, max_rows=MAX_PAGE_ROWS
        )


def browse(
    source: Any,
    *,
    stream: str = "",
    event_types: Sequence[str] = (),
    start: datetime | None = None,
    end: datetime | None = None,
    page: int = 0,
    page_size: int = 25,
) -> BrowserPage:
    """Filter a store's events and cut one page out of them.

    Parameters
    ----------
    source
        An event store (anything with ``scan()``) or an event frame.
    stream
        Keep streams whose id contains this text (empty: all).
    event_types
        Keep these event types (empty: all).
    start, end
        Keep events recorded in ``[start, end)`` (timezone-aware; ``None``: open).
    page, page_size
        Which page (from 0; past the end shows the last page) and its length.

    Examples
    --------
    >>> from esnotebook.datasets import generate_orders
    >>> p = browse(generate_orders(20, seed=1), stream="order-", event_types=["OrderPlaced"])
    >>> p.matches
    20
    """
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise ValueError(f"'page_size' must be an int >= 1 (got {page_size!r})")
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise ValueError(f"'page' must be an int >= 0 (got {page!r})")
    for name, value in (("start", start), ("end", end)):
        if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
            raise ValueError(f"{name!r} must be a timezone-aware datetime or None (got {value!r})")
    if isinstance(source, pl.DataFrame):
        lf = source.lazy()
    elif isinstance(source, pl.LazyFrame):
        lf = source
    elif callable(getattr(source, "scan", None)):
        lf = source.scan(event_types=list(event_types) or None)
    else:
        raise TypeError(
            f"browse needs an event store or an event frame (got {type(source).__name__})"
        )
    if "position" not in lf.collect_schema().names():
        lf = lf.with_row_index("position", offset=1)
    if stream:
        lf = lf.filter(pl.col("stream_id").str.contains(stream, literal=True))
    if event_types:
        lf = lf.filter(pl.col("event_type").is_in(list(event_types)))
    if start is not None:
        lf = lf.filter(pl.col("recorded_at") >= start)
    if end is not None:
        lf = lf.filter(pl.col("recorded_at") < end)
    matches = int(lf.select(pl.len()).collect().item())
    pages = -(-matches // page_size)
    page = min(page, max(pages - 1, 0))
    frame = lf.sort("position").slice(page * page_size, page_size).collect()
    # Payload columns that no kept row uses only make the table wide.
    frame = frame.select(
        [c for c in frame.columns if frame[c].null_count() < frame.height or frame.height == 0]
    )
    return BrowserPage(frame, matches, page, pages, page_size)
