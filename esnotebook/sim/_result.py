"""Result objects of the simulations: frames out, compact HTML in Jupyter."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LagResult", "confidence_interval", "summarise_runs"]

LagView = Literal["timeseries", "summary", "runs", "events"]


def confidence_interval(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval of independent replications' values."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan, math.nan
    from scipy.stats import t

    half = float(
        t.ppf((1 + confidence) / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    )
    return mean, mean - half, mean + half


def summarise_runs(
    runs: pl.DataFrame, confidence: float, *, skip: tuple[str, ...] = ("replication",)
) -> pl.DataFrame:
    """One row per metric: mean across replications and its confidence interval."""
    rows = []
    for name in runs.columns:
        if name in skip:
            continue
        mean, low, high = confidence_interval(runs[name].cast(pl.Float64).to_numpy(), confidence)
        rows.append({"metric": name, "mean": mean, "ci_low": low, "ci_high": high})
    return pl.DataFrame(
        rows,
        schema={
            "metric": pl.String,
            "mean": pl.Float64,
            "ci_low": pl.Float64,
            "ci_high": pl.Float64,
        },
    )


def _dict_table(title: str, items: dict[str, Any], *, note: str = "") -> str:
    """A result's ``_repr_html_``: a bold title (and a plain ``note``) over a two-column
    table of ``items``."""
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(_fmt(v))}</td></tr>" for k, v in items.items()
    )
    return f"<div><b>{html.escape(title)}</b>{html.escape(note)}<table>{rows}</table></div>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4g}"
    return str(value)


@dataclass(frozen=True, slots=True, eq=False)
class LagResult:
    """What :func:`~esnotebook.sim.simulate_lag` measured.

    Attributes
    ----------
    runs
        One row per replication: every summary metric.
    timeseries
        ``replication, time, produced, processed, offset_lag, time_lag`` sampled on a grid.
    settings
        The configuration that was run (rates, consumers, capacity, ...).
    confidence
        Level of the intervals in :meth:`summary`.

    Metric names: ``mean/p50/p95/p99/max`` of ``offset_lag`` (events), ``time_lag`` and
    ``latency`` (seconds); ``utilisation`` (busy share of the working consumers; a batch
    suspended by a pause counts as busy), ``throughput`` (events done per second),
    ``offered_load`` (long-run arrival rate over group capacity), ``grows_without_bound``
    (1.0 when offered load >= 1), ``lag_trend`` (offset lag slope over the second half,
    events/s), ``drain_time`` (seconds until a consumer starting with ``backlog`` first
    catches up, i.e. every event produced so far is processed; ``inf`` if not within the
    run), ``recovery_time`` (the same from the end of each pause, the longest; 0 when
    nothing is waiting when the pause ends), ``events`` (events measured after the warm-up).
    Time-lag percentiles are over time (the sampled series); latency percentiles over
    events; the mean offset lag is the exact time average.
    ``result["p99_time_lag"]`` is the mean over replications.
    """

    runs: pl.DataFrame
    timeseries: pl.DataFrame
    settings: dict[str, Any]
    confidence: float = 0.95
    events: tuple[tuple[np.ndarray, np.ndarray], ...] = field(default=(), repr=False)

    def summary(self) -> pl.DataFrame:
        """``metric, mean, ci_low, ci_high`` across replications (no interval for one run)."""
        return summarise_runs(self.runs, self.confidence)

    def __getitem__(self, metric: str) -> float:
        if metric not in self.runs.columns or metric == "replication":
            names = ", ".join(c for c in self.runs.columns if c != "replication")
            raise KeyError(f"no metric {metric!r}; metrics: {names}")
        return float(self.runs[metric].cast(pl.Float64).mean())

    def to_dict(self) -> dict[str, float]:
        """Every metric's mean across replications, flat (one row of a sweep)."""
        return {c: self[c] for c in self.runs.columns if c != "replication"}

    @property
    def grows_without_bound(self) -> bool:
        """Whether the long-run arrival rate reaches the group's capacity."""
        return self["grows_without_bound"] >= 0.5

    def to_polars(self, view: LagView = "timeseries") -> pl.DataFrame:
        """The ``"timeseries"`` (default), ``"summary"``, ``"runs"`` or per-event ``"events"``."""
        if view == "timeseries":
            return self.timeseries
        if view == "summary":
            return self.summary()
        if view == "runs":
            return self.runs
        if view == "events":
            if not self.events:
                raise ValueError("per-event times were not kept; run with keep_events=True")
            return pl.concat(
                pl.DataFrame(
                    {
                        "replication": np.full(len(a), rep, dtype=np.int32),
                        "arrival": a,
                        "done": d,
                        "latency": d - a,
                    }
                )
                for rep, (a, d) in enumerate(self.events)
            )
        raise ValueError(f"'view' must be one of timeseries, summary, runs, events (got {view!r})")

    def to_pandas(self, view: LagView = "timeseries") -> pd.DataFrame:
        """:meth:`to_polars` as a pandas DataFrame."""
        return self.to_polars(view).to_pandas()

    def plot(self, *, ax: Any = None, replication: int = 0) -> Any:
        """Offset lag and time lag over time (matplotlib); returns the axes."""
        from ..plot import plot_lag

        return plot_lag(self, ax=ax, replication=replication)

    def _repr_html_(self) -> str:
        s = self.settings
        head = (
            f"λ≈{_fmt(s['arrival_rate'])}/s ({s['arrivals']}), μ={_fmt(s['service_rate'])}/s "
            f"× {s['consumers']} consumer(s)"
            + (f", {s['partitions']} partitions" if s["partitions"] else "")
            + f", {s['replications']} replication(s)"
        )
        summary = self.summary()
        keep = (
            "offered_load",
            "utilisation",
            "mean_offset_lag",
            "p99_offset_lag",
            "max_offset_lag",
            "mean_time_lag",
            "p99_time_lag",
            "max_time_lag",
            "mean_latency",
            "p99_latency",
            "drain_time",
            "recovery_time",
        )
        rows = []
        for metric, mean, low, high in summary.iter_rows():
            if metric not in keep or (isinstance(mean, float) and math.isnan(mean)):
                continue
            ci = "" if math.isnan(low) else f"[{_fmt(low)}, {_fmt(high)}]"
            rows.append(
                f"<tr><td>{html.escape(metric)}</td><td>{html.escape(_fmt(mean))}</td>"
                f"<td>{html.escape(ci)}</td></tr>"
            )
        verdict = "grows without bound" if self.grows_without_bound else "keeps up"
        return (
            f"<div><b>LagResult</b>: {html.escape(head)} — <b>{verdict}</b>"
            f"<table><tr><th>metric</th><th>mean</th><th>{int(self.confidence * 100)}% CI</th></tr>"
            + "".join(rows)
            + "</table></div>"
        )
