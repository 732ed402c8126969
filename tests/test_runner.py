"""The projection runner: batches, checkpoints committed with the state, restarts, rebuilds."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_readmodels import PROPERTY, Tick, fill_store, new_store, order_histories

import esnotebook as es
from esnotebook.readmodels import OrderSummary, OrderSummaryFrame
from esnotebook.runner import ProjectionRunner
from esnotebook.runner_targets import MemoryTarget, ParquetTarget

FORMS = [OrderSummary, OrderSummaryFrame]

HISTORY = [
    ("order-1", "OrderPlaced", {"order_id": "1", "customer": "ada"}),
    ("order-2", "OrderPlaced", {"order_id": "2", "customer": "bob"}),
    ("order-1", "ItemAdded", {"order_id": "1", "sku": "tea", "quantity": 2, "price": 300}),
    ("order-2", "ItemAdded", {"order_id": "2", "sku": "mug", "quantity": 1, "price": 900}),
    ("order-1", "ItemRemoved", {"order_id": "1", "sku": "tea", "quantity": 1}),
    ("order-1", "PaymentReceived", {"order_id": "1", "amount": 300}),
    ("order-2", "OrderCancelled", {"order_id": "2", "reason": "changed mind"}),
    ("order-1", "OrderShipped", {"order_id": "1"}),
]


def parquet_store(tmp_path, history=HISTORY):
    store = es.ParquetEventStore(tmp_path / "store", durable=False, clock=Tick())
    fill_store(store, history)
    return store


def expected(store) -> pl.DataFrame:
    return OrderSummaryFrame().rebuild(store.scan())


@pytest.mark.parametrize("form", FORMS)
def test_step_applies_one_batch_and_catch_up_reaches_the_head(form):
    """step(n) consumes n positions and commits them with the checkpoint; catch_up runs to head."""
    store = new_store(HISTORY)
    runner = ProjectionRunner(store, form(), batch_size=3)
    assert runner.step(2) == 2 and runner.checkpoint == 2
    assert runner.state["order_id"].to_list() == ["1", "2"]
    assert runner.catch_up() == 6
    assert runner.checkpoint == 8 and runner.lag == 0
    assert runner.state.equals(expected(store))
    assert runner.step() == 0  # caught up: nothing to do
    assert runner.to_pandas()["total"].tolist() == [300, 900]


@pytest.mark.parametrize("form", FORMS)
def test_catch_up_respects_max_events(form):
    """catch_up(max_events=k) consumes at most k positions."""
    runner = ProjectionRunner(new_store(HISTORY), form(), batch_size=2)
    assert runner.catch_up(max_events=5) == 5
    assert runner.checkpoint == 5


@settings(PROPERTY, max_examples=15)
@given(order_histories(), st.integers(1, 7))
def test_incremental_steps_equal_a_rebuild_for_both_forms(history, batch):
    """Stepping a runner batch by batch gives the frame of a full rebuild, in both forms."""
    store = new_store(history)
    want = expected(store)
    for form in FORMS:
        runner = ProjectionRunner(store, form(), batch_size=batch)
        runner.catch_up()
        assert runner.state.equals(want)


@pytest.mark.parametrize("form", FORMS)
def test_restart_from_the_persisted_snapshot_applies_only_new_events(tmp_path, form):
    """A new runner on a Parquet target resumes from the committed state and checkpoint and
    reads only the events after it."""
    store = parquet_store(tmp_path, HISTORY[:5])
    first = ProjectionRunner(store, form(), target="parquet")
    first.catch_up()
    fill_store(store, HISTORY[5:])
    second = ProjectionRunner(store, form(), target="parquet")
    assert second.checkpoint == 5
    assert second.catch_up() == 3
    assert second.state.equals(expected(store))
    fresh = ProjectionRunner(store, form(), target="parquet", checkpoint="reset")
    assert fresh.checkpoint == 0 and fresh.state.height == 0


@pytest.mark.parametrize("form", FORMS)
def test_a_crash_between_state_and_manifest_neither_skips_nor_double_applies(tmp_path, form, monkeypatch):
    """If the process dies after writing the new state file but before the manifest swap, a
    restart sees the old state with the old checkpoint, and catching up gives the exact result.
    Loading removes nothing; the restarted runner's first commit removes the leftover."""
    store = parquet_store(tmp_path)
    runner = ProjectionRunner(store, form(), target="parquet", batch_size=3)
    runner.step()
    from esnotebook import _atomic

    real = _atomic.write_json

    def crash(*args, **kwargs):
        raise OSError("power cut")

    monkeypatch.setattr(_atomic, "write_json", crash)
    with pytest.raises(OSError, match="power cut"):
        runner.step()
    monkeypatch.setattr(_atomic, "write_json", real)
    restarted = ProjectionRunner(store, form(), target="parquet", batch_size=3)
    assert restarted.checkpoint == 3
    assert restarted.state.equals(OrderSummaryFrame().rebuild(store.scan(to_position=3)))
    assert len(list(restarted.target.path.glob("state-*.parquet"))) == 2  # loading deletes nothing
    restarted.step()
    assert len(list(restarted.target.path.glob("state-*.parquet"))) == 1  # the commit tidied
    restarted.catch_up()
    assert restarted.state.equals(expected(store))


