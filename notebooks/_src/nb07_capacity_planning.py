"""07: sizing projection consumers for a bursty daily profile."""

CELLS = [
    ("md", r'''
# 07 · Capacity planning

The question a team asks before launch: **how fast must our projection consumers be, and
how many do we need, so that the read side stays fresh at the busiest time of day?**

Sizing for the *average* rate fails: a queue whose consumer is barely faster than the
average builds a backlog every evening peak and every burst. Sizing for the *peak* wastes
money. The answer lies in between and depends on the shape of the traffic, which is why we
simulate it: a producer following a daily profile, with bursts on top (traffic comes in
clumps: an "on" period at high rate, then quiet), against consumers with random service
times. Freshness is measured as **time lag**: how long an event waits before the
projection has applied it. The target: the 99th percentile of time lag within
`TARGET_P99_S` seconds, in at least 90 % of simulated days.
'''),
    ("params", r'''
HOUR = 60             # simulated seconds per hour of the profile (3600 for a real day; 60 keeps the notebook fast)
TARGET_P99_S = 5.0    # freshness target: p99 time lag, seconds
REPLICATIONS = 8      # simulated days per candidate
SEED = 1
'''),
    ("code", r'''
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

import esnotebook as es
'''),
    ("md", r'''
## The daily profile

Events per second, hour by hour: quiet at night, a working-day plateau, an evening peak.
As a schedule of `(start_second, rate)` pairs the simulator holds each rate until the next
start.
'''),
    ("code", r'''
rates = [5, 3, 2, 2, 2, 4, 10, 25, 40, 35, 30, 30, 40, 35, 30, 30, 35, 45, 70, 90, 80, 50, 25, 10]
profile = [(hour * HOUR, rate) for hour, rate in enumerate(rates)]
mean_rate, peak_rate = float(np.mean(rates)), max(rates)
fig, ax = plt.subplots(figsize=(8, 2.5))
ax.step(range(24), rates, where="post")
ax.set_xlabel("hour of day"); ax.set_ylabel("events/s"); ax.set_title(f"mean {mean_rate:.0f}/s, peak {peak_rate}/s");
'''),
    ("md", r'''
## Sizing for the mean fails

The bursts: `arrivals="onoff"` with `burst=(2.0, 6.0)` alternates "on" periods of 2 s and
quiet periods of 6 s on average, keeping the hour's mean rate; so during a burst events
arrive at four times the hour's rate. A consumer twice as fast as the daily mean, on that
traffic (the dashed line is the fluid model: the backlog the hourly rates alone would build,
without bursts or randomness):
'''),
    ("code", r'''
day = dict(arrivals="onoff", burst=(2.0, 6.0), duration=24 * HOUR, progress=False)
naive = es.sim.simulate_lag(profile, service_rate=2 * mean_rate, seed=SEED, **day)
print(f"p99 time lag {naive['p99_time_lag']:.1f} s, max offset lag {naive['max_offset_lag']:.0f} events")
es.plot.plot_lag_theory(naive, schedule=profile);
'''),
    ("md", r'''
## The smallest consumer that meets the target

`es.sim.required_capacity` searches the consumer rate by bisection. Every candidate runs
the same `REPLICATIONS` random days (common random numbers), so the comparison between
candidates is fair and the search is monotone; the answer comes with the share of days
that met the target and its confidence interval.
'''),
    ("code", r'''
one_consumer = es.sim.required_capacity(
    profile, target_p99_time_lag=TARGET_P99_S, replications=REPLICATIONS, seed=SEED, **day)
one_consumer
'''),
    ("code", r'''
print(f"one consumer must apply {one_consumer.value:.0f} events/s: "
      f"{one_consumer.value / mean_rate:.1f}x the daily mean, {one_consumer.value / peak_rate:.1f}x the peak")
es.sim.simulate_lag(profile, service_rate=one_consumer.value, seed=SEED, **day).plot();
'''),
    ("md", r'''
## Explore the peak

The lag explorer simulates one burst on top of a steady rate, live: drag the sliders and
the plot (offset and time lag, with the fluid model dashed) and the summary follow. It
starts at the evening peak rate with one burst of four times the rate lasting **30 s**,
against the consumer rate found above. The sizing assumed bursts of about 2 s; a 30 s one
outruns the consumer for long enough to blow past the target. A sizing is only as good as
its traffic model: measure your real bursts (notebook 01's event-rate plot, or
`simulate_lag(timestamps=store)` to replay recorded arrivals). Try a burst length of 5 s,
halve the consumer rate, or split the work over several consumers and partitions.
'''),
    ("code", r'''
explorer = es.widgets.lag_explorer(producer_rate=peak_rate, burst_size=4.0, burst_length=30.0,
                        consumer_rate=round(one_consumer.value), duration=300.0, seed=SEED)
explorer
'''),
    ("md", r'''
The sliders can be set from code too; the explorer's `result` is the `LagResult` behind the
plot:
'''),
    ("code", r'''
sized = explorer.result["p99_time_lag"]
explorer.controls["consumer_rate"].value = round(one_consumer.value / 2)
halved = explorer.result["p99_time_lag"]
print(f"p99 time lag at the peak: {sized:.2f} s at {one_consumer.value:.0f} events/s, {halved:.2f} s at half that")
'''),
    ("md", r'''
## Or: how many consumers?

A single consumer may not get that fast. With the stream split into partitions (each
order's events stay in order within one partition), several consumers share the work. Say
one consumer applies 40 events/s and the topic has 12 partitions: how many consumers?
'''),
    ("code", r'''
scale_out = es.sim.required_capacity(
    profile, target_p99_time_lag=TARGET_P99_S, vary="consumers", service_rate=40, partitions=12,
    replications=REPLICATIONS, seed=SEED, **day)
print(f"{scale_out.value:.0f} consumers of 40 events/s over 12 partitions "
      f"({scale_out.fraction_meeting:.0%} of days meet the target)")
'''),
    ("md", r'''
## Queueing theory as a sanity check

For steady Poisson traffic at the **peak** rate, an M/M/1 queue gives the time lag in closed
form. Bursts make real traffic worse than Poisson, so the simulated answer should need at
least the consumer rate that theory needs for the peak alone.
'''),
    ("code", r'''
def theory_p99(rate):
    return es.sim.theory.mm1_latency_quantile(0.99, arrival_rate=peak_rate, service_rate=rate)

candidates = np.linspace(peak_rate * 1.05, peak_rate * 4, 400)
theory_rate = next(r for r in candidates if theory_p99(r) <= TARGET_P99_S)
print(f"theory (Poisson at the peak): {theory_rate:.0f} events/s; simulation with bursts: {one_consumer.value:.0f} events/s")
'''),
    ("md", r'''
## Exercise

Marketing plans a campaign that raises every hour of the profile by 50 %. What consumer
rate is needed now? The reference answer reruns `required_capacity` on the scaled profile;
the check verifies the answer meets the target and that 10 % less does not.
'''),
    ("code", r'''
campaign = [(start, rate * 1.5) for start, rate in profile]
needed = es.sim.required_capacity(campaign, target_p99_time_lag=TARGET_P99_S, replications=REPLICATIONS,
                                  seed=SEED, **day).value
round(needed)
'''),
    ("code", r'''
# Check: simulate the same days at your rate and at 10 % less.
def share_meeting(rate):
    runs = es.sim.simulate_lag(campaign, service_rate=rate, replications=REPLICATIONS, seed=SEED, **day).to_polars("runs")
    return (runs["p99_time_lag"] <= TARGET_P99_S).mean()

assert share_meeting(needed) >= 0.9, f"{needed:.0f} events/s meets the target on only {share_meeting(needed):.0%} of days"
assert share_meeting(needed * 0.9) < 0.9, f"{needed * 0.9:.0f} events/s would do too: the answer is not the smallest"
print(f"correct: {needed:.0f} events/s for the campaign (was {one_consumer.value:.0f})")
'''),
    ("md", r'''
## Next

Every `service_rate` in this notebook was a guess. Notebook 10
([forecast vs reality](10_forecast_vs_reality.ipynb)) measures it on a real projection
runner, runs a live pipeline, and checks the forecast against what happened.
'''),
]
