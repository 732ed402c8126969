"""The result of :func:`~esnotebook.sim.simulate_sagas`: per-instance outcomes, a summary
with confidence intervals, and the closed forms beside the estimates."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from ._result import _fmt, confidence_interval

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SagaResult"]

SagaView = Literal["instances", "summary", "duplicates"]
_QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


def _rate_interval(hits: int, n: int, confidence: float) -> tuple[float, float, float]:
    """Wilson score interval of a proportion: sound near 0 and 1, where the t interval is not."""
    from scipy.stats import norm

    z = float(norm.ppf((1 + confidence) / 2))
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True, eq=False)
class SagaResult:
    """What :func:`~esnotebook.sim.simulate_sagas` observed.

    Attributes
    ----------
    instances
        One row per saga instance: ``instance_id, status`` (completed, compensated,
        dead-lettered), ``failed_step`` (null when completed), ``steps_done``, ``attempts``
        (step command attempts), ``compensations`` (compensating commands carried out),
        ``duplicates`` (side effects repeated by a redelivery), ``latency_s`` (simulated
        seconds from start to end).
    settings
        The configuration that was run.
    expected
        The closed forms for this configuration (see :mod:`esnotebook.sim.theory`);
        ``None`` where none applies (duplicates of a saga whose domain refuses some repeats).
    confidence
        Level of the intervals in :meth:`summary`.
    duplicates
        The repeated side effects found in the store: ``idempotency_key, command_type,
        appends, events, duplicates`` (see :func:`~esnotebook.idempotency.duplicate_side_effects`).
    """

    instances: pl.DataFrame
    settings: dict[str, Any] = field(repr=False)
    expected: dict[str, float | None] = field(repr=False)
    confidence: float = 0.95
    duplicates: pl.DataFrame | None = field(default=None, repr=False)

    def _metrics(self) -> list[tuple[str, float, float, float]]:
        f = self.instances
        n = f.height
        rows = []
        for name, status in (("success_rate", "completed"), ("compensated_rate", "compensated"),
                             ("dead_letter_rate", "dead-lettered")):  # fmt: skip
            rows.append(
                (name, *_rate_interval(int((f["status"] == status).sum()), n, self.confidence))
            )
        for name, column in (("compensations_per_saga", "compensations"), ("duplicates_per_saga", "duplicates"),
                             ("attempts_per_saga", "attempts"), ("mean_latency_s", "latency_s")):  # fmt: skip
            rows.append(
                (name, *confidence_interval(f[column].cast(pl.Float64).to_numpy(), self.confidence))
            )
        latency = f["latency_s"].drop_nulls().to_numpy()
        for name, q in _QUANTILES:
            value = float(np.quantile(latency, q)) if latency.size else math.nan
            rows.append((f"{name}_latency_s", value, math.nan, math.nan))
        rows.append(
            (
                "max_latency_s",
                float(latency.max()) if latency.size else math.nan,
                math.nan,
                math.nan,
            )
        )
        return rows

    def summary(self) -> pl.DataFrame:
        """``metric, mean, ci_low, ci_high, theory``: estimates, their intervals (Wilson
        for rates, Student t for means) and the closed form where there is one."""
        rows = [(m, v, lo, hi, self.expected.get(m)) for m, v, lo, hi in self._metrics()]
        return pl.DataFrame(
            rows,
            schema={"metric": pl.String, "mean": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
                    "theory": pl.Float64},
            orient="row",
        )  # fmt: skip

    def __getitem__(self, metric: str) -> float:
        if metric == "instances":
            return self.instances.height
        values = {m: v for m, v, *_ in self._metrics()}
        if metric not in values:
            raise KeyError(f"no metric {metric!r}; metrics: instances, {', '.join(values)}")
        return values[metric]

    def to_dict(self) -> dict[str, float | None]:
        """Every estimate and, as ``theory_<metric>``, its closed form (one row of a sweep)."""
        out: dict[str, float | None] = {"instances": float(self.instances.height)}
        out.update({m: v for m, v, *_ in self._metrics()})
        out.update({f"theory_{k}": v for k, v in self.expected.items()})
        return out

    def outcomes(self) -> pl.DataFrame:
        """Instances per ``status`` and ``failed_step``, with their share."""
        return (
            self.instances.group_by("status", "failed_step")
            .len("instances")
            .with_columns((pl.col("instances") / self.instances.height).alias("share"))
            .sort("status", "failed_step", nulls_last=False)
        )

    def to_polars(self, view: SagaView = "instances") -> pl.DataFrame:
        """The per-``"instances"`` frame (default), the ``"summary"``, or the repeated side
        effects (``"duplicates"``, one row per idempotency key carried out more than once)."""
        if view == "instances":
            return self.instances
        if view == "summary":
            return self.summary()
        if view == "duplicates":
            if self.duplicates is None:
                raise ValueError("this result kept no duplicate side effects")
            return self.duplicates
        raise ValueError(f"'view' must be 'instances', 'summary' or 'duplicates' (got {view!r})")

    def to_pandas(self, view: SagaView = "instances") -> pd.DataFrame:
        """:meth:`to_polars` as a pandas DataFrame."""
        return self.to_polars(view).to_pandas()

    def plot(self, kind: Literal["outcomes", "latency"] = "outcomes", *, ax: Any = None) -> Any:
        """The share of instances per outcome (``"outcomes"``) or the latency CDF
        (``"latency"``), with matplotlib; returns the axes."""
        from ..plot import plot_saga_latency, plot_saga_outcomes

        if kind == "outcomes":
            return plot_saga_outcomes(self, ax=ax)
        if kind == "latency":
            return plot_saga_latency(self, ax=ax)
        raise ValueError(f"'kind' must be 'outcomes' or 'latency' (got {kind!r})")

    def _repr_html_(self) -> str:
        s = self.settings
        head = (
            f"{s['saga']} ({' → '.join(s['steps'])}), {self.instances.height} instances, "
            f"{s['fault']} failure {list(s['failure'])}, {s['retries']} retries, "
            f"duplicate {s['duplicate']:g}, keys {s['idempotency']}"
        )
        rows = []
        for metric, mean, low, high, expected in self.summary().iter_rows():
            if isinstance(mean, float) and math.isnan(mean):
                continue
            ci = "" if low is None or math.isnan(low) else f"[{_fmt(low)}, {_fmt(high)}]"
            th = "" if expected is None else _fmt(expected)
            rows.append(
                f"<tr><td>{html.escape(metric)}</td><td>{html.escape(_fmt(mean))}</td>"
                f"<td>{html.escape(ci)}</td><td>{html.escape(th)}</td></tr>"
            )
        return (
            f"<div><b>SagaResult</b>: {html.escape(head)}"
            f"<table><tr><th>metric</th><th>estimate</th><th>{int(self.confidence * 100)}% CI</th>"
            f"<th>theory</th></tr>" + "".join(rows) + "</table></div>"
        )
