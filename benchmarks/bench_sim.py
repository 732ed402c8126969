"""esnotebook's lag simulator beside SimPy on the same workloads, in one run.

Workloads: M/M/1 at ρ=0.8 (λ=80/s, μ=100/s) and a bursty one (on/off Poisson bursts,
1 s on / 1 s off on average, mean 80/s, so 160/s while on; one consumer at μ=100/s
... which the bursts overload for a while: lag builds and drains). Each side simulates the
same number of events; rows show simulated events per second of wall time (median of
repeats), the mean latency each reports and theory where there is a closed form.

    python benchmarks/bench_sim.py            # default sizes
    python benchmarks/bench_sim.py --quick    # smaller, for a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import simpy

from esnotebook.sim import simulate_lag, theory

LAM, MU, ON, OFF = 80.0, 100.0, 1.0, 1.0


def simpy_run(n_events: int, *, bursty: bool, seed: int) -> tuple[float, float]:
    """The idiomatic SimPy model: a producer process, one process per event, a Resource."""
    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=1)
    latencies: list[float] = []

    def handle(env, arrived):
        with server.request() as req:
            yield req
            yield env.timeout(rng.exponential(1 / MU))
        latencies.append(env.now - arrived)

    def producer(env):
        made = 0
        on = rng.random() < ON / (ON + OFF)
        while made < n_events:
            if not bursty:
                yield env.timeout(rng.exponential(1 / LAM))
                env.process(handle(env, env.now))
                made += 1
                continue
            end = env.now + rng.exponential(ON if on else OFF)
            if on:
                while made < n_events:
                    gap = rng.exponential(1 / (LAM * (ON + OFF) / ON))
                    if env.now + gap > end:
                        break
                    yield env.timeout(gap)
                    env.process(handle(env, env.now))
                    made += 1
            yield env.timeout(max(0.0, end - env.now))
            on = not on

    env.process(producer(env))
    start = time.perf_counter()
    env.run()
    return time.perf_counter() - start, float(np.mean(latencies))


def ours_run(n_events: int, *, bursty: bool, seed: int) -> tuple[float, float]:
    kwargs = {"arrivals": "onoff", "burst": (ON, OFF)} if bursty else {}
    start = time.perf_counter()
    r = simulate_lag(
        LAM, service_rate=MU, n_events=n_events, seed=seed, keep_events=False, **kwargs
    )
    return time.perf_counter() - start, r["mean_latency"]


def median_run(fn, n, *, bursty, repeats):
    runs = [fn(n, bursty=bursty, seed=s) for s in range(repeats)]
    return statistics.median(t for t, _ in runs), statistics.mean(m for _, m in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_simpy = 20_000 if args.quick else 200_000
    big = 1_000_000 if args.quick else 10_000_000
    mm1 = theory.mm1(LAM, service_rate=MU).mean_latency

    print(
        f"{'workload':<10} {'engine':<12} {'events':>10} {'events/s':>12} {'mean latency':>13} {'theory':>9} {'ratio':>7}"
    )
    for name, bursty, expected in (("M/M/1", False, f"{mm1:.4f}"), ("bursty", True, "—")):
        t_simpy, m_simpy = median_run(simpy_run, n_simpy, bursty=bursty, repeats=3)
        t_ours, m_ours = median_run(ours_run, n_simpy, bursty=bursty, repeats=7)
        rate_simpy, rate_ours = n_simpy / t_simpy, n_simpy / t_ours
        print(
            f"{name:<10} {'SimPy':<12} {n_simpy:>10,} {rate_simpy:>12,.0f} {m_simpy:>13.4f} {expected:>9} {'1.0x':>7}"
        )
        print(
            f"{name:<10} {'esnotebook':<12} {n_simpy:>10,} {rate_ours:>12,.0f} {m_ours:>13.4f} {expected:>9} "
            f"{rate_ours / rate_simpy:>6.0f}x"
        )
        t_big, m_big = median_run(ours_run, big, bursty=bursty, repeats=3)
        print(
            f"{name:<10} {'esnotebook':<12} {big:>10,} {big / t_big:>12,.0f} {m_big:>13.4f} {expected:>9} "
            f"{big / t_big / rate_simpy:>6.0f}x   ({t_big:.2f} s)"
        )


if __name__ == "__main__":
    main()
