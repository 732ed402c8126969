"""10: forecast vs reality: calibrate on the real runtime, predict, run live, compare."""

CELLS = [
    ("md", r'''
# 10 · Forecast vs reality

Notebook 07 sized consumers with `service_rate`, a number we chose. A forecast is only as
good as its inputs, and it has earned trust only once it has been checked against what then
happened. This notebook closes that loop on the real runtime:

1. **calibrate**: time a real `ProjectionRunner` step by step (`es.sim.measure_consumer`) and
   get its `ServiceProfile`: what each event costs, what every step costs on top of that
   (reading, the checkpoint commit, the metrics), and how much it varies;
2. **predict**: give the profile to `es.sim.simulate_lag(service=profile)` in place of a
   guessed `service_rate`;
3. **run live**: `es.live.run` appends order events into a real store at a seeded rate while a
   real runner consumes them with real checkpoints, and records when every event arrived and
   when it was applied;
4. **compare**: `LiveResult.compare()` simulates the very arrivals that were recorded, with the
   measured profile, and puts predicted beside measured.

A live run measures this machine as it is at that moment, other programs included, so the
numbers change from run to run. Every sentence below that interprets them is computed from
them.
'''),
    ("params", r'''
DURATION = 3.0              # seconds each live run's producer runs
BATCH_SIZE = 1              # events per runner step
UTILISATIONS = (0.5, 0.8)   # steady arrival rates, as shares of the consumer's capacity
BURST = 1.5                 # the burst's rate, as a multiple of the capacity
SEED = 0
'''),
    ("code", r'''
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

import esnotebook as es

pl.Config.set_tbl_rows(20)  # the comparison tables below have 15 rows
'''),
    ("md", r'''
## 1. Calibrate: what does one event cost?

`measure_consumer` runs the `OrderSummary` projection in a real runner and times every step.
With `appends="between"` each step's events are appended just before it, as in a live
pipeline (so a step also pays for reading events that were just written). Steps of one event
give the cost of an event that comes alone; steps of ten give, by difference, what each
further event adds. What is left is the **fixed cost of a step**, paid however many events it
applies. The costs are CPU seconds (`profile.timer`), steady on a busy machine;
`profile.as_wall()` turns them into the wall seconds a pipeline waits, by `wall_ratio`: how
much longer the timed steps took on the clock than on the CPU. This calibration times the
consumer alone, to size the setups below; each live run calibrates again with its producer
running.
'''),
    ("code", r'''
projection = es.OrderSummary()
profile = es.sim.measure_consumer(es.InMemoryEventStore(), projection, appends="between",
                                  batch_size=10, seed=SEED)
# Capacity: the rate a consumer sustains working through a backlog (full steps, nothing
# fresh to read at each one: profile.stale_saving is what that saves).
wall = profile.as_wall()
capacity = wall.rate(BATCH_SIZE)
print(f"one event alone: {profile.single * 1e3:.3f} ms of CPU, of which {profile.batch_overhead / profile.single:.0%} "
      f"is the step's fixed cost; each further event in a step adds {profile.mean * 1e6:.0f} µs")
print(f"wall / CPU time of the timed steps: {profile.wall_ratio:.2f}; "
      f"capacity at batch_size={BATCH_SIZE}: {capacity:,.0f} events/s")
profile
'''),
    ("md", r'''
Per event type, where the costs differ (one-event steps only):
'''),
    ("code", r'''
profile.by_type.with_columns((pl.col("single") * 1e3).alias("ms per step"))
'''),
    ("md", r'''
## 2. Predict, before running anything

Three setups: a steady producer at half and at four fifths of the capacity, and a burst
above capacity: half the capacity, then `BURST` times it for the second quarter of the run,
then half again (the second half leaves the backlog time to drain).
`simulate_lag(service=wall)` draws each step's fixed cost from the measured ones, so the
forecast inherits the measured variability.
'''),
    ("code", r'''
quarter = DURATION / 4
setups = {f"utilisation {u:g}": u * capacity for u in UTILISATIONS}
setups["burst"] = [(0.0, 0.5 * capacity), (quarter, BURST * capacity), (2 * quarter, 0.5 * capacity)]
shown = ["mean_offset_lag", "p95_offset_lag", "max_offset_lag", "p95_time_lag"]
forecasts = {
    name: es.sim.simulate_lag(rate, service=wall, batch_size=BATCH_SIZE, duration=DURATION,
                              replications=20, progress=False, seed=SEED)
    for name, rate in setups.items()
}
pl.DataFrame([{"setup": name, **{m: f[m] for m in shown}} for name, f in forecasts.items()])
'''),
    ("md", r'''
## 3. Run it for real

Each run has a fresh in-memory store, a producer thread appending at the setup's rate and a
consumer thread stepping a real runner. Both share this machine's two cores (and Python's
interpreter lock) with each other and with whatever else is running: that competition is
part of what gets measured. So each run calibrates its own consumer right before it starts,
with a producer thread appending at the run's mean rate while the steps are timed (that
producer's turns at the interpreter are then part of every step's cost); `run.profile` is
that calibration. A run stops by itself: after `DURATION` seconds of producing, the consumer
gets as long again to catch up.
'''),
    ("code", r'''
runs = {
    name: es.live.run(es.InMemoryEventStore(), projection, arrival_rate=rate, duration=DURATION,
                      batch_size=BATCH_SIZE, seed=SEED)
    for name, rate in setups.items()
}
runs["burst"]
'''),
    ("md", r'''
## 4. Predicted beside measured

`compare` replays each run's *recorded* arrivals through the simulator with the run's
profile (in wall seconds), so the producer's randomness is the same on both sides and only
the consumer is forecast. `error` is `predicted / measured - 1`; `drain_time` (how long the
backlog took to clear after the burst) exists only for the burst.
'''),
    ("code", r'''
table = pl.concat([run.compare(seed=SEED).select(pl.lit(name).alias("setup"), pl.all())
                   for name, run in runs.items()])
table
'''),
    ("code", r'''
fig, axes = plt.subplots(len(runs), 1, figsize=(8, 2.6 * len(runs)), sharex=True)
for ax, (name, run) in zip(axes, runs.items()):
    run.plot(ax=ax, seed=SEED)
    ax.set_title(name)
    ax.set_xlabel("")
axes[-1].set_xlabel("time (s)")
fig.tight_layout()
'''),
    ("md", r'''
## 5. What agrees, and what the model leaves out

A forecast is good where its error is small at the tail (p95, max) as well as on average.
The sentences below are written from the table above:
'''),
    ("code", r'''
def verdict(error):
    if not np.isfinite(error):
        return "not comparable"
    if abs(error) <= 0.15:
        return "agrees (within 15 %)"
    return "forecast too high" if error > 0 else "forecast too low"

comparable = table.filter(pl.col("error").is_finite())
agreeing = comparable.filter(pl.col("error").abs() <= 0.15).height
print(f"{agreeing} of {comparable.height} comparable metrics agree within 15 %")
for row in table.iter_rows(named=True):
    if np.isfinite(row["measured"]):
        print(f"{row['setup']:>16} {row['metric']:<16} forecast {row['predicted']:8.3g}  "
              f"measured {row['measured']:8.3g}  {row['error']:+7.0%}  {verdict(row['error'])}")
'''),
    ("md", r'''
Where they differ, look first at the cost of the steps. A run records every step that applied
events (`run.steps`: start, end, events, CPU seconds, whether the consumer had waited for
events before it), and `run.cost_ratio` is their wall time over what the run's profile gives
for the very same steps: 1 when the calibration priced them right, above 1 when the cores
were busier during the run than during the calibration. The busy shares say how much work
the forecast charged against how much the live consumer did:
'''),
    ("code", r'''
work = pl.DataFrame([
    {
        "setup": name,
        "events per step": run.steps["events"].mean(),
        "live ms per step": 1e3 * (run.steps["end"] - run.steps["start"]).mean(),
        "calibrated one-event step (CPU ms)": 1e3 * run.profile.single,
        "cost ratio": run.cost_ratio,
        "live busy": run["utilisation"],
        "forecast busy": run.forecast(seed=SEED)["utilisation"],
    }
    for name, run in runs.items()
])
work
'''),
    ("code", r'''
mean_lag = table.filter(pl.col("metric") == "mean_offset_lag")
errors = dict(zip(mean_lag["setup"], mean_lag["error"]))
for row in work.iter_rows(named=True):
    name, error = row["setup"], errors[row["setup"]]
    charged = row["forecast busy"] / row["live busy"]
    print(f"{name}: the live steps took {row['cost ratio']:.2f}x what the profile priced them at; the forecast kept "
          f"the consumer busy {row['forecast busy']:.0%} of the time, the live one was busy {row['live busy']:.0%}; "
          f"the mean offset lag is forecast {error:+.0%}.")
    if abs(error) <= 0.15:
        print("  -> the mean agrees.")
    elif charged > 1.15 and error > 0:
        print("  -> the model charged more work than the consumer did: that is why its lag is too high.")
    elif charged < 1 / 1.15 and error < 0:
        print("  -> the live consumer did more work than the model charged: that is why the forecast is too low.")
    else:
        print("  -> the amount of work does not explain the gap: it lies in when the work fell "
              "(how events were batched, pauses), not in how much there was.")
'''),
    ("md", r'''
What else the model does not see, and where to look for it:

* **the machine's other work**: the calibration and the run are seconds apart, and the other
  programs on the machine need not have been as busy in both; the cost ratio above says by
  how much that mattered;
* **pauses**: garbage-collection pauses stop the consumer now and then; the one-event steps
  the profile draws from contain the pauses seen during calibration, not those of the run;
* **the producer's luck**: the forecasts of section 2 drew their own Poisson arrivals, while
  `compare` replays the recorded ones.

`forecast(costs="run")` separates the two models: it prices every step at what the run's
steps really cost, so what is left of its error belongs to the queueing model alone. For the
mean offset lag:
'''),
    ("code", r'''
by_costs = pl.DataFrame({
    "setup": mean_lag["setup"],
    "forecast, its own arrivals": [forecasts[name]["mean_offset_lag"] for name in mean_lag["setup"]],
    "forecast, recorded arrivals": mean_lag["predicted"],
    "forecast, the run's step costs": [runs[name].forecast(seed=SEED, costs="run")["mean_offset_lag"]
                                       for name in mean_lag["setup"]],
    "measured": mean_lag["measured"],
})
calibrated = (by_costs["forecast, recorded arrivals"] / by_costs["measured"] - 1).abs().median()
queueing = (by_costs["forecast, the run's step costs"] / by_costs["measured"] - 1).abs().median()
print(f"median error of the mean offset lag: {calibrated:.0%} with the calibration's step costs, "
      f"{queueing:.0%} with the steps' real costs")
if queueing <= calibrated / 2:
    print("-> the queueing model does much better when it knows what the steps cost: most of the gap is the calibration's.")
elif queueing < calibrated:
    print("-> knowing the real step costs closes part of the gap; the queueing model keeps the rest.")
else:
    print("-> knowing the real step costs does not help: the gap is the queueing model's (batching, timing), not the costs'.")
by_costs
'''),
    ("md", r'''
Rerun the notebook: the numbers move, and the sentences with them.
'''),
    ("md", r'''
## Exercise

During the burst the producer outruns a consumer stepping `BATCH_SIZE` events at a time.
Batching spreads each step's fixed cost over more events. **What is the smallest batch size
whose capacity (by the calibration) is above the burst's rate?** Use `wall.rate(batch_size)`.
The reference answer is filled in; the live run after it shows what that batch size does to
the burst for real, and the check verifies the answer is the smallest that keeps up.
'''),
    ("code", r'''
burst_rate = BURST * capacity
keeps_up = next(b for b in range(1, 10_000) if wall.rate(b) > burst_rate)
keeps_up
'''),
    ("code", r'''
batched = es.live.run(es.InMemoryEventStore(), projection, arrival_rate=setups["burst"], duration=DURATION,
                      batch_size=keeps_up, seed=SEED)
pl.concat([runs["burst"].compare(seed=SEED).select(pl.lit(BATCH_SIZE).alias("batch_size"), pl.all()),
           batched.compare(seed=SEED).select(pl.lit(keeps_up).alias("batch_size"), pl.all())])
'''),
    ("code", r'''
# Check: the calibrated capacity at your batch size beats the burst, and one less does not.
assert wall.rate(keeps_up) > burst_rate, (
    f"at batch_size={keeps_up} the consumer applies {wall.rate(keeps_up):,.0f} events/s, "
    f"below the burst's {burst_rate:,.0f}")
assert keeps_up == 1 or wall.rate(keeps_up - 1) <= burst_rate, (
    f"batch_size={keeps_up - 1} keeps up too: the answer is not the smallest")
print(f"correct: batch_size={keeps_up} applies {wall.rate(keeps_up):,.0f} events/s "
      f"against a burst of {burst_rate:,.0f}")
'''),
]
