"""The tour that ``esnotebook demo`` runs after generating its store: every part of the
package working on the workload, written up as ``report.html`` with PNG figures.

Steps, each a function returning a :class:`~esnotebook.report.Section`:

1. the store: what it holds, and its event rate;
2. projections on the Parquet store: build (in steps, with lag metrics), rebuild in place,
   shadow rebuild, and check that all three agree;
3. commands and the fulfilment saga under injected faults (an in-memory store: per-command
   work is what it is for), with the causal trace of a compensated order;
4. snapshots: aggregate loads with and without them;
5. the dead-letter queue catching a poison event;
6. lag of a consumer behind a bursty producer, and the capacity that keeps it in bounds.
7. forecast vs measured: a real consumer calibrated, run live behind a burst, and the
   forecast of the very arrivals it saw beside what it did.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import polars as pl

from .report import Section, new_figure, save_figure, write_report

__all__ = ["TourResult", "run_tour"]

FIGURES = "figures"
REPORT = "report.html"

#: The bursty producer of the lag step: (start s, events/s); a 5x burst for a minute.
BURST_PROFILE: tuple[tuple[float, float], ...] = ((0.0, 200.0), (120.0, 1000.0), (180.0, 200.0))
LAG_DURATION = 600.0
CONSUMER_RATE = 300.0
TARGET_P99_TIME_LAG = 10.0


@dataclass(frozen=True, slots=True)
class TourResult:
    """What the tour measured: every fact of the report, flat, and where the report is."""

    report: Path
    figures: tuple[Path, ...]
    facts: dict[str, Any]
    seconds: float
    sections: tuple[Section, ...] = field(repr=False, default=())

    def lines(self) -> list[str]:
        """The printed summary of the tour, one ``label  value`` line each."""
        out = []
        for s in self.sections:
            out.append(f"[{s.title}]")
            for label, value in s.facts.values():
                out.append(f"{label:<38}{_text(value)}")
        out.append(f"{'report':<38}{self.report}")
        out.append(f"{'tour time':<38}{self.seconds:.1f} s")
        return out

    def to_polars(self) -> pl.DataFrame:
        """The facts as a frame (``key, value`` as text)."""
        return pl.DataFrame(
            {"key": list(self.facts), "value": [str(v) for v in self.facts.values()]},
            schema={"key": pl.String, "value": pl.String},
        )

    def to_pandas(self) -> Any:
        return self.to_polars().to_pandas()

    def _repr_html_(self) -> str:
        import html

        from .report import html_table

        return f"<b>esnotebook demo tour</b>: {html.escape(str(self.report))}" + html_table(
            self.to_polars(), max_rows=30
        )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


# ---------------------------------------------------------------------- 1. the store
def _store_section(store: Any, figures: Path) -> Section:
    from .plot import plot_event_rate

    lf = store.scan()
    counts = lf.group_by("event_type").len().sort("len", descending=True).collect()
    fig, ax = new_figure()
    plot_event_rate(store, every="1h", ax=ax)
    name = save_figure(fig, figures, "event_rate")
    first, last = (
        lf.select(
            pl.col("recorded_at").min().alias("first"), pl.col("recorded_at").max().alias("last")
        )
        .collect()
        .row(0)
    )
    disk: dict[str, tuple[str, Any]] = {}
    if callable(getattr(store, "size_on_disk", None)):
        disk = {
            "store.files": ("Parquet files", len(store.files())),
            "store.bytes": ("bytes on disk", store.size_on_disk()),
        }
    return Section(
        "The event store",
        "The synthetic order workload, bulk-imported into an embedded Parquet store.",
        facts={
            "store.events": ("events", len(store)),
            "store.streams": ("streams", len(store.streams())),
            "store.event_types": ("event types", counts.height),
            "store.orders_placed": ("orders placed", _count(counts, "OrderPlaced")),
            "store.first_event": ("first event recorded", first),
            "store.last_event": ("last event recorded", last),
            **disk,
        },
        tables={"events per type": counts.rename({"len": "events"})},
        figures=(f"{FIGURES}/{name}",),
    )


def _count(counts: pl.DataFrame, event_type: str) -> int:
    hit = counts.filter(pl.col("event_type") == event_type)
    return int(hit["len"][0]) if hit.height else 0


# ---------------------------------------------------------------------- 2. projections
def _projection_section(store: Any, figures: Path) -> Section:
    from .plot import plot_runner_metrics
    from .readmodels import OrderSummaryFrame
    from .runner import ProjectionRunner

    head = store.head_position
    runner = ProjectionRunner(store, OrderSummaryFrame(), batch_size=max(1, -(-head // 20)))
    _, build_s = _timed(runner.catch_up)
    built = runner.state
    steps = runner.metrics.height
    metrics_fig, axes = new_figure(rows=2, figsize=(8, 5), sharex=True)
    plot_runner_metrics(runner, axes=axes)
    dashboard = save_figure(metrics_fig, figures, "projection_dashboard")
    _, rebuild_s = _timed(runner.rebuild)
    rebuilt = runner.state
    _, shadow_s = _timed(lambda: runner.rebuild(mode="shadow"))
    shadowed = runner.state
    agree = built.equals(rebuilt) and built.equals(shadowed)
    status = built.group_by("status").agg(
        pl.len().alias("orders"), pl.col("total").sum().alias("total_cents")
    )
    return Section(
        "Projections: build, rebuild, shadow rebuild",
        "OrderSummary (the vectorised form) folded over the Parquet store in 20 steps, then "
        "rebuilt in place and as a shadow (the old state serves reads until the swap). "
        "The time lag is the age of the oldest unapplied event: the workload's timestamps "
        "lie in the past, so it reads in days until the runner catches up.",
        facts={
            "projection.rows": ("OrderSummary rows", built.height),
            "projection.checkpoint": ("checkpoint", runner.checkpoint),
            "projection.steps": ("build steps", steps),
            "projection.build_s": ("build (s)", round(build_s, 4)),
            "projection.rebuild_s": ("rebuild in place (s)", round(rebuild_s, 4)),
            "projection.shadow_s": ("shadow rebuild (s)", round(shadow_s, 4)),
            "projection.rebuild_rate": (
                "rebuild rate (events/s)",
                round(head / rebuild_s) if rebuild_s else 0,
            ),
            "projection.agree": ("build = rebuild = shadow", agree),
        },
        tables={"orders by status": status.sort("status")},
        figures=(f"{FIGURES}/{dashboard}",),
    )


# ---------------------------------------------------------------------- 3. commands + saga
@dataclass(slots=True)
class _Shop:
    store: Any
    bus: Any
    skus: list[str]
    orders: int


def _open_shop(orders: int) -> _Shop:
    """An in-memory store with a few SKUs in stock and a command bus on it."""
    import esnotebook as es

    from .examples import AddStock, order_domain_bus

    store = es.InMemoryEventStore()
    bus = order_domain_bus(store)
    skus = [f"sku-{i}" for i in range(5)]
    for sku in skus:
        bus.dispatch(AddStock(sku, 100 * orders))
    return _Shop(store, bus, skus, orders)


def _place_orders(shop: _Shop, first: int, last: int, rng: np.random.Generator) -> None:
    """Place orders ``first .. last - 1``, each of 1-3 lines, through the command bus."""
    from .examples import AddItem, PlaceOrder

    for i in range(first, last):
        shop.bus.dispatch(PlaceOrder(f"o-{i}", f"c-{i % 37}"))
        for k in rng.choice(len(shop.skus), size=int(rng.integers(1, 4)), replace=False):
            # One fixed unit price per SKU: the order refuses a second price for a SKU.
            price = 250 * (int(k) + 1)
            shop.bus.dispatch(AddItem(f"o-{i}", shop.skus[k], int(rng.integers(1, 4)), price))


#: Orders placed between two catch-ups of the saga runner: it runs beside the commands.
SAGA_BATCH = 10


def _saga_section(orders: int, figures: Path, seed: int) -> tuple[Section, _Shop]:
    from . import trace
    from .examples import OrderFulfillment
    from .faults import FaultPlan
    from .plot import trace_swimlane
    from .sagas import SagaRunner

    shop = _open_shop(orders)
    plan = (
        FaultPlan(seed=seed)
        .transient("ReserveInventory", p=0.1)
        .permanent("ChargePayment", p=0.1, reason="card declined")
        .duplicate(p=0.05)
    )
    runner = SagaRunner(OrderFulfillment(), shop.store, faults=plan)
    rng = np.random.default_rng(seed)

    def run() -> None:
        for first in range(0, orders, SAGA_BATCH):
            _place_orders(shop, first, min(first + SAGA_BATCH, orders), rng)
            runner.catch_up()

    _, saga_s = _timed(run)
    counts = runner.summary()
    injected = runner.faults.counts()
    instances = runner.instances()
    compensated = instances.filter(pl.col("status") == "compensated").sort("instance_id")
    figs: list[str] = []
    fig, ax = new_figure(figsize=(8, 3))
    shown = {k: v for k, v in counts.items() if v}
    ax.bar(
        list(shown),
        list(shown.values()),
        color=["tab:green" if k == "completed" else "tab:red" for k in shown],
    )
    ax.set_ylabel("saga instances")
    ax.set_title(f"OrderFulfillment under injected faults ({shop.orders} orders)")
    figs.append(f"{FIGURES}/{save_figure(fig, figures, 'saga_outcomes')}")
    trace_facts: dict[str, tuple[str, Any]] = {}
    if compensated.height:
        t = trace(shop.store, compensated["correlation_id"][0])
        fig, ax = new_figure(figsize=(9, 3.5))
        trace_swimlane(t, ax=ax)
        figs.append(f"{FIGURES}/{save_figure(fig, figures, 'trace_swimlane')}")
        trace_facts = {
            "saga.traced_order": ("traced order", compensated["instance_id"][0]),
            "saga.trace_events": ("events in its trace", len(t)),
            "saga.trace_ok": ("trace links sound", t.ok),
        }
    section = Section(
        "Commands and the fulfilment saga, with injected faults",
        "Orders placed through the command bus while OrderFulfillment (reserve → charge → "
        "ship) runs beside them, catching up every ten orders, with transient reservation faults, declined payments and duplicated "
        "deliveries. A declined payment cancels the order and releases its stock; "
        "idempotency keys turn duplicated deliveries into no-ops.",
        facts={
            "saga.orders": ("orders placed by command", shop.orders),
            "saga.events": ("events in the store", len(shop.store)),
            "saga.completed": ("completed", counts["completed"]),
            "saga.compensated": ("compensated", counts["compensated"]),
            "saga.dead_lettered": ("dead-lettered", counts["dead-lettered"]),
            "saga.injected_transient": ("transient faults injected", injected.get("transient", 0)),
            "saga.injected_permanent": ("payments declined", injected.get("permanent", 0)),
            "saga.injected_duplicate": ("deliveries duplicated", injected.get("duplicate", 0)),
            "saga.seconds": ("saga run (s)", round(saga_s, 4)),
            **trace_facts,
        },
        tables={
            "saga instances": instances.select(
                "instance_id", "status", "step", "failure", "attempts"
            )
        },
        figures=tuple(figs),
    )
    return section, shop


# ---------------------------------------------------------------------- 4. snapshots
def _snapshot_section(shop: _Shop, *, repeats: int = 41) -> Section:
    from .examples import Inventory
    from .repository import Repository
    from .sim import calibrate, rebuild_cost

    lengths = [shop.store.stream_version(f"inventory-{s}") for s in shop.skus]
    # Every 50 events, as a production setting would be; shorter for a tiny demo so that
    # each stream still gets a few snapshots.
    every = max(2, min(50, min(lengths) // 3))
    repo = Repository(shop.store, Inventory, snapshot_every=every)
    written = 0
    for sku in shop.skus:
        # The snapshots `snapshot_every` would have taken as the saga saved the aggregate.
        events = shop.store.read_stream(f"inventory-{sku}")
        for v in range(every, len(events) + 1, every):
            repo._take(repo.load(sku, version=v, use_snapshots=False), events[v - 1])
            written += 1
    latest = [repo.snapshots.latest(repo.aggregate_type, s) for s in shop.skus]
    tails = [n - (0 if snap is None else snap.version) for n, snap in zip(lengths, latest)]

    # CPU seconds, as calibrate counts them, in passes that take turns: on a busy machine a
    # single timed loop measures whoever else is running.
    passes: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for use, seconds in passes.items():
            t = time.process_time()
            for sku in shop.skus:
                repo.load(sku, use_snapshots=use)
            seconds.append((time.process_time() - t) / len(shop.skus))
    full_s, snap_s = (float(np.median(passes[use])) for use in (False, True))
    same = all(
        repo.load(s, use_snapshots=True).get_state()
        == repo.load(s, use_snapshots=False).get_state()
        for s in shop.skus
    )
    # The calibrated model on the same store: what it predicts beside what was measured.
    costs = calibrate(shop.store, aggregate=Inventory, sample_events=min(2000, len(shop.store)),
                      sample_streams=len(shop.skus), seed=0)  # fmt: skip
    plain, snapped = rebuild_cost(costs, interval=None), rebuild_cost(costs, interval=every)
    best = snapped.best_interval
    measured, model = snap_s / full_s, snapped["load_time_s"] / plain["load_time_s"]
    # How much the cheapest interval saves per appended event over never snapshotting: where
    # it is little, which interval wins turns on noise, and the text says so.
    saving = 1 - snapped["best_cost_per_event_s"] / plain["cost_per_event_s"]

    def speed(ratio: float) -> str:
        return f"{1 / ratio:.2g}x faster" if ratio < 1 else f"{ratio:.2g}x slower"

    cheapest = "no snapshots at all" if best is None else f"a snapshot every {best} events"
    advice = (
        f"Snapshots hardly pay here: the model's cheapest setting, {cheapest}, saves "
        f"{max(saving, 0):.0%} per appended event over never snapshotting, too little for "
        "the choice of interval to stand out from the noise of the timings."
        if saving < 0.1
        else f"The model's cheapest setting is {cheapest}, {saving:.0%} cheaper per appended "
        "event than never snapshotting."
    )
    return Section(
        "Snapshots: loading aggregates with and without them",
        f"The inventory streams the saga wrote, each loaded {repeats} times by full replay and "
        f"from a snapshot taken every {every} events plus the tail after it (CPU time, medians), "
        "beside the model calibrated on this store (es.sim.calibrate + es.sim.rebuild_cost). "
        f"Here loading from a snapshot was {speed(measured)} than a full replay (the model: "
        f"{speed(model)}). {advice}",
        facts={
            "snapshots.every": ("snapshot every (events)", every),
            "snapshots.written": ("snapshots taken", written),
            "snapshots.mean_stream": (
                "mean inventory stream (events)",
                round(float(np.mean(lengths)), 1),
            ),
            "snapshots.mean_tail": ("mean tail replayed (events)", round(float(np.mean(tails)), 1)),
            "snapshots.full_ms": ("full replay per load (ms)", round(1000 * full_s, 3)),
            "snapshots.snap_ms": ("snapshot + tail per load (ms)", round(1000 * snap_s, 3)),
            "snapshots.same_state": ("same state either way", same),
            "snapshots.model_full_ms": (
                "model: full replay per load (ms)",
                round(1000 * plain["load_time_s"], 3),
            ),
            "snapshots.model_snap_ms": (
                "model: snapshot + tail per load (ms)",
                round(1000 * snapped["load_time_s"], 3),
            ),
            "snapshots.model_tail": (
                "model: mean tail replayed (events)",
                round(float(snapped["replayed_tail"]), 1),
            ),
            "snapshots.model_best": (
                "model: cheapest interval",
                "no snapshots" if best is None else best,
            ),
        },
        tables={
            "model: cost by snapshot interval": snapped.to_polars().select(
                "interval", "replayed_tail", "load_time_s", "cost_per_event_s"
            )
        },
    )


# ---------------------------------------------------------------------- 5. dead letters
def _dead_letter_section(shop: _Shop) -> Section:
    from .events import NewEvent
    from .readmodels import OrderSummary
    from .runner import ProjectionRunner

    victim = "o-0"
    # A producer bug: an ItemAdded without a quantity. The typed column accepts the null; the
    # projection cannot value the line, so that one event must be set aside, not the stream.
    poison = shop.store.append(
        f"order-{victim}",
        [
            NewEvent(
                "ItemAdded", {"order_id": victim, "sku": "sku-9", "quantity": None, "price": 100}
            )
        ],
    )[0]
    runner = ProjectionRunner(shop.store, OrderSummary())
    runner.catch_up()
    dlq = runner.dead_letters.to_polars()
    caught = dlq.height == 1 and int(dlq["position"][0]) == poison.position
    return Section(
        "The dead-letter queue catching a poison event",
        "A malformed ItemAdded appended to one order; the handler-form OrderSummary projection "
        "retries it, records it as a dead letter with its error, and carries on.",
        facts={
            "dlq.poison_position": ("poison event position", poison.position),
            "dlq.dead_letters": ("dead letters", dlq.height),
            "dlq.caught_poison": ("the poison event is the dead letter", caught),
            "dlq.checkpoint": ("runner checkpoint", runner.checkpoint),
            "dlq.head": ("store head", shop.store.head_position),
            "dlq.rows": ("OrderSummary rows", runner.state.height),
        },
        tables={
            "dead letters": dlq.select(
                "position", "stream_id", "event_type", "error_type", "message", "attempts"
            )
        },
    )


# ---------------------------------------------------------------------- 6. lag and capacity
def _lag_section(figures: Path, seed: int, replications: int) -> Section:
    from .plot import plot_lag_theory
    from .sim import required_capacity, simulate_lag

    profile = [list(p) for p in BURST_PROFILE]
    result, lag_s = _timed(
        lambda: simulate_lag(
            profile,
            service_rate=CONSUMER_RATE,
            duration=LAG_DURATION,
            keep_events=False,
            progress=False,
            seed=seed,
        )
    )
    fig, ax = new_figure()
    plot_lag_theory(result, schedule=profile, ax=ax)
    ax.set_title(f"consumer at {CONSUMER_RATE:g} events/s behind a 5x burst")
    name = save_figure(fig, figures, "lag_burst")
    answer, cap_s = _timed(
        lambda: required_capacity(
            profile,
            target_p99_time_lag=TARGET_P99_TIME_LAG,
            duration=LAG_DURATION,
            replications=replications,
            seed=seed,
            progress=False,
        )
    )
    peak = max(r for _, r in BURST_PROFILE)
    return Section(
        "Consumer lag behind a bursty producer, and the capacity question",
        f"A producer at {BURST_PROFILE[0][1]:g} events/s bursts to {peak:g} events/s for "
        f"{BURST_PROFILE[2][0] - BURST_PROFILE[1][0]:g} s. How fast must one consumer be so "
        f"that the p99 time lag stays under {TARGET_P99_TIME_LAG:g} s in 90% of runs?",
        facts={
            "lag.consumer_rate": ("consumer rate (events/s)", CONSUMER_RATE),
            "lag.max_offset_lag": ("max offset lag (events)", result["max_offset_lag"]),
            "lag.p99_time_lag": ("p99 time lag (s)", round(result["p99_time_lag"], 3)),
            "lag.simulated_events": ("events simulated", int(result["events"])),
            "capacity.rate": ("required consumer rate (events/s)", round(answer.value, 1)),
            "capacity.fraction": ("share of runs meeting the target", answer.fraction_meeting),
            "capacity.replications": ("replications per candidate", answer.replications),
            "capacity.seconds": ("capacity search (s)", round(cap_s + lag_s, 3)),
        },
        tables={"capacity search": answer.to_polars()},
        figures=(f"{FIGURES}/{name}",),
    )


# ---------------------------------------------------------------------- 7. forecast vs measured
#: The live run of the forecast step: seconds of producing, and its rate schedule as shares of
#: the measured capacity (a burst above it for the second quarter; the second half drains it).
LIVE_DURATION = 2.0
LIVE_BURST: tuple[tuple[float, float], ...] = (
    (0.0, 0.5),
    (LIVE_DURATION / 4, 1.5),
    (LIVE_DURATION / 2, 0.5),
)


def _forecast_section(figures: Path, seed: int) -> Section:
    from .live import run
    from .readmodels import OrderSummary
    from .sim import measure_consumer
    from .store.memory import InMemoryEventStore

    projection = OrderSummary()
    # A first calibration sizes the burst; the run calibrates its consumer again
    # with its producer running, and forecasts with that.
    alone, sizing_s = _timed(
        lambda: measure_consumer(InMemoryEventStore(), projection, appends="between", seed=seed)
    )
    capacity = alone.as_wall().rate(1)  # working through a backlog
    schedule = [(start, share * capacity) for start, share in LIVE_BURST]
    live, live_s = _timed(
        lambda: run(InMemoryEventStore(), projection, arrival_rate=schedule,
                    duration=LIVE_DURATION, seed=seed)
    )  # fmt: skip
    table = live.compare(seed=seed)
    fig, ax = new_figure()
    live.plot(ax=ax, seed=seed)
    name = save_figure(fig, figures, "forecast_vs_measured")
    row = {m: r for m, *r in table.iter_rows()}
    facts: dict[str, tuple[str, Any]] = {
        "forecast.capacity": ("calibrated capacity (events/s)", round(capacity, 1)),
        "forecast.single_ms": ("one-event step (CPU ms)", round(1e3 * live.profile.single, 3)),
        "forecast.events": ("events produced live", int(live["events"])),
        "forecast.cost_ratio": ("live steps' cost / calibrated", round(live.cost_ratio, 3)),
    }
    for metric, label in (("mean_offset_lag", "mean offset lag"), ("max_offset_lag", "max offset lag"),
                          ("p95_time_lag", "p95 time lag (s)")):  # fmt: skip
        predicted, measured, error = row[metric]
        facts[f"forecast.{metric}.predicted"] = (f"{label}: forecast", round(predicted, 4))
        facts[f"forecast.{metric}.measured"] = (f"{label}: measured", round(measured, 4))
        facts[f"forecast.{metric}.error"] = (f"{label}: forecast error", round(error, 3))
    facts["forecast.seconds"] = ("calibrations + live run (s)", round(sizing_s + live_s, 3))
    peak = max(share for _, share in LIVE_BURST)
    return Section(
        "Forecast vs measured: a live consumer behind a burst",
        "A real ProjectionRunner (OrderSummary, one event per step) timed step by step "
        "(es.sim.measure_consumer), then run live (es.live.run): a producer thread appends "
        f"order events at half its calibrated capacity, {peak:g}x it for the second quarter of "
        f"{LIVE_DURATION:g} s, then half again, while the runner consumes them with real "
        "checkpoints. The run calibrates its consumer again with its producer running; the "
        "forecast simulates the very arrivals that were recorded with that profile "
        "(es.sim.simulate_lag(service=profile)); error = predicted / measured - 1, and the "
        "cost ratio is the live steps' wall time over what the profile priced them at. The "
        "store is in memory: a Parquet store writes a file per append, and one-event appends "
        "at a live rate are not its work. A live run measures this machine as it was, so its "
        "numbers move from run to run.",
        facts=facts,
        tables={"forecast vs measured": table},
        figures=(f"{FIGURES}/{name}",),
    )


# ---------------------------------------------------------------------- the tour
def run_tour(
    store: Any,
    out: str | Path,
    *,
    saga_orders: int = 300,
    seed: int = 0,
    replications: int = 10,
    say: TextIO | None = None,
) -> TourResult:
    """Run every step of the tour on ``store`` and write ``out/report.html``.

    Parameters
    ----------
    store
        The demo's event store (read only).
    out
        The folder for ``report.html`` and ``figures/``.
    saga_orders
        Orders placed through the command bus for the saga, snapshot and dead-letter steps.
    seed
        Seed of every random choice (orders, faults, simulations).
    replications
        Replications per candidate in the capacity search.
    say
        Where progress notes go (default: nowhere).

    Examples
    --------
    >>> import tempfile, esnotebook as es
    >>> from esnotebook.datasets import generate_orders
    >>> store = es.InMemoryEventStore()
    >>> _ = store.append_frame(generate_orders(50, seed=1))
    >>> result = run_tour(store, tempfile.mkdtemp(), saga_orders=20, replications=3)
    >>> result.facts["projection.rows"]
    50
    """
    if isinstance(saga_orders, bool) or not isinstance(saga_orders, int) or saga_orders < 1:
        raise ValueError(f"'saga_orders' must be an int >= 1 (got {saga_orders!r})")
    if isinstance(replications, bool) or not isinstance(replications, int) or replications < 2:
        raise ValueError(f"'replications' must be an int >= 2 (got {replications!r})")
    out = Path(out)
    figures = out / FIGURES
    began = time.perf_counter()
    # An earlier report must not pass for this run's if this run fails part-way.
    (out / REPORT).unlink(missing_ok=True)

    def note(text: str) -> None:
        if say is not None:
            print(text, file=say, flush=True)

    note("tour: the store ...")
    sections = [_store_section(store, figures)]
    note("tour: projections (build, rebuild, shadow rebuild) ...")
    sections.append(_projection_section(store, figures))
    note(f"tour: {saga_orders:,} orders by command, then the fulfilment saga with faults ...")
    saga, shop = _saga_section(saga_orders, figures, seed)
    sections.append(saga)
    note("tour: snapshots ...")
    sections.append(_snapshot_section(shop))
    note("tour: a poison event and the dead-letter queue ...")
    sections.append(_dead_letter_section(shop))
    note("tour: consumer lag and the capacity question ...")
    sections.append(_lag_section(figures, seed, replications))
    note("tour: forecast vs measured on a live pipeline ...")
    sections.append(_forecast_section(figures, seed))
    report = write_report(
        out / REPORT, sections, title="esnotebook demo",
        intro="Everything below was computed by `esnotebook demo` on this machine.",
    )  # fmt: skip
    facts = {k: v for s in sections for k, (_, v) in s.facts.items()}
    pictures = tuple(out / f for s in sections for f in s.figures)
    return TourResult(report, pictures, facts, time.perf_counter() - began, tuple(sections))