@pytest.mark.parametrize("form", FORMS)
def test_a_failed_commit_keeps_the_committed_state_in_memory(tmp_path, monkeypatch, form):
    """When a commit fails, the runner's state and checkpoint stay at the last commit."""
    store = parquet_store(tmp_path)
    runner = ProjectionRunner(store, form(), target="parquet", batch_size=4)
    runner.step()
    before = runner.state
    monkeypatch.setattr(runner.target, "commit", lambda unit: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        runner.step()
    assert runner.checkpoint == 4 and runner.state.equals(before)
    monkeypatch.undo()
    runner.catch_up()
    assert runner.state.equals(expected(store))


@pytest.mark.parametrize("form", FORMS)
def test_rebuild_in_place_resets_and_replays_everything(tmp_path, form):
    """rebuild() truncates the target, resets the checkpoint and replays from position 0."""
    store = parquet_store(tmp_path)
    runner = ProjectionRunner(store, form(), target="parquet")
    runner.catch_up()
    assert runner.rebuild(chunk_size=3) == 8
    assert runner.checkpoint == 8 and runner.state.equals(expected(store))
    # three chunks, each committed and recorded
    assert runner.metrics.tail(3)["checkpoint"].to_list() == [3, 6, 8]


@pytest.mark.parametrize("form", FORMS)
def test_shadow_rebuild_serves_the_old_state_until_one_atomic_swap(tmp_path, form):
    """During a shadow rebuild readers of the target still see the old commit; the new one
    appears in a single swap at the end."""
    store = parquet_store(tmp_path, HISTORY[:4])
    runner = ProjectionRunner(store, form(), target="parquet", batch_size=2)
    runner.catch_up()
    fill_store(store, HISTORY[4:])
    seen = []
    reader = ParquetTarget(runner.target.path)
    original = runner._apply_range

    def spying(state, start, end, *, strict):
        seen.append(reader.load().checkpoint)
        return original(state, start, end, strict=strict)

    runner._apply_range = spying
    runner.rebuild(mode="shadow", chunk_size=3)
    assert seen == [4, 4, 4]  # every chunk of the rebuild ran while the old commit served
    assert reader.load().checkpoint == 8
    assert runner.state.equals(expected(store))


def test_shadow_rebuild_that_fails_keeps_the_old_state(tmp_path):
    """A strict shadow rebuild that fails leaves the serving state and checkpoint untouched."""
    store = parquet_store(tmp_path)
    runner = ProjectionRunner(store, OrderSummary(), target="parquet")
    runner.catch_up()
    before = runner.state
    fill_store(store, [("order-7", "ItemAdded", {"order_id": "7", "sku": "x", "quantity": 1, "price": 1})])
    from esnotebook.projections import ProjectionError

    with pytest.raises(ProjectionError, match="position 9"):
        runner.rebuild(mode="shadow", strict=True)
    assert runner.checkpoint == 8 and runner.state.equals(before)
    assert ProjectionRunner(store, OrderSummary(), target="parquet").checkpoint == 8


def test_streaming_engine_gives_the_same_frame():
    """engine='streaming' (larger-than-memory rebuilds) gives the in-memory engine's frame."""
    store = new_store(HISTORY)
    a = ProjectionRunner(store, OrderSummaryFrame(), engine="streaming")
    b = ProjectionRunner(store, OrderSummaryFrame(), engine="in-memory")
    a.rebuild()
    b.rebuild()
    assert a.state.equals(b.state)


def test_memory_target_object_carries_state_to_a_new_runner():
    """Passing the same MemoryTarget to a new runner resumes where the last one stopped."""
    store = new_store(HISTORY)
    target = MemoryTarget()
    ProjectionRunner(store, OrderSummary(), target=target).catch_up(max_events=4)
    again = ProjectionRunner(store, OrderSummary(), target=target)
    assert again.checkpoint == 4
    again.catch_up()
    assert again.state.equals(expected(store))


def test_bad_arguments_name_what_was_wrong():
    """Bad arguments raise errors naming the argument, the expectation and the value."""
    store = new_store(HISTORY)
    with pytest.raises(ValueError, match=r"'batch_size' must be an int >= 1 \(got 0\)"):
        ProjectionRunner(store, OrderSummary(), batch_size=0)
    with pytest.raises(ValueError, match="'on_error' must be one of"):
        ProjectionRunner(store, OrderSummary(), on_error="ignore")
    with pytest.raises(ValueError, match="ParquetEventStore.*InMemoryEventStore"):
        ProjectionRunner(store, OrderSummary(), target="parquet")
    with pytest.raises(TypeError, match="Projection or VectorisedProjection"):
        ProjectionRunner(store, object())
    with pytest.raises(ValueError, match=r"'n' must be an int >= 1 \(got -1\)"):
        ProjectionRunner(store, OrderSummary()).step(-1)
    with pytest.raises(ValueError, match="'mode' must be"):
        ProjectionRunner(store, OrderSummary()).rebuild(mode="fast")


def test_runner_html_is_compact_and_escaped():
    """The runner's HTML names the projection and status, with text escaped."""
    store = new_store(HISTORY)
    runner = ProjectionRunner(store, OrderSummary())
    runner.catch_up()
    page = runner._repr_html_()
    assert "OrderSummary" in page and "checkpoint" in page and "<script" not in page
    assert "OK" in page


@pytest.mark.parametrize("name", ["RevenueByDaySku", "CustomerValue"])
def test_runner_steps_ordered_vectorised_projections_like_one_fold(name):
    """The other shipped read models run under the runner too: steps equal one fold."""
    import esnotebook.readmodels as rm

    store = new_store(HISTORY)
    p = getattr(rm, name)()
    runner = ProjectionRunner(store, p, batch_size=3)
    runner.catch_up()
    assert runner.state.equals(p.run(p.initial(), store.scan()))


def test_default_vectorised_rebuild_is_one_fold_over_the_whole_store():
    """With no chunk_size, an in-place vectorised rebuild folds every event at once (one
    commit, one metrics row); chunking is opt-in and gives the same frame."""
    store = new_store(HISTORY)
    one = ProjectionRunner(store, OrderSummaryFrame())
    assert one.rebuild() == 8
    assert one.metrics.height == 1 and one.metrics["applied"].item() == 8
    chunked = ProjectionRunner(store, OrderSummaryFrame())
    chunked.rebuild(chunk_size=3)
    assert chunked.metrics.height == 3
    assert chunked.state.equals(one.state) and one.state.equals(expected(store))


@PROPERTY
@given(order_histories(max_orders=8), st.integers(1, 12))
def test_a_rebuild_of_a_stream_keyed_projection_goes_range_by_range(history, per_range):
    """A projection keyed by stream is rebuilt one range of stream numbers at a time (memory
    bounded by the range); the ranges stacked give the frame of one fold over every event."""
    import esnotebook.runner as runner_module

    store = new_store(history)
    whole = OrderSummaryFrame().run(OrderSummaryFrame().initial(), store.scan(with_stream_number=True))
    saved = runner_module.STREAM_RANGE_EVENTS
    runner_module.STREAM_RANGE_EVENTS = per_range
    try:
        ranged = ProjectionRunner(store, OrderSummaryFrame())
        assert ranged.rebuild() == store.head_position
    finally:
        runner_module.STREAM_RANGE_EVENTS = saved
    assert ranged.state.equals(OrderSummaryFrame().view(whole))
    assert ranged.checkpoint == store.head_position and ranged.metrics.height == 1


def test_a_range_by_range_rebuild_dead_letters_a_poison_event_and_goes_on(monkeypatch):
    import esnotebook.runner as runner_module

    class Fussy(OrderSummaryFrame):
        def run(self, state, events, **kwargs):
            if events.lazy().filter(pl.col("sku") == "poison").collect().height:
                raise ValueError("cannot price <poison>")
            return super().run(state, events, **kwargs)

    monkeypatch.setattr(runner_module, "STREAM_RANGE_EVENTS", 2)
    store = new_store(HISTORY)
    fill_store(store, [("order-3", "OrderPlaced", {"order_id": "3", "customer": "cy"}),
                       ("order-3", "ItemAdded", {"order_id": "3", "sku": "poison", "quantity": 1, "price": 1})])  # fmt: skip
    runner = ProjectionRunner(store, Fussy())
    runner.rebuild()
    dead = runner.dead_letters.to_polars()
    assert dead["position"].to_list() == [store.head_position]
    assert runner.state["order_id"].to_list() == expected(store)["order_id"].to_list()


def test_a_handler_batch_that_fails_midway_puts_back_the_rows_it_changed():
    """A handler batch applies to the committed rows in place, so a batch that fails after
    changing some (strict mode) must put them back: the state stays at the last commit."""

    class PoisonPill(OrderSummary):
        def on_ItemAdded(self, row, event):
            if event.data["sku"] == "poison":
                raise ValueError("poison")
            return super().on_ItemAdded(row, event)

    store = new_store([
        ("order-1", "OrderPlaced", {"order_id": "1", "customer": "ada"}),
        ("order-1", "ItemAdded", {"order_id": "1", "sku": "tea", "quantity": 2, "price": 300}),
        ("order-2", "OrderPlaced", {"order_id": "2", "customer": "bob"}),
        ("order-1", "ItemAdded", {"order_id": "1", "sku": "poison", "quantity": 1, "price": 1}),
    ])  # fmt: skip
    runner = ProjectionRunner(store, PoisonPill(), on_error="raise")
    runner.step(1)
    with pytest.raises(es.ProjectionError, match="position 4"):
        runner.step(3)  # changes order-1, adds order-2, then fails
    assert runner.checkpoint == 1
    p = OrderSummary()
    assert runner.full_state.equals(p.to_frame(p.apply_all(store.read_all(to_position=1))))


def test_handler_batches_leave_the_garbage_collector_as_they_found_it():
    """The handler form pauses the cyclic GC during a batch and restores it, even when the
    batch fails; a GC the caller disabled stays disabled."""
    import gc

    class Broken(OrderSummary):
        def on_ItemAdded(self, row, event):
            raise RuntimeError("boom")

    store = new_store(HISTORY)
    assert gc.isenabled()
    ProjectionRunner(store, OrderSummary()).catch_up()
    assert gc.isenabled()
    with pytest.raises(Exception, match="boom"):
        ProjectionRunner(store, Broken(), on_error="raise").catch_up()
    assert gc.isenabled()
    gc.disable()
    try:
        ProjectionRunner(store, OrderSummary()).catch_up()
        assert not gc.isenabled()
    finally:
        gc.enable()


REBUILD_PATHS = [  # (form, mode, chunk_size, events per stream range): every way rebuild goes
    pytest.param(OrderSummary, "in_place", 3, None, id="handler-chunks"),
    pytest.param(OrderSummaryFrame, "in_place", 3, None, id="vectorised-chunks"),
    pytest.param(OrderSummary, "shadow", 3, None, id="shadow"),
    pytest.param(OrderSummaryFrame, "in_place", None, 3, id="range-by-range"),
    pytest.param(OrderSummaryFrame, "shadow", None, 3, id="range-by-range-shadow"),
]
MODEL = es.sim.RebuildCosts(apply_cost=10.0, rebuild_overhead=5.0)  # 85 s for HISTORY's 8


def shown(err: str) -> list[tuple[float, int]]:
    """(events done, the model's seconds left) of every bar drawn that shows the model,
    each checked to stand beside tqdm's own elapsed<remaining."""
    import re

    bar = r"\| *([\d.]+)/8\.00 \[(\d\d:\d\d)<([?\d:]+), [^,]+, model (\d\d):(\d\d) left\]"
    found = re.findall(bar, err)
    return [(float(done), int(m) * 60 + int(s)) for done, _, _, m, s in found]


@pytest.mark.parametrize(("form", "mode", "chunk_size", "per_range"), REBUILD_PATHS)
def test_a_rebuild_bar_shows_the_models_time_left_beside_tqdms(
    monkeypatch, capsys, form, mode, chunk_size, per_range
):
    """Given calibrated costs, the bar of every rebuild path shows the model's time left,
    apply_cost * events still to go, from before the first chunk down to 00:00, beside
    tqdm's rate-based ETA; the last metrics row records the model's whole forecast."""
    import esnotebook.runner as runner_module

    if per_range is not None:
        monkeypatch.setattr(runner_module, "STREAM_RANGE_EVENTS", per_range)
    monkeypatch.setenv("TQDM_DISABLE", "")
    runner = ProjectionRunner(new_store(HISTORY), form())
    runner.rebuild(mode=mode, chunk_size=chunk_size, progress=True, costs=MODEL)
    err = capsys.readouterr().err.replace("\r", "\n")
    seen = shown(err)
    assert seen[0] == (0.0, 80) and seen[-1] == (8.0, 0)
    assert len({done for done, _ in seen}) >= 3  # it moved chunk by chunk
    assert all(left == 10 * (8 - done) for done, left in seen)
    assert runner.metrics["rebuild_predicted_s"][-1] == 85.0


def test_a_real_rebuild_records_its_forecast_and_what_it_took():
    """A rebuild's last metrics row holds the model's forecast and the whole rebuild's
    seconds; every other row holds neither. What always holds, however fast the machine:
    the whole rebuild took at least its chunks' seconds together; a one-chunk fit predicts
    at most what the rebuild then took (it is fitted on that chunk, which ends before)."""
    store = new_store(HISTORY * 50)
    runner = ProjectionRunner(store, OrderSummary())
    runner.step(10)
    runner.rebuild(chunk_size=64)
    rows = runner.metrics.tail(-1)  # the rebuild's: 400 events in chunks of 64
    assert rows.height == 7 and rows["rebuild_predicted_s"].null_count() == 6
    predicted, actual = rows.select("rebuild_predicted_s", "rebuild_actual_s").row(-1)
    assert 0 < predicted < float("inf") and actual >= rows["seconds"].sum()
    assert runner.metrics.head(1)["rebuild_actual_s"].is_null().all()  # a step is not a rebuild
    one = ProjectionRunner(store, OrderSummary())
    one.rebuild(chunk_size=400)
    columns = ("rebuild_predicted_s", "rebuild_actual_s", "seconds")
    predicted, actual, seconds = one.metrics.select(columns).row(0)
    assert 0 < predicted <= actual and seconds <= actual
    shadow = ProjectionRunner(store, OrderSummaryFrame())
    shadow.rebuild(mode="shadow", chunk_size=64, costs=MODEL)
    predicted, actual, seconds = shadow.metrics.select(columns).row(0)
    assert predicted == 5.0 + 10.0 * 400 and actual == seconds  # the costs given; one row for all


def test_rebuild_costs_must_be_a_calibrated_model():
    """costs needs apply_cost and rebuild_overhead in seconds >= 0, and says so."""
    runner = ProjectionRunner(new_store(HISTORY), OrderSummary())
    for bad in (0.5, es.sim.RebuildCosts(apply_cost=-1.0)):
        with pytest.raises(TypeError, match="'costs' must have apply_cost and rebuild_overhead"):
            runner.rebuild(costs=bad)
    assert runner.checkpoint == 0  # nothing was touched
