"""Rebuild cost: how long a projection rebuild and an aggregate load take, and what
snapshots buy — :func:`rebuild_cost` and its :class:`RebuildResult`.

The model, for a store of ``N`` events of which the aggregate's ``S`` streams hold lengths
``L``, with a snapshot every ``k`` events:

- projection rebuild (snapshots do not help: a projection replays every event):
  ``T = (N c + o) / (1 - λ c)`` for apply cost ``c`` (rate ``r = 1/c``), fixed overhead ``o``
  and live traffic ``λ``; with ``o = 0`` that is ``N / (r - λ)``, never done when ``r <= λ``;
- aggregate load: ``load_overhead + snapshot_read_cost [a snapshot exists] +
  load_event_cost · tail``; the replayed tail is ``L mod k`` (a stream shorter than ``k``
  has no snapshot and replays whole), on average ``(k - 1) / 2`` over streams of many
  lengths (:func:`~esnotebook.sim.theory.expected_replayed_tail`);
- snapshot writes: one per ``k`` appended events, each ``snapshot_write_cost`` seconds and
  ``snapshot_bytes`` bytes; the store keeps ``keep`` per aggregate;
- steady-state cost per appended event: ``loads_per_event · steady load + snapshot_write_cost / k``,
  where the steady load is the mean over the loads of the streams' lives so far (one before
  each append, at versions ``0 … L-1``: tail ``v mod k``, from a snapshot once ``v >= k``),
  not the load at today's lengths, whose ``L mod k`` is least at ``k = L`` and would make
  the streams' current lengths the cheapest interval; minimised near
  ``k* = sqrt(2 snapshot_write_cost / (loads_per_event · load_event_cost))``.

The costs come from :func:`~esnotebook.sim.calibrate` (measured on a real store) or are
given in seconds.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from . import theory
from ._costs import RebuildCosts
from ._result import _fmt

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RebuildResult", "rebuild_cost"]

RebuildView = Literal["intervals", "summary"]
_GRID = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)
_DENSE = 1_000  # every interval up to this one is tried for the cheapest ...
_BUDGET = 4_000_000  # ... or fewer (>= 100), to keep intervals × distinct lengths below this
_COST_NAMES = (
    "apply_cost",
    "rebuild_overhead",
    "load_event_cost",
    "load_overhead",
    "snapshot_read_cost",
    "snapshot_write_cost",
    "snapshot_bytes",
    "event_bytes",
)
_INTERVAL_SCHEMA = {
    "interval": pl.Int64,
    "replayed_tail": pl.Float64,
    "snapshot_share": pl.Float64,
    "load_time_s": pl.Float64,
    "all_loads_s": pl.Float64,
    "snapshot_writes_per_event": pl.Float64,
    "snapshots_written": pl.Float64,
    "snapshots_kept": pl.Float64,
    "snapshot_storage_bytes": pl.Float64,
    "write_amplification": pl.Float64,
    "steady_replayed_tail": pl.Float64,
    "steady_load_time_s": pl.Float64,
    "cost_per_event_s": pl.Float64,
}


def _number(name: str, value: object, *, positive: bool = False) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0 or (positive and value == 0):  # type: ignore[arg-type]
        need = "> 0" if positive else ">= 0"
        raise ValueError(f"{name!r} must be a finite number {need} (got {value!r})")
    return float(value)  # type: ignore[arg-type]


def _count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name!r} must be an int >= {minimum} (got {value!r})")
    return int(value)


def _interval(name: str, value: object) -> int | None:
    if value is None:
        return None
    return _count(name, value, 1)


@dataclass(frozen=True, slots=True)
class _Lengths:
    """Stream lengths as a histogram: distinct lengths and how many streams have each."""

    values: np.ndarray
    counts: np.ndarray
    exact: bool  # False: only a mean length is known

    @property
    def streams(self) -> int:
        return int(self.counts.sum())

    @property
    def events(self) -> float:
        return float((self.values * self.counts).sum())

    @property
    def mean(self) -> float:
        return self.events / self.streams

    def tail(self, k: np.ndarray) -> np.ndarray:
        """Mean events replayed per load with a snapshot every ``k`` (vector of k)."""
        if not self.exact:
            mean = self.mean
            return np.where(mean >= k, (k - 1) / 2, mean)
        rem = self.values[None, :] % k[:, None]
        return (rem * self.counts).sum(axis=1) / self.streams

    def share(self, k: np.ndarray) -> np.ndarray:
        """Share of loads that start from a snapshot (the stream reached ``k`` events)."""
        if not self.exact:
            return (self.mean >= k).astype(float)
        return ((self.values[None, :] >= k[:, None]) * self.counts).sum(axis=1) / self.streams

    def written(self, k: np.ndarray) -> np.ndarray:
        """Snapshots written over the streams' lives."""
        if not self.exact:
            return self.streams * np.floor(self.mean / k)
        return ((self.values[None, :] // k[:, None]) * self.counts).sum(axis=1)

    def steady(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean tail and share of loads from a snapshot over every load of the streams'
        lives: one load at each version ``v = 0 … L-1`` (vector of k; ``k = 0``: no
        snapshots). A stream of ``L = q k + r`` events replays ``q k (k-1)/2 + r (r-1)/2``
        events over its ``L`` loads, and ``max(L - k, 0)`` of them start from a snapshot."""
        lengths, kk = self.values[None, :].astype(float), k[:, None].astype(float)
        safe = np.where(kk > 0, kk, np.inf)  # k = 0: one block as long as the stream
        q = np.floor(lengths / safe)
        r = lengths - q * np.where(kk > 0, kk, 0.0)
        tails = q * kk * (kk - 1) / 2 + r * (r - 1) / 2
        from_snapshot = np.maximum(lengths - safe, 0.0)
        loads = self.events
        return tails @ self.counts / loads, from_snapshot @ self.counts / loads

    def kept(self, k: np.ndarray, keep: int) -> np.ndarray:
        if not self.exact:
            return self.streams * np.minimum(np.floor(self.mean / k), keep)
        return (np.minimum(self.values[None, :] // k[:, None], keep) * self.counts).sum(axis=1)


def _lengths(
    stream_lengths: Any,
    streams: int | None,
    events_per_stream: float | None,
    events: int,
    costs: RebuildCosts | None,
) -> _Lengths:
    given = [n for n, v in (("streams", streams), ("events_per_stream", events_per_stream),
                            ("stream_lengths", stream_lengths)) if v is not None]  # fmt: skip
    if len(given) > 1:
        raise ValueError(
            f"give one of 'streams', 'events_per_stream', 'stream_lengths' (got {', '.join(given)})"
        )
    if events_per_stream is not None:
        per = _number("events_per_stream", events_per_stream, positive=True)
        if per < 1 or per > events:
            raise ValueError(
                f"'events_per_stream' must be between 1 and 'events' ({events}) (got {per!r})"
            )
        return _Lengths(np.array([per]), np.array([max(1, round(events / per))]), False)
    if stream_lengths is None and costs is not None and costs.stream_lengths and streams is None:
        stream_lengths = costs.stream_lengths
    if stream_lengths is not None:
        arr = np.asarray(stream_lengths)
        if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu" or (arr < 1).any():
            raise ValueError(
                "'stream_lengths' must be a non-empty list of ints >= 1 (events per stream); "
                f"got {np.asarray(stream_lengths)[:5]!r}"
            )
        values, counts = np.unique(arr.astype(np.int64), return_counts=True)
        return _Lengths(values, counts.astype(np.int64), True)
    if streams is None:
        if costs is not None and costs.streams:
            streams = costs.streams
        else:
            raise ValueError(
                "rebuild_cost needs 'streams' (the aggregate's streams) or 'stream_lengths'"
            )
    streams = _count("streams", streams, 1)
    mean = events / streams
    if mean < 1:
        raise ValueError(
            f"'events' ({events}) must be at least 'streams' ({streams}): every stream holds an event"
        )
    return _Lengths(np.array([mean]), np.array([streams]), False)


def _costs(costs: RebuildCosts | None, given: dict[str, float | None]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in _COST_NAMES:
        value = given.get(name)
        if value is None:
            value = (
                getattr(costs, name)
                if costs is not None
                else (None if name == "apply_cost" else 0.0)
            )
        if value is None:
            raise ValueError(
                "rebuild_cost needs 'apply_cost' (seconds per event of a projection rebuild) "
                "or a calibration: rebuild_cost(calibrate(store), ...)"
            )
        out[name] = _number(name, value, positive=name == "apply_cost")
    if out["load_event_cost"] == 0:
        out["load_event_cost"] = out[
            "apply_cost"
        ]  # replaying into an aggregate ~ into a projection
    return out


@dataclass(frozen=True, slots=True, eq=False)
class RebuildResult:
    """What :func:`rebuild_cost` predicts.

    Attributes
    ----------
    intervals
        One row per snapshot interval (``interval`` null: no snapshots): ``replayed_tail``
        (events per load), ``snapshot_share`` (loads starting from a snapshot),
        ``load_time_s``, ``all_loads_s`` (loading every aggregate once),
        ``snapshot_writes_per_event``, ``snapshots_written`` (over the streams' lives),
        ``snapshots_kept``, ``snapshot_storage_bytes``, ``write_amplification`` (snapshot
        bytes written per event byte), ``steady_replayed_tail`` and ``steady_load_time_s``
        (the mean over every load of the streams' lives, one per appended event) and
        ``cost_per_event_s`` (steady state, see the module docstring).
    metrics
        The figures at the planned ``interval``, the rebuild under live traffic, and the
        best interval.
    settings
        The inputs: shape of the store, costs, live rate.
    """

    intervals: pl.DataFrame
    metrics: dict[str, Any]
    settings: dict[str, Any] = field(repr=False)

    def __getitem__(self, metric: str) -> Any:
        if metric not in self.metrics:
            raise KeyError(f"no metric {metric!r}; metrics: {', '.join(self.metrics)}")
        return self.metrics[metric]

    @property
    def catches_up(self) -> bool:
        """Whether the projection rebuild ever catches up with the live traffic."""
        return bool(self.metrics["catches_up"])

    @property
    def best_interval(self) -> int | None:
        """The snapshot interval with the least steady-state cost (``None``: no snapshots).

        Every interval up to 1,000 (fewer for very many distinct stream lengths) is tried,
        then a log-spaced grid up to the longest stream and the neighbourhood of the
        square-root rule's ``optimal_interval``."""
        return self.metrics["best_interval"]

    def to_dict(self) -> dict[str, Any]:
        """The metrics, flat (one row of a sweep)."""
        return dict(self.metrics)

    def summary(self) -> pl.DataFrame:
        """``metric, value`` (numbers as floats; ``best_interval`` null means no snapshots)."""
        rows = [
            (k, None if v is None else float(v))
            for k, v in self.metrics.items()
            if v is None or isinstance(v, (int, float, bool))
        ]
        return pl.DataFrame(rows, schema={"metric": pl.String, "value": pl.Float64}, orient="row")

    def to_polars(self, view: RebuildView = "intervals") -> pl.DataFrame:
        """The ``"intervals"`` sweep (default) or the ``"summary"``."""
        if view == "intervals":
            return self.intervals
        if view == "summary":
            return self.summary()
        raise ValueError(f"'view' must be 'intervals' or 'summary' (got {view!r})")

    def to_pandas(self, view: RebuildView = "intervals") -> pd.DataFrame:
        """:meth:`to_polars` as a pandas DataFrame."""
        return self.to_polars(view).to_pandas()

    def plot(self, *, ax: Any = None) -> Any:
        """Load time and cost per event against the snapshot interval (matplotlib)."""
        from ..plot import plot_rebuild_cost

        return plot_rebuild_cost(self, ax=ax)

    def _repr_html_(self) -> str:
        m, s = self.metrics, self.settings
        k = "none" if s["interval"] is None else str(s["interval"])
        head = (
            f"{s['events']:,} events, {s['streams']:,} streams (mean {_fmt(s['events_per_stream'])} "
            f"events each), snapshot interval {k}, live {_fmt(s['live_rate'])} events/s"
        )
        rebuild = (
            f"rebuild {_fmt(m['rebuild_time_s'])} s at {_fmt(m['rebuild_rate'])} events/s"
            if m["catches_up"]
            else f"rebuild never catches up ({_fmt(m['rebuild_rate'])} events/s ≤ live rate)"
        )
        best = (
            "no snapshots" if m["best_interval"] is None else f"every {m['best_interval']} events"
        )
        keep = (
            ("replayed_tail", "events"),
            ("load_time_s", "s"),
            ("all_loads_s", "s"),
            ("snapshot_writes_per_event", ""),
            ("snapshot_storage_bytes", "bytes"),
            ("write_amplification", ""),
            ("cost_per_event_s", "s"),
        )
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(_fmt(float(m[name])))}</td>"
            f"<td>{html.escape(unit)}</td></tr>"
            for name, unit in keep
        )
        return (
            f"<div><b>RebuildResult</b>: {html.escape(head)} — <b>{html.escape(rebuild)}</b>; "
            f"cheapest: {html.escape(best)}"
            f"<table><tr><th>metric</th><th>value</th><th>unit</th></tr>{rows}</table></div>"
        )


def rebuild_cost(
    events: int | RebuildCosts,
    *,
    streams: int | None = None,
    events_per_stream: float | None = None,
    stream_lengths: Sequence[int] | np.ndarray | None = None,
    interval: int | None = None,
    intervals: Sequence[int | None] | None = None,
    live_rate: float = 0.0,
    loads_per_event: float = 1.0,
    keep: int = 2,
    apply_cost: float | None = None,
    rebuild_overhead: float | None = None,
    load_event_cost: float | None = None,
    load_overhead: float | None = None,
    snapshot_read_cost: float | None = None,
    snapshot_write_cost: float | None = None,
    snapshot_bytes: float | None = None,
    event_bytes: float | None = None,
    seed: int | None = None,
) -> RebuildResult:
    """Predict rebuild and aggregate-load time, with and without snapshots.

    Parameters
    ----------
    events
        Events in the store (``N``), or a :class:`~esnotebook.sim.RebuildCosts` from
        :func:`~esnotebook.sim.calibrate`, which brings the store's shape and its costs.
    streams
        The aggregate's streams (``S``); their mean length is ``events / streams``.
    events_per_stream
        Or the mean stream length instead (``streams = events / events_per_stream``).
    stream_lengths
        The aggregate's stream lengths, for the exact replayed tail ``mean(L mod k)``
        instead of ``(k - 1) / 2``.
    interval
        The snapshot interval planned (``None``: no snapshots); :attr:`RebuildResult.metrics`
        describe it.
    intervals
        The intervals of the sweep frame (default: 1, 2, 5 … 10 000 up to the longest
        stream, the best one, and no snapshots).
    live_rate
        Events per second appended while the projection rebuilds (``λ``).
    loads_per_event
        Aggregate loads per appended event in normal running (a command loads once and
        appends about one event: 1).
    keep
        Snapshots kept per aggregate by the snapshot store.
    apply_cost, rebuild_overhead, load_event_cost, load_overhead, snapshot_read_cost, snapshot_write_cost, snapshot_bytes, event_bytes
        Costs in seconds (per event, per rebuild, per event replayed in a load, per load,
        per snapshot read, per snapshot written) and sizes in bytes; each overrides the
        calibration's. ``load_event_cost`` defaults to ``apply_cost``, the others to 0.
    seed
        Not used: the model has no randomness. Accepted so that
        :func:`~esnotebook.sim.run_sweep`, which passes a seed to every run, can sweep it.

    Returns
    -------
    RebuildResult

    Examples
    --------
    >>> r = rebuild_cost(1_000_000, streams=10_000, apply_cost=2e-6, snapshot_write_cost=1e-4,
    ...                  interval=20, live_rate=100_000)
    >>> round(r["rebuild_time_s"], 2), r["replayed_tail"]
    (2.5, 9.5)
    >>> r.best_interval, r["optimal_interval"]  # k*: the square-root rule for endless streams
    (11, 10.0)
    """
    costs = events if isinstance(events, RebuildCosts) else None
    if costs is not None:
        n_events = costs.events
    else:
        n_events = _count("events", events, 1)
    lam = _number("live_rate", live_rate)
    loads = _number("loads_per_event", loads_per_event)
    keep = _count("keep", keep, 1)
    plan = _interval("interval", interval)
    c = _costs(
        costs,
        {
            "apply_cost": apply_cost,
            "rebuild_overhead": rebuild_overhead,
            "load_event_cost": load_event_cost,
            "load_overhead": load_overhead,
            "snapshot_read_cost": snapshot_read_cost,
            "snapshot_write_cost": snapshot_write_cost,
            "snapshot_bytes": snapshot_bytes,
            "event_bytes": event_bytes,
        },
    )
    lengths = _lengths(stream_lengths, streams, events_per_stream, n_events, costs)

    def table(ks: Sequence[int | None]) -> pl.DataFrame:
        k = np.array([x if x is not None else 0 for x in ks], dtype=np.int64)
        snap = k > 0
        kk = np.where(snap, k, 1)
        tail = np.where(snap, lengths.tail(kk), lengths.mean)
        share = np.where(snap, lengths.share(kk), 0.0)
        load = c["load_overhead"] + share * c["snapshot_read_cost"] + c["load_event_cost"] * tail
        steady_tail, steady_share = lengths.steady(k)
        steady = (
            c["load_overhead"]
            + steady_share * c["snapshot_read_cost"]
            + c["load_event_cost"] * steady_tail
        )
        per_event = np.where(snap, 1 / kk, 0.0)
        written = np.where(snap, lengths.written(kk), 0.0)
        kept = np.where(snap, lengths.kept(kk, keep), 0.0)
        amp = (
            written * c["snapshot_bytes"] / (lengths.events * c["event_bytes"])
            if c["event_bytes"] > 0
            else np.full(len(k), math.nan)
        )
        return pl.DataFrame(
            {
                "interval": [x for x in ks],
                "replayed_tail": tail,
                "snapshot_share": share,
                "load_time_s": load,
                "all_loads_s": load * lengths.streams,
                "snapshot_writes_per_event": per_event,
                "snapshots_written": written.astype(float),
                "snapshots_kept": kept.astype(float),
                "snapshot_storage_bytes": kept * c["snapshot_bytes"],
                "write_amplification": np.where(snap, amp, 0.0),
                "steady_replayed_tail": steady_tail,
                "steady_load_time_s": steady,
                "cost_per_event_s": loads * steady + per_event * c["snapshot_write_cost"],
            },
            schema=_INTERVAL_SCHEMA,
        )

    if c["load_event_cost"] > 0 and loads > 0:
        optimal = math.sqrt(2 * c["snapshot_write_cost"] / (loads * c["load_event_cost"]))
    else:
        optimal = math.inf
    # The cheapest interval up to the longest stream (beyond it no stream reaches a snapshot):
    # every k while the exact tails, an (intervals × distinct lengths) matrix, stay cheap;
    # past that a log-spaced grid and the neighbourhood of the square-root rule's k*.
    longest = int(lengths.values.max()) if lengths.exact else max(1, math.ceil(lengths.mean))
    dense = min(_DENSE, max(100, _BUDGET // len(lengths.values)))
    search = set(range(1, min(longest, dense) + 1))
    if longest > dense:
        search.update(np.unique(np.geomspace(dense, longest, 200).astype(np.int64)).tolist())
        if math.isfinite(optimal):
            search.update(
                k for k in range(int(optimal * 0.9), int(optimal * 1.1) + 2) if 1 <= k <= longest
            )
    ks: list[int | None] = [None, *sorted(search)]
    costs_k = table(ks)["cost_per_event_s"].to_numpy()
    pick = int(np.argmin(costs_k))  # ties: the first, i.e. no snapshots or the smaller k
    best = ks[pick]

    if intervals is None:
        grid: list[int | None] = [None, *(k for k in _GRID if k <= longest)]
        for extra in (best, plan):
            if extra is not None and extra not in grid:
                grid.append(extra)
        grid = [None, *sorted(k for k in grid if k is not None)]
    else:
        if (
            isinstance(intervals, (str, bytes))
            or not isinstance(intervals, Sequence)
            or not intervals
        ):
            raise ValueError(
                f"'intervals' must be a non-empty list of ints >= 1 or None (got {intervals!r})"
            )
        grid = [_interval(f"intervals[{i}]", k) for i, k in enumerate(intervals)]
    frame = table(grid)
    at = table([plan]).row(0, named=True)

    ca = c["apply_cost"]
    rate = 1 / ca
    catches_up = lam * ca < 1
    if c["rebuild_overhead"] == 0:
        rebuild = theory.rebuild_time(n_events, rebuild_rate=rate, live_rate=lam)
    else:
        # The fluid model with a fixed start-up cost o: T = (N + λT) c + o.
        rebuild = (
            (n_events * ca + c["rebuild_overhead"]) / (1 - lam * ca) if catches_up else math.inf
        )
    full = lengths.mean * c["load_event_cost"] + c["load_overhead"]
    metrics: dict[str, Any] = {
        "events": n_events,
        "streams": lengths.streams,
        "interval": plan,
        "rebuild_rate": rate,
        "rebuild_time_s": rebuild,
        "catches_up": catches_up,
        "events_replayed_in_rebuild": n_events + lam * rebuild if catches_up else math.inf,
        **{k: at[k] for k in _INTERVAL_SCHEMA if k != "interval"},
        "snapshot_rebuild_s": lengths.streams * (full + c["snapshot_write_cost"]),
        "best_interval": best,
        "best_cost_per_event_s": float(costs_k[pick]),
        "optimal_interval": optimal,
    }
    settings = {
        "events": n_events,
        "streams": lengths.streams,
        "events_per_stream": lengths.mean,
        "exact_lengths": lengths.exact,
        "interval": plan,
        "live_rate": lam,
        "loads_per_event": loads,
        "keep": keep,
        **c,
    }
    return RebuildResult(frame, metrics, settings)
