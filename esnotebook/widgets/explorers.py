"""The four explorers: ipywidgets boxes wired to the pure functions of ``_compute``.

Every explorer is a ``VBox`` returned without being displayed; it carries

``controls``  name -> control widget (sliders use ``continuous_update=False``)
``result``    what the last refresh computed
``figure``    an ``Image`` widget holding the plot as PNG (absent in the browser)
``summary``   an ``HTML`` widget with the numbers
``refresh()`` recompute from the controls (called on every change)

and stable CSS classes (``esn-<name>-explorer``, ``esn-<name>-plot``, ``esn-<name>-summary``,
``esn-control-<control>``) for browser tests to find them.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from ._compute import (
    browse,
    lag_explorer_result,
    lag_summary_html,
    rebuild_explorer_result,
    saga_explorer_result,
)

__all__ = ["lag_explorer", "rebuild_explorer", "saga_explorer", "store_browser"]


def _ipywidgets() -> Any:
    try:
        import ipywidgets
    except ImportError:  # pragma: no cover - ipywidgets is a core dependency
        raise ImportError("the explorers need ipywidgets: pip install ipywidgets") from None
    return ipywidgets


def _png(draw: Callable[[Any], None], *, figsize: tuple[float, float] = (8, 3.5)) -> bytes:
    """Draw on a fresh pyplot-free figure and return it as PNG bytes."""
    import io

    from ..report import new_figure

    fig, ax = new_figure(figsize=figsize)
    draw(ax)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def _slider(kind: str, name: str, description: str, value: Any, lo: Any, hi: Any, step: Any) -> Any:
    w = _ipywidgets()
    cls = {"int": w.IntSlider, "float": w.FloatSlider, "log": w.FloatLogSlider}[kind]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name.replace('-', '_')!r} must be a number (got {value!r})")
    if kind == "log" and value <= 0:
        raise ValueError(f"{name.replace('-', '_')!r} must be > 0 (got {value!r})")
    # A starting value outside the usual range widens the range instead of being clamped.
    lo, hi = min(lo, value), max(hi, value * 2 if value > 0 else hi)
    if kind == "log":
        import math

        slider = cls(value=value, base=10, min=math.log10(lo), max=math.log10(hi), step=step,
                     description=description, continuous_update=False)  # fmt: skip
    else:
        slider = cls(value=value, min=lo, max=hi, step=step, description=description,
                     continuous_update=False)  # fmt: skip
    slider.style.description_width = "initial"
    slider.add_class(f"esn-control-{name}")
    return slider


def _assemble(
    name: str, controls: dict[str, Any], compute: Callable[[], None], *, figure: bool = True
) -> Any:
    w = _ipywidgets()
    summary = w.HTML()
    summary.add_class(f"esn-{name}-summary")
    parts = [w.VBox(list(controls.values()))]
    image = None
    if figure:
        image = w.Image(format="png")
        image.add_class(f"esn-{name}-plot")
        parts.append(image)
    parts.append(summary)
    box = w.VBox(parts)
    box.add_class(f"esn-{name}-explorer")
    box.controls, box.summary, box.figure, box.result = controls, summary, image, None
    box.refresh = compute
    for control in controls.values():
        control.observe(lambda _change: compute(), names="value")
    return box


def _error(box: Any, exc: Exception) -> None:
    box.summary.value = f"<b style='color:darkred'>{html.escape(str(exc))}</b>"


# ---------------------------------------------------------------------- lag
def lag_explorer(
    *,
    producer_rate: float = 200.0,
    burst_size: float = 3.0,
    burst_length: float = 30.0,
    consumer_rate: float = 300.0,
    consumers: int = 1,
    partitions: int = 0,
    batch_size: int = 1,
    duration: float = 300.0,
    seed: int = 0,
) -> Any:
    """Consumer lag behind a bursty producer, live: sliders for the producer rate, the
    burst's size and length, the consumer rate, consumers, partitions and batch size; a plot
    of offset and time lag (with the fluid model dashed) and a summary.

    Returns
    -------
    ipywidgets.VBox
        See the module docstring for its attributes; ``result`` is the ``LagResult``.

    Examples
    --------
    >>> from esnotebook.widgets import lag_explorer
    >>> box = lag_explorer(duration=60)
    >>> box.controls["consumer_rate"].value = 150.0
    >>> round(box.result.settings["capacity"])
    150
    """
    from ..plot import plot_lag_theory

    controls = {
        "producer_rate": _slider(
            "float", "producer-rate", "producer rate (events/s)", producer_rate, 10, 2000, 10
        ),
        "burst_size": _slider("float", "burst-size", "burst size (× rate)", burst_size, 1, 10, 0.5),
        "burst_length": _slider(
            "float", "burst-length", "burst length (s)", burst_length, 0, duration / 2, 5
        ),
        "consumer_rate": _slider(
            "float", "consumer-rate", "consumer rate (events/s)", consumer_rate, 10, 3000, 10
        ),
        "consumers": _slider("int", "consumers", "consumers", consumers, 1, 16, 1),
        "partitions": _slider(
            "int", "partitions", "partitions (0 = shared queue)", partitions, 0, 32, 1
        ),
        "batch_size": _slider("int", "batch-size", "batch size", batch_size, 1, 500, 1),
    }

    def compute() -> None:
        try:
            result, schedule = lag_explorer_result(
                **{k: c.value for k, c in controls.items()}, duration=duration, seed=seed
            )
        except ValueError as exc:
            _error(box, exc)
            return
        box.result = result
        box.figure.value = _png(lambda ax: plot_lag_theory(result, schedule=schedule, ax=ax))
        box.summary.value = lag_summary_html(result, schedule)

    box = _assemble("lag", controls, compute)
    compute()
    return box


# ---------------------------------------------------------------------- rebuild cost
def rebuild_explorer(
    *,
    events: int = 1_000_000,
    streams: int = 10_000,
    snapshot_interval: int = 50,
    live_rate: float = 1000.0,
    costs: Any = None,
) -> Any:
    """Rebuild and aggregate-load cost, with and without snapshots: sliders for the events,
    the streams, the snapshot interval (0: none) and the live event rate; a plot of the
    cost against the snapshot interval and a summary. Pass ``costs=es.sim.calibrate(store)``
    to use a real store's measured costs.

    Returns
    -------
    ipywidgets.VBox
        ``result`` is the ``RebuildResult``.

    Examples
    --------
    >>> from esnotebook.widgets import rebuild_explorer
    >>> box = rebuild_explorer()
    >>> box.controls["snapshot_interval"].value = 10
    >>> box.result["replayed_tail"]
    4.5
    """
    from ..plot import plot_rebuild_cost

    controls = {
        "events": _slider("log", "events", "events", events, 1e3, 1e9, 0.1),
        "streams": _slider("log", "streams", "streams", streams, 1, 1e7, 0.1),
        "snapshot_interval": _slider(
            "int", "snapshot-interval", "snapshot every (0 = never)", snapshot_interval, 0, 1000, 1
        ),
        "live_rate": _slider("float", "live-rate", "live rate (events/s)", live_rate, 0, 1e6, 100),
    }

    def compute() -> None:
        values = {k: c.value for k, c in controls.items()}
        if values["streams"] > values["events"]:
            _error(box, ValueError(
                f"'streams' must be <= 'events' (got {values['streams']:,.0f} streams for "
                f"{values['events']:,.0f} events)"))  # fmt: skip
            return
        try:
            result = rebuild_explorer_result(
                events=round(values["events"]), streams=round(values["streams"]),
                snapshot_interval=values["snapshot_interval"], live_rate=values["live_rate"],
                costs=costs,
            )  # fmt: skip
        except ValueError as exc:
            _error(box, exc)
            return
        box.result = result
        box.figure.value = _png(lambda ax: plot_rebuild_cost(result, ax=ax))
        box.summary.value = result._repr_html_()

    box = _assemble("rebuild", controls, compute)
    compute()
    return box


# ---------------------------------------------------------------------- sagas
def saga_explorer(
    *,
    failure: tuple[float, ...] = (0.05, 0.15, 0.05),
    retries: int = 0,
    duplicate: float = 0.05,
    idempotency: bool = True,
    instances: int = 200,
    seed: int = 0,
) -> Any:
    """Saga failure, live: one failure-probability slider per step, retries, the duplicate
    delivery probability and idempotency keys on/off; runs the real saga code
    (``es.sim.simulate_sagas``) and shows outcomes beside the closed forms.

    Returns
    -------
    ipywidgets.VBox
        ``result`` is the ``SagaResult``.

    Examples
    --------
    >>> from esnotebook.widgets import saga_explorer
    >>> box = saga_explorer(instances=30)
    >>> box.controls["idempotency"].value = False
    >>> box.result.settings["idempotency"]
    'off'
    """
    from ..plot import plot_saga_outcomes

    if isinstance(failure, (str, bytes)) or not isinstance(failure, (list, tuple)) or not failure:
        raise ValueError(
            f"'failure' must be a non-empty list of step failure probabilities (got {failure!r})"
        )
    w = _ipywidgets()
    controls: dict[str, Any] = {
        f"failure_{i}": _slider(
            "float", f"failure-{i}", f"step {i + 1} failure p", p, 0.0, 1.0, 0.01
        )
        for i, p in enumerate(failure)
    }
    controls["retries"] = _slider("int", "retries", "retries", retries, 0, 5, 1)
    controls["duplicate"] = _slider(
        "float", "duplicate", "duplicate delivery p", duplicate, 0.0, 1.0, 0.01
    )
    toggle = w.Checkbox(value=idempotency, description="idempotency keys")
    toggle.add_class("esn-control-idempotency")
    controls["idempotency"] = toggle

    def compute() -> None:
        try:
            result = saga_explorer_result(
                failure=[controls[f"failure_{i}"].value for i in range(len(failure))],
                retries=controls["retries"].value, duplicate=controls["duplicate"].value,
                idempotency=toggle.value, instances=instances, seed=seed,
            )  # fmt: skip
        except ValueError as exc:
            _error(box, exc)
            return
        box.result = result
        box.figure.value = _png(lambda ax: plot_saga_outcomes(result, ax=ax))
        box.summary.value = result._repr_html_()

    box = _assemble("saga", controls, compute)
    compute()
    return box


# ---------------------------------------------------------------------- the store browser
def store_browser(store: Any, *, page_size: int = 25) -> Any:
    """Browse a store's events without clicking: type part of a stream id, pick event
    types, narrow the time range, move through the pages; the table follows.

    Returns
    -------
    ipywidgets.VBox
        ``result`` is the :class:`~esnotebook.widgets.BrowserPage` shown.

    Examples
    --------
    >>> import esnotebook as es
    >>> from esnotebook.widgets import store_browser
    >>> store = es.InMemoryEventStore()
    >>> _ = store.append("order-1", [es.NewEvent("OrderPlaced", {"order_id": "1", "customer": "a"})])
    >>> store_browser(store).result.matches
    1
    """
    import polars as pl

    w = _ipywidgets()
    types = (
        sorted(store.event_types())
        if callable(getattr(store, "event_types", None))
        else sorted(store.scan().select("event_type").unique().collect()["event_type"].to_list())
    )
    bounds = (
        store.scan()
        .select(pl.col("recorded_at").min().alias("lo"), pl.col("recorded_at").max().alias("hi"))
        .collect()
    )
    lo, hi = bounds.row(0)
    stream = w.Text(value="", description="stream contains", continuous_update=False)
    kinds = w.SelectMultiple(
        options=types, value=(), description="event types", rows=min(len(types), 7) or 1
    )
    controls: dict[str, Any] = {"stream": stream, "event_types": kinds}
    if lo is not None:
        # Hour (or finer) steps between the first and the last event, at most ~200 of them.
        span = (hi - lo).total_seconds()
        step = max(span / 200, 1.0)
        from datetime import timedelta

        marks = [lo + timedelta(seconds=step * i) for i in range(int(span // step) + 1)] + [
            hi + timedelta(microseconds=1)
        ]
        options = [(m.strftime("%Y-%m-%d %H:%M"), m) for m in marks]
        controls["time"] = w.SelectionRangeSlider(
            options=options, index=(0, len(options) - 1), description="recorded",
            continuous_update=False, layout=w.Layout(width="95%"),
        )  # fmt: skip
    controls["page"] = w.BoundedIntText(value=1, min=1, max=1, description="page")
    sizes = [10, 25, 50]
    controls["page_size"] = w.Dropdown(options=sizes, value=page_size if page_size in sizes else 25,
                                       description="rows per page")  # fmt: skip
    for name, c in controls.items():
        c.style.description_width = "initial"
        c.add_class(f"esn-control-{name.replace('_', '-')}")
    table = w.HTML()

    def compute() -> None:
        window = controls["time"].value if "time" in controls else (None, None)
        page = browse(
            store, stream=stream.value, event_types=list(kinds.value), start=window[0], end=window[1],
            page=controls["page"].value - 1, page_size=controls["page_size"].value,
        )  # fmt: skip
        box.result = page
        pager = controls["page"]
        pager.max = max(page.pages, 1)
        box.summary.value = f"<p>{html.escape(page.caption())}</p>"
        table.value = page._repr_html_()

    def back_to_first_page(_change: Any) -> None:
        controls["page"].value = 1

    # Registered before the refresh, so a new filter starts on page 1.
    for name, c in controls.items():
        if name != "page":
            c.observe(back_to_first_page, names="value")
    box = _assemble("browser", controls, compute, figure=False)
    table.add_class("esn-browser-table")
    box.children = (*box.children, table)
    box.table = table
    compute()
    return box
