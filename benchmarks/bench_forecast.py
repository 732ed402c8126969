"""Forecast vs reality: simulate_lag with a measured ServiceProfile beside a live pipeline.

For each case a fresh profile of the OrderSummary handler-form runner is measured
(:func:`esnotebook.sim.measure_consumer`, ``appends="between"``, CPU or wall time, with a
producer thread at the case's mean rate), the
arrival rate is set from its capacity at the store's mid-run size (utilisation 0.5, 0.8,
and a burst at 2x capacity for 0.5 s between quiet stretches at 0.4),
:func:`esnotebook.live.run` runs the real producer and runner, and
:meth:`~esnotebook.live.LiveResult.compare` simulates the recorded arrivals. Rows are
medians over the repeats; ``spread`` is the range of the error over them; ``run costs`` is
``compare(costs="run")``: the same model with the steps priced at what they cost in the run.

    python benchmarks/bench_forecast.py                  # 3 repeats, in-memory store
    python benchmarks/bench_forecast.py --repeats 5 --store parquet
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import polars as pl

import esnotebook as es
from esnotebook.readmodels import OrderSummary

CASES = {
    "utilisation 0.5": lambda c: 0.5 * c,
    "utilisation 0.8": lambda c: 0.8 * c,
    "burst 2x for 0.5 s": lambda c: [(0, 0.4 * c), (2.0, 2.0 * c), (2.5, 0.4 * c)],
}


def _store(kind: str, folder: Path) -> es.EventStore:
    return es.InMemoryEventStore() if kind == "memory" else es.ParquetEventStore(folder)


def _rate(make_rate, profile, duration: float):
    """The case's arrival rate, from the capacity at the store's mid-run size (an
    in-memory store's reads slow down as it grows): a few fixed-point steps."""
    capacity = profile.rate()
    for _ in range(5):
        rate = make_rate(capacity)
        base = rate if isinstance(rate, float) else rate[0][1]
        capacity = profile.at(int(base * duration / 2)).rate()
    return make_rate(capacity)


def one_case(
    make_rate, *, kind: str, duration: float, seed: int, timer: str
) -> dict[str, pl.DataFrame]:
    with tempfile.TemporaryDirectory() as tmp:
        probe = _store(kind, Path(tmp) / "probe")
        first = es.sim.measure_consumer(
            probe, OrderSummary(), appends="between", timer=timer, seed=seed
        )
        rate = _rate(make_rate, first, duration)
        expected = es.sim.simulate_lag(rate, service=first, duration=duration, seed=seed)
        n = int(min(max(expected["events"], 200), 1000))
        mean_rate = expected["events"] / duration
        profile = es.sim.measure_consumer(
            probe, OrderSummary(), events=n, appends="between", timer=timer,
            producer_rate=mean_rate, seed=seed,
        )  # fmt: skip
        live = es.live.run(_store(kind, Path(tmp) / "live"), OrderSummary(), arrival_rate=rate,
                           duration=duration, profile=profile, seed=seed)  # fmt: skip
        extra = [pl.lit(live.cost_ratio).alias("cost_ratio"),
                 pl.lit(live["utilisation"]).alias("utilisation")]  # fmt: skip
        return {c: live.compare(seed=seed, costs=c).with_columns(extra) for c in ("profile", "run")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--store", choices=("memory", "parquet"), default="memory")
    parser.add_argument("--timer", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    print(f"{args.store} store, OrderSummary handler form, batch_size=1, {args.duration:g} s "
          f"runs, {args.repeats} repeats, {args.timer} profile; medians, error spread in "
          "brackets")  # fmt: skip
    print(
        "error = predicted/measured - 1, forecast from the profile; 'run costs': the same "
        "model with the steps priced at what they cost in the run"
    )
    print(f"{'case':<18} {'metric':<16} {'predicted':>10} {'measured':>10} {'error':>8} "
          f"{'spread':>11} {'run costs':>10}")  # fmt: skip
    for name, make_rate in CASES.items():
        runs = [one_case(make_rate, kind=args.store, duration=args.duration, seed=seed,
                         timer=args.timer) for seed in range(args.repeats)]  # fmt: skip
        for i, metric in enumerate(runs[0]["profile"]["metric"]):
            if name.startswith("utilisation") and metric == "drain_time":
                continue
            p, m, e = (
                [r["profile"][c][i] for r in runs] for c in ("predicted", "measured", "error")
            )
            e_run = statistics.median(r["run"]["error"][i] for r in runs)
            print(f"{name:<18} {metric:<16} {statistics.median(p):>10.4g} "
                  f"{statistics.median(m):>10.4g} {statistics.median(e):>+8.1%} "
                  f"{f'[{min(e):+.0%},{max(e):+.0%}]':>11} {e_run:>+10.1%}")  # fmt: skip
        ratio = statistics.median(r["profile"]["cost_ratio"][0] for r in runs)
        busy = statistics.median(r["profile"]["utilisation"][0] for r in runs)
        print(f"{name:<18} {'(cost ratio)':<16} {ratio:>10.3g}   measured utilisation {busy:.2f}")


if __name__ == "__main__":
    main()
