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
applies. The times are CPU seconds (`profile.timer`): steady on a busy machine, where wall
time also counts the turns other programs take on the cores.
'''),
    ("code", r'''
projection = es.OrderSummary()
profile = es.sim.measure_consumer(es.InMemoryEventStore(), projection, appends="between",
                                  batch_size=10, seed=SEED)
capacity = profile.rate(BATCH_SIZE)
print(f"one event alone: {profile.single * 1e3:.3f} ms of CPU, of which {profile.batch_overhead / profile.single:.0%} "
      f"is the step's fixed cost; each further event in a step adds {profile.mean * 1e6:.0f} µs")
print(f"capacity at batch_size={BATCH_SIZE}: {capacity:,.0f} events/s")
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
`simulate_lag(service=profile)` draws each step's fixed cost from the measured ones, so the
forecast inherits the measured variability.
'''),
    ("code", r'''
quarter = DURATION / 4
setups = {f"utilisation {u:g}": u * capacity for u in UTILISATIONS}
setups["burst"] = [(0.0, 0.5 * capacity), (quarter, BURST * capacity), (2 * quarter, 0.5 * capacity)]
shown = ["mean_offset_lag", "p95_offset_lag", "max_offset_lag", "p95_time_lag"]
forecasts = {
    name: es.sim.simulate_lag(rate, service=profile, batch_size=BATCH_SIZE, duration=DURATION,
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
part of what gets measured. A run stops by itself: after `DURATION` seconds of producing,
the consumer gets as long again to catch up.
'''),
    ("code", r'''
runs = {
    name: es.live.run(es.InMemoryEventStore(), projection, arrival_rate=rate, duration=DURATION,
                      batch_size=BATCH_SIZE, seed=SEED, profile=profile)
    for name, rate in setups.items()
}
runs["burst"]
'''),
    ("md", r'''
## 4. Predicted beside measured

`compare` replays each run's *recorded* arrivals through the simulator with the measured
profile, so the producer's randomness is the same on both sides and only the consumer is
forecast. `error` is `predicted / measured - 1`; `drain_time` (how long the backlog took to
clear after the burst) exists only for the burst.
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
Where they differ, look first at the amount of work. The calibration timed the runner's CPU
with nothing else in the interpreter; a live run shares the cores with a producer thread
(each append holds the interpreter lock, so the runner waits), with the garbage collector and
with the other programs on the machine. Each run records every step that applied events: its
start and end (`run.busy`) and its CPU seconds (`run.step_cpu`); `run.slowdown` is the steps'
wall time over their CPU time (1 when the consumer had a core to itself). `compare` already
runs the forecast at that slowdown (`contention="measured"`); the table sets the live
consumer's steps and busy share beside the forecast's:
'''),
    ("code", r'''
rows = []
for name, run in runs.items():
    per_step = int(np.isfinite(run.done).sum()) / len(run.step_cpu)
    rows.append({
        "setup": name,
        "events per step": per_step,
        "live CPU ms per step": 1e3 * float(np.mean(run.step_cpu)),
        "calibrated CPU ms": 1e3 * (profile.batch_overhead + per_step * profile.mean),
        "slowdown": run.slowdown,
        "live busy": run["utilisation"],
        "forecast busy": run.forecast(seed=SEED)["utilisation"],
    })
work = pl.DataFrame(rows)
work
'''),
    ("code", r'''
mean_lag = table.filter(pl.col("metric") == "mean_offset_lag")
errors = dict(zip(mean_lag["setup"], mean_lag["error"]))
for row in work.iter_rows(named=True):
    name, error = row["setup"], errors[row["setup"]]
    charged = row["forecast busy"] / row["live busy"]
    print(f"{name}: live steps used {row['live CPU ms per step'] / row['calibrated CPU ms']:.2f}x the calibrated CPU "
          f"and took {row['slowdown']:.2f}x their CPU time in wall time; the forecast kept the consumer busy "
          f"{row['forecast busy']:.0%} of the time, the live one was busy {row['live busy']:.0%}; "
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

* **the producer's share of the machine**: `profile.append_cost` is the CPU one append takes;
  at the burst's rate that is a share of one core the runner cannot use;
* **pauses**: garbage-collection pauses and the other programs on this machine stop the
  consumer now and then; the one-event steps the profile draws from contain the pauses seen
  during calibration, not those of the live run;
* **the producer's luck**: the forecasts of section 2 drew their own Poisson arrivals and
  knew nothing of the slowdown, while `compare` replays the recorded arrivals at the measured
  slowdown. In numbers, for the mean offset lag (`contention="none"`: the recorded arrivals
  with the profile as calibrated):
'''),
    ("code", r'''
pl.DataFrame({
    "setup": mean_lag["setup"],
    "forecast, its own arrivals": [forecasts[name]["mean_offset_lag"] for name in mean_lag["setup"]],
    "recorded arrivals, no contention": [runs[name].forecast(seed=SEED, contention="none")["mean_offset_lag"]
                                         for name in mean_lag["setup"]],
    "recorded arrivals, measured contention": mean_lag["predicted"],
    "measured": mean_lag["measured"],
})
'''),
    ("md", r'''
Rerun the notebook: the numbers move, and the sentences with them.
'''),
    ("md", r'''
## Exercise

During the burst the producer outruns a consumer stepping `BATCH_SIZE` events at a time.
Batching spreads each step's fixed cost over more events. **What is the smallest batch size
whose capacity (by the profile) is above the burst's rate?** Use `profile.rate(batch_size)`.
The reference answer is filled in; the live run after it shows what that batch size does to
the burst for real, and the check verifies the answer is the smallest that keeps up.
'''),
    ("code", r'''
burst_rate = BURST * capacity
keeps_up = next(b for b in range(1, 10_000) if profile.rate(b) > burst_rate)
keeps_up
'''),
    ("code", r'''
batched = es.live.run(es.InMemoryEventStore(), projection, arrival_rate=setups["burst"], duration=DURATION,
                      batch_size=keeps_up, seed=SEED, profile=profile)
pl.concat([runs["burst"].compare(seed=SEED).select(pl.lit(BATCH_SIZE).alias("batch_size"), pl.all()),
           batched.compare(seed=SEED).select(pl.lit(keeps_up).alias("batch_size"), pl.all())])
'''),
    ("code", r'''
# Check: the profile's capacity at your batch size beats the burst, and one less does not.
assert profile.rate(keeps_up) > burst_rate, (
    f"at batch_size={keeps_up} the consumer applies {profile.rate(keeps_up):,.0f} events/s, "
    f"below the burst's {burst_rate:,.0f}")
assert keeps_up == 1 or profile.rate(keeps_up - 1) <= burst_rate, (
    f"batch_size={keeps_up - 1} keeps up too: the answer is not the smallest")
print(f"correct: batch_size={keeps_up} applies {profile.rate(keeps_up):,.0f} events/s "
      f"against a burst of {burst_rate:,.0f}")
'''),
]
