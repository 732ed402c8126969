"""Plots of esnotebook results: plain functions taking a result or frame and an optional
``ax``; axes labelled with units; no global style changes. matplotlib is imported inside.
"""

from __future__ import annotations

from typing import Any

__all__ = ["plot_lag", "trace_swimlane"]


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
