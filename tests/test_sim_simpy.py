"""simulate_lag agrees with an independent SimPy model of the same bursty configuration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from esnotebook.sim.lag import simulate_lag

simpy = pytest.importorskip("simpy")

# The configuration: on/off Poisson bursts (mean 1 s on, 1 s off, mean rate 40/s, so 80/s
# while on), two competing consumers at 50 events/s each with exponential service.
RATE, ON, OFF, MU, CONSUMERS, DURATION, WARMUP = 40.0, 1.0, 1.0, 50.0, 2, 500.0, 20.0
REPS = 6


def simpy_mean_latency(seed: int) -> float:
    """The same queue written the SimPy way: a producer process switching on/off, a
    Resource with two slots, one process per event."""
    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    consumers = simpy.Resource(env, capacity=CONSUMERS)
    latencies: list[float] = []

    def handle(env, arrived):
        with consumers.request() as slot:
            yield slot
            yield env.timeout(rng.exponential(1 / MU))
        if arrived >= WARMUP:
            latencies.append(env.now - arrived)

    def producer(env):
        on = rng.random() < ON / (ON + OFF)  # start in the stationary state
        while True:
            period_end = env.now + rng.exponential(ON if on else OFF)
            if on:
                while True:
                    gap = rng.exponential(1 / (RATE * (ON + OFF) / ON))
                    if env.now + gap > period_end:
                        break
                    yield env.timeout(gap)
                    env.process(handle(env, env.now))
            yield env.timeout(period_end - env.now)
            on = not on

    env.process(producer(env))
    env.run(until=DURATION)
    return float(np.mean(latencies))


def test_bursty_mean_latency_agrees_with_simpy():
    """Mean latency from both simulators, 6 replications each, differs by less than 4
    standard errors of the difference; each side's SE is under 5% so the check is sharp."""
    ours = simulate_lag(
        RATE,
        service_rate=MU,
        arrivals="onoff",
        burst=(ON, OFF),
        consumers=CONSUMERS,
        duration=DURATION,
        warmup=WARMUP,
        replications=REPS,
        seed=11,
        keep_events=False,
    )
    a = ours.runs["mean_latency"].to_numpy()
    b = np.array([simpy_mean_latency(100 + s) for s in range(REPS)])
    se_a, se_b = a.std(ddof=1) / math.sqrt(REPS), b.std(ddof=1) / math.sqrt(REPS)
    assert se_a < 0.05 * a.mean() and se_b < 0.05 * b.mean()
    assert abs(a.mean() - b.mean()) <= 4 * math.hypot(se_a, se_b)
