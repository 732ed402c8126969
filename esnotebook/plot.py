"""Plots of esnotebook results: plain functions taking a result or frame and an optional
``ax``; axes labelled with units; no global style changes. matplotlib is imported inside.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "fluid_lag_path",
    "plot_event_rate",
    "plot_forecast_vs_measured",
    "plot_lag",
    "plot_lag_theory",
    "plot_rebuild_cost",
    "plot_runner_metrics",
    "plot_saga_latency",
    "plot_saga_outcomes",
    "trace_swimlane",
]


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a core dependency
        raise ImportError("plotting needs matplotlib: pip install matplotlib") from None
    _, ax = plt.subplots(figsize=(8, 3.5))
    return ax


def plot_lag(result: Any, *, ax: Any = None, replication: int = 0) -> Any:
    """Offset lag (events, left axis) and time lag (seconds, right axis) over time.

    Parameters
    ----------
    result
        A :class:`~esnotebook.sim.LagResult`, or its ``to_polars("timeseries")`` frame.
    ax
        Axes to draw on; a new figure when omitted.
    replication
        Which replication's series to draw.

    Returns
    -------
    matplotlib.axes.Axes
        The offset-lag axes; the time-lag axes is its twin (``ax.right_ax``).

    Examples
    --------
    >>> from esnotebook.sim import simulate_lag
    >>> ax = plot_lag(simulate_lag(90, service_rate=100, duration=60, seed=1))
    """
    import polars as pl

    frame = result if isinstance(result, pl.DataFrame) else result.to_polars("timeseries")
    missing = {"time", "offset_lag", "time_lag"} - set(frame.columns)
    if missing:
        raise ValueError(f"plot_lag needs a lag time series; missing columns {sorted(missing)}")
    if "replication" in frame.columns:
        available = frame["replication"].unique().sort().to_list()
        if replication not in available:
            raise ValueError(f"'replication' must be one of {available} (got {replication!r})")
        frame = frame.filter(pl.col("replication") == replication)
    ax = _axes(ax)
    t = frame["time"].to_numpy()
    ax.step(t, frame["offset_lag"].to_numpy(), where="post", color="tab:blue", label="offset lag")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("offset lag (events)", color="tab:blue")
    right = ax.twinx()
    right.plot(t, frame["time_lag"].to_numpy(), color="tab:orange", label="time lag")
    right.set_ylabel("time lag (s)", color="tab:orange")
    ax.set_title("consumer lag")
    ax.right_ax = right
    return ax


def trace_swimlane(trace: Any, *, ax: Any = None, label: bool = True) -> Any:
    """A causal trace as a swimlane timeline: one lane per stream (aggregate), events by
    position, an arrow from each cause to its effect; broken links drawn in red.

    Parameters
    ----------
    trace
        A :class:`~esnotebook.tracing.Trace`, or its ``to_polars()`` frame.
    ax
        Axes to draw on; a new figure when omitted.
    label
        Write each event's type beside its marker.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import esnotebook as es
    >>> from esnotebook.tracing import trace
    >>> store = es.InMemoryEventStore()
    >>> e = store.append("order-1", [es.NewEvent("OrderPlaced", {"order_id": "o-1"})])[0]
    >>> ax = trace_swimlane(trace(store, e))
    """
    import polars as pl

    frame = trace if isinstance(trace, pl.DataFrame) else trace.to_polars()
    missing = {"position", "stream_id", "event_type", "caused_by_position", "problem"} - set(
        frame.columns
    )
    if missing:
        raise ValueError(f"trace_swimlane needs a trace frame; missing columns {sorted(missing)}")
    ax = _axes(ax)
    lanes = list(dict.fromkeys(frame["stream_id"].to_list()))
    lane = {s: i for i, s in enumerate(lanes)}
    where = {p: lane[s] for p, s in zip(frame["position"].to_list(), frame["stream_id"].to_list())}
    placed: dict[int, int] = {}  # events labelled so far per lane: alternate above/below
    for r in frame.iter_rows(named=True):
        y, x = lane[r["stream_id"]], r["position"]
        bad = r["problem"] is not None
        ax.plot(
            [x], [y], marker="X" if bad else "o", color="tab:red" if bad else "tab:blue", zorder=3
        )
        if label:
            nth = placed[y] = placed.get(y, -1) + 1
            ax.annotate(
                r["event_type"], (x, y), textcoords="offset points",
                xytext=(4, 6 if nth % 2 == 0 else -13), fontsize=8,
            )  # fmt: skip
        cause = r["caused_by_position"]
        if cause is not None and cause in where:
            ax.annotate(
                "", xy=(x, y), xytext=(cause, where[cause]),
                arrowprops={"arrowstyle": "->", "color": "tab:red" if bad else "0.4", "lw": 1},
            )  # fmt: skip
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels(lanes)
    ax.set_ylim(-0.5, len(lanes) - 0.5)
    ax.invert_yaxis()
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("position (global event order)")
    ax.set_ylabel("stream")
    title = getattr(trace, "correlation_id", None)
    ax.set_title(f"causal trace {title}" if title else "causal trace")
    return ax


# ---------------------------------------------------------------------- lag with its theory line
def fluid_lag_path(schedule: Any, *, capacity: float, times: Any) -> Any:
    """The fluid model's offset lag at ``times`` for a piecewise-constant producer.

    The backlog grows at ``λ(t) - c`` while the producer outruns the group's capacity ``c``
    and drains at the same slope down to 0 afterwards: the deterministic skeleton of a
    burst, which a simulation scatters around (the random part is the queueing on top).

    Parameters
    ----------
    schedule
        Events/s: a number, or ``(start_time, rate)`` pairs from 0.
    capacity
        Events/s the consumer group can process (``LagResult.settings["capacity"]``).
    times
        Sorted times (seconds) to evaluate at.

    Returns
    -------
    numpy.ndarray
        Offset lag in events at each time.

    Examples
    --------
    >>> fluid_lag_path([(0, 10), (5, 30), (10, 10)], capacity=20, times=[0, 5, 10, 15, 20]).tolist()
    [0.0, 0.0, 50.0, 0.0, 0.0]
    """
    import numpy as np

    if isinstance(schedule, (int, float)) and not isinstance(schedule, bool):
        schedule = [(0.0, float(schedule))]
    pairs = sorted((float(t), float(r)) for t, r in schedule)
    if not pairs or pairs[0][0] != 0.0:
        raise ValueError(f"'schedule' must start at time 0 (got {schedule!r})")
    if isinstance(capacity, bool) or not isinstance(capacity, (int, float)) or not capacity > 0:
        raise ValueError(f"'capacity' must be a number > 0 (got {capacity!r})")
    t = np.asarray(times, dtype=float)
    if t.size and (np.any(np.diff(t) < 0) or t[0] < 0):
        raise ValueError("'times' must be sorted and >= 0")
    # Walk the schedule's breakpoints and the sample times together; the lag is piecewise
    # linear, clipped at 0, between any two of them.
    starts = np.array([p[0] for p in pairs])
    rates = np.array([p[1] for p in pairs])
    grid = np.union1d(starts, t)
    lag = np.zeros(grid.size)
    for i in range(1, grid.size):
        rate = rates[np.searchsorted(starts, grid[i - 1], side="right") - 1]
        lag[i] = max(0.0, lag[i - 1] + (rate - capacity) * (grid[i] - grid[i - 1]))
    return lag[np.searchsorted(grid, t)]


def plot_lag_theory(result: Any, *, schedule: Any, ax: Any = None, replication: int = 0) -> Any:
    """:func:`plot_lag` with the fluid model's offset lag drawn over it (dashed).

    Parameters
    ----------
    result
        A :class:`~esnotebook.sim.LagResult` (its ``settings["capacity"]`` is used).
    schedule
        The producer's rate as given to ``simulate_lag``: a number or ``(start, rate)`` pairs.
    ax, replication
        As for :func:`plot_lag`.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from esnotebook.sim import simulate_lag
    >>> burst = [(0, 80), (20, 200), (30, 80)]
    >>> ax = plot_lag_theory(simulate_lag(burst, service_rate=100, duration=60, seed=1),
    ...                      schedule=burst)
    """
    ax = plot_lag(result, ax=ax, replication=replication)
    frame = result.to_polars("timeseries")
    t = frame.filter(frame["replication"] == replication)["time"].to_numpy()
    s = result.settings
    fluid = fluid_lag_path(schedule, capacity=float(s["capacity"]), times=t)
    ax.plot(t, fluid, color="black", linestyle="--", linewidth=1, label="fluid model")
    steady = _steady_mean_lag(schedule, s)
    if steady is not None:
        ax.axhline(steady, color="tab:green", linestyle=":", linewidth=1.5, label="M/M/c mean")
    ax.legend(loc="upper right", fontsize=8)
    return ax


def _steady_mean_lag(schedule: Any, settings: dict[str, Any]) -> float | None:
    """The M/M/c mean offset lag when the run is one: a constant Poisson producer, one
    shared queue, exponential service one event at a time, and a load below 1."""
    if isinstance(schedule, (int, float)) and not isinstance(schedule, bool):
        rates = [float(schedule)]
    else:
        rates = [float(r) for _, r in schedule]
    simple = (
        len(set(rates)) == 1 and settings.get("arrivals") == "poisson"
        and settings.get("service") == "exponential" and settings.get("partitions") is None
        and settings.get("batch_size") == 1 and not settings.get("batch_overhead")
    )  # fmt: skip
    if not simple:
        return None
    from .sim.theory import mmc

    lam, mu, c = rates[0], float(settings["service_rate"]), int(settings["consumers"])
    if lam >= c * mu:
        return None
    return mmc(lam, service_rate=mu, servers=c).mean_in_system


# ---------------------------------------------------------------------- a runner's dashboard
def plot_runner_metrics(runner: Any, *, axes: Any = None) -> Any:
    """Throughput versus lag for a projection runner: events/s per step above, offset lag
    (events) and time lag (s) below, on one time axis (seconds since the first step).

    Parameters
    ----------
    runner
        A :class:`~esnotebook.runner.ProjectionRunner`, or its ``metrics`` frame.
    axes
        Two axes to draw on (top, bottom); a new figure when omitted.

    Returns
    -------
    numpy.ndarray
        The two axes; the time-lag axes is ``axes[1].right_ax``.

    Examples
    --------
    >>> import esnotebook as es
    >>> from esnotebook.readmodels import OrderSummaryFrame
    >>> from esnotebook.runner import ProjectionRunner
    >>> store = es.InMemoryEventStore()
    >>> _ = store.append("order-1", [es.NewEvent("OrderPlaced", {"order_id": "1", "customer": "a"})])
    >>> runner = ProjectionRunner(store, OrderSummaryFrame())
    >>> _ = runner.catch_up()
    >>> axes = plot_runner_metrics(runner)
    """
    import polars as pl

    frame = runner if isinstance(runner, pl.DataFrame) else runner.metrics
    missing = {"wall_time", "offset_lag", "time_lag_s", "events_per_s"} - set(frame.columns)
    if missing:
        raise ValueError(f"plot_runner_metrics needs runner metrics; missing columns {sorted(missing)}")
    if frame.height == 0:
        raise ValueError("the runner has no metrics yet: step or catch_up first")
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    top, bottom = axes[0], axes[1]
    t0 = frame["wall_time"].min()
    t = frame.select((pl.col("wall_time") - t0).dt.total_microseconds() / 1e6)["wall_time"].to_numpy()
    rate = frame["events_per_s"].fill_null(0.0).to_numpy()
    top.plot(t, rate, marker="o", markersize=3, color="tab:green")
    top.set_ylabel("throughput (events/s)")
    top.set_title(f"projection runner: {frame.height} steps")
    bottom.step(t, frame["offset_lag"].to_numpy(), where="post", color="tab:blue")
    bottom.set_ylabel("offset lag (events)", color="tab:blue")
    bottom.set_xlabel("time since the first step (s)")
    right = bottom.twinx()
    right.plot(t, frame["time_lag_s"].fill_null(0.0).to_numpy(), color="tab:orange")
    right.set_ylabel("time lag (s)", color="tab:orange")
    bottom.right_ax = right
    return axes


# ---------------------------------------------------------------------- a store's event rate
def plot_event_rate(
    store: Any, *, every: str = "1h", by_type: bool = False, ax: Any = None
) -> Any:
    """A histogram of a store's event rate: events recorded per ``every`` interval.

    Parameters
    ----------
    store
        An event store (anything with ``scan()``), or an event frame with ``recorded_at``.
    every
        Bin width as a polars duration string (``"1m"``, ``"15m"``, ``"1h"``, ``"1d"``).
    by_type
        Stack the bars by event type.
    ax
        Axes to draw on; a new figure when omitted.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from esnotebook.datasets import generate_orders
    >>> ax = plot_event_rate(generate_orders(200, seed=1), every="1d")
    """
    import polars as pl

    if isinstance(store, pl.DataFrame):
        lf = store.lazy()
    elif isinstance(store, pl.LazyFrame):
        lf = store
    elif callable(getattr(store, "scan", None)):
        lf = store.scan()
    else:
        raise TypeError(
            f"plot_event_rate needs an event store or an event frame (got {type(store).__name__})"
        )
    try:
        width = pl.duration(**_duration_parts(every))
    except ValueError:
        raise ValueError(f"'every' must be a duration like '15m', '1h' or '1d' (got {every!r})") from None
    counts = (
        lf.select("recorded_at", "event_type")
        .with_columns(pl.col("recorded_at").dt.truncate(every).alias("bin"))
        .group_by("bin", "event_type")
        .len()
        .sort("bin")
        .collect()
    )
    ax = _axes(ax)
    seconds = pl.select(width.dt.total_seconds()).item()
    if counts.height == 0:
        ax.set_title("event rate (empty store)")
    elif by_type:
        wide = counts.pivot("event_type", index="bin", values="len").fill_null(0).sort("bin")
        bottom = None
        for name in wide.columns[1:]:
            values = wide[name].to_numpy()
            ax.bar(wide["bin"].to_list(), values, width=seconds / 86400, align="edge",
                   bottom=bottom, label=name)  # fmt: skip
            bottom = values if bottom is None else bottom + values
        ax.legend(fontsize=7, ncols=2)
        ax.set_title(f"event rate per {every}, by event type")
    else:
        total = counts.group_by("bin").agg(pl.col("len").sum()).sort("bin")
        ax.bar(total["bin"].to_list(), total["len"].to_numpy(), width=seconds / 86400,
               align="edge", color="tab:blue")  # fmt: skip
        peak = total["len"].max() / seconds
        ax.set_title(f"event rate per {every} (peak {peak:,.2f} events/s)")
    ax.set_xlabel("recorded at (UTC)")
    ax.set_ylabel(f"events per {every}")
    ax.figure.autofmt_xdate()
    return ax


def _duration_parts(every: str) -> dict[str, int]:
    """``"15m"`` -> ``{"minutes": 15}``: the bin widths :func:`plot_event_rate` accepts."""
    import re

    match = re.fullmatch(r"(\d+)(s|m|h|d)", every) if isinstance(every, str) else None
    if match is None or int(match.group(1)) < 1:
        raise ValueError(every)
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return {unit: int(match.group(1))}


def plot_rebuild_cost(result: Any, *, ax: Any = None) -> Any:
    """Aggregate load time against the snapshot interval, with snapshots (line) and without
    (dashed); the steady-state cost per appended event on the right axis; the cheapest
    interval marked.

    Parameters
    ----------
    result
        A :class:`~esnotebook.sim.RebuildResult`, or its ``to_polars("intervals")`` frame.
    ax
        Axes to draw on; a new figure when omitted.

    Returns
    -------
    matplotlib.axes.Axes
        The load-time axes; the cost axes is its twin (``ax.right_ax``).

    Examples
    --------
    >>> from esnotebook.sim import rebuild_cost
    >>> ax = plot_rebuild_cost(rebuild_cost(10**6, streams=10**4, apply_cost=2e-6,
    ...                                     snapshot_write_cost=1e-4))
    """
    import polars as pl

    frame = result if isinstance(result, pl.DataFrame) else result.to_polars("intervals")
    missing = {"interval", "load_time_s", "cost_per_event_s"} - set(frame.columns)
    if missing:
        raise ValueError(f"plot_rebuild_cost needs a rebuild interval frame; missing columns {sorted(missing)}")
    snap = frame.filter(pl.col("interval").is_not_null()).sort("interval")
    none = frame.filter(pl.col("interval").is_null())
    ax = _axes(ax)
    k = snap["interval"].to_numpy()
    ax.plot(k, snap["load_time_s"].to_numpy() * 1e3, marker="o", color="tab:blue", label="load, with snapshots")
    if none.height:
        ax.axhline(none["load_time_s"][0] * 1e3, color="tab:blue", linestyle="--", label="load, no snapshots")
    ax.set_xscale("log")
    ax.set_xlabel("snapshot interval (events)")
    ax.set_ylabel("aggregate load time (ms)", color="tab:blue")
    right = ax.twinx()
    right.plot(k, snap["cost_per_event_s"].to_numpy() * 1e6, color="tab:orange", marker=".", label="cost per event")
    if none.height:
        right.axhline(none["cost_per_event_s"][0] * 1e6, color="tab:orange", linestyle=":")
    right.set_ylabel("cost per appended event (µs)", color="tab:orange")
    best = getattr(result, "best_interval", None)
    if best is not None:
        ax.axvline(best, color="0.5", linewidth=1)
        ax.annotate(f"cheapest k={best}", (best, ax.get_ylim()[1]), textcoords="offset points",
                    xytext=(3, -12), fontsize=8)  # fmt: skip
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("rebuild cost and snapshot interval")
    ax.right_ax = right
    return ax


def _saga_frame(result: Any, needed: set[str], what: str) -> Any:
    import polars as pl

    frame = result if isinstance(result, pl.DataFrame) else result.to_polars("instances")
    missing = needed - set(frame.columns)
    if missing:
        raise ValueError(f"{what} needs a saga instances frame; missing columns {sorted(missing)}")
    if frame.height == 0:
        raise ValueError(f"{what} needs at least one saga instance (got none)")
    return frame


def plot_saga_outcomes(result: Any, *, ax: Any = None) -> Any:
    """Share of saga instances per outcome: completed, or compensated after step X failed
    (and dead-lettered), as bars; the closed-form success rate as a line when known.

    Parameters
    ----------
    result
        A :class:`~esnotebook.sim.SagaResult`, or its ``to_polars("instances")`` frame.
    ax
        Axes to draw on; a new figure when omitted.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from esnotebook.sim import simulate_sagas
    >>> ax = plot_saga_outcomes(simulate_sagas(40, failure=0.2, seed=1, progress=False))
    """
    import polars as pl

    frame = _saga_frame(result, {"status", "failed_step"}, "plot_saga_outcomes")
    labels = frame.select(
        pl.when(pl.col("failed_step").is_null())
        .then(pl.col("status"))
        .otherwise(pl.col("status") + " at " + pl.col("failed_step"))
        .alias("outcome")
    )["outcome"]
    counts = dict(labels.value_counts().iter_rows())
    # Completed first, then the failures in step order (the order a saga meets them).
    steps = list(getattr(result, "settings", {}).get("steps", ()))

    def rank(name: str) -> tuple[int, int, str]:
        step = name.split(" at ", 1)[1] if " at " in name else ""
        kind = 0 if name == "completed" else 1 if name.startswith("compensated") else 2
        return kind, steps.index(step) if step in steps else len(steps), name

    names = sorted(counts, key=rank)
    ax = _axes(ax)
    share = [counts[n] / frame.height for n in names]
    colours = ["tab:green" if n == "completed" else "tab:red" if n.startswith("dead") else "tab:orange"
               for n in names]  # fmt: skip
    ax.bar(range(len(names)), share, color=colours)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right")
    expected = getattr(result, "expected", None)
    if expected and "success_rate" in expected:
        ax.axhline(expected["success_rate"], color="tab:green", linestyle="--", label="theory: success")
        ax.legend(fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of instances")
    ax.set_xlabel("outcome")
    ax.set_title(f"saga outcomes ({frame.height} instances)")
    return ax


def plot_saga_latency(result: Any, *, ax: Any = None) -> Any:
    """End-to-end saga latency (simulated seconds) as an empirical CDF, completed and
    compensated instances separately.

    Parameters
    ----------
    result
        A :class:`~esnotebook.sim.SagaResult`, or its ``to_polars("instances")`` frame.
    ax
        Axes to draw on; a new figure when omitted.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from esnotebook.sim import simulate_sagas
    >>> ax = plot_saga_latency(simulate_sagas(40, failure=0.2, command_time=0.1, seed=1,
    ...                                       progress=False))
    """
    import numpy as np
    import polars as pl

    frame = _saga_frame(result, {"status", "latency_s"}, "plot_saga_latency")
    ax = _axes(ax)
    for status, colour in (("completed", "tab:green"), ("compensated", "tab:orange"), ("dead-lettered", "tab:red")):
        x = np.sort(frame.filter(pl.col("status") == status)["latency_s"].drop_nulls().to_numpy())
        if x.size:
            ax.step(x, np.arange(1, x.size + 1) / x.size, where="post", color=colour, label=f"{status} ({x.size})")
    ax.set_xlabel("end-to-end latency (s, simulated)")
    ax.set_ylabel("share of instances ≤ latency")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.set_title("saga latency")
    return ax


def plot_forecast_vs_measured(live: Any, *, ax: Any = None, seed: int | None = 0) -> Any:
    """A live run's measured offset lag beside the forecast for the same arrivals.

    ``live`` is an :class:`esnotebook.live.LiveResult`; the forecast is its
    :meth:`~esnotebook.live.LiveResult.forecast` (the mean lag over its replications, and
    the band between their 5th and 95th percentiles). Returns the axes.
    """
    import polars as pl

    ax = _axes(ax)
    forecast = live.forecast(seed=seed).timeseries
    band = (
        forecast.group_by("time")
        .agg(
            pl.col("offset_lag").mean().alias("mean"),
            pl.col("offset_lag").quantile(0.05).alias("low"),
            pl.col("offset_lag").quantile(0.95).alias("high"),
        )
        .sort("time")
    )
    t = band["time"].to_numpy()
    ax.fill_between(t, band["low"].to_numpy(), band["high"].to_numpy(), alpha=0.25,
                    color="tab:orange", label="forecast 5–95%")  # fmt: skip
    ax.plot(t, band["mean"].to_numpy(), color="tab:orange", label="forecast (mean)")
    measured = live.timeseries
    ax.step(measured["time"].to_numpy(), measured["offset_lag"].to_numpy(), where="post",
            color="tab:blue", label="measured")  # fmt: skip
    ax.set_xlabel("time (s)")
    ax.set_ylabel("offset lag (events)")
    ax.set_title(f"forecast vs measured: {live.settings['projection']}, "
                 f"batch_size={live.settings['batch_size']}")  # fmt: skip
    ax.legend(loc="upper left")
    return ax
