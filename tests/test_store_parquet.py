"""What only the Parquet store promises: crash safety, one writer, readers in other processes,
compaction, damaged files named, and a folder any Arrow tool can read."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from esnotebook.errors import EventStoreError, StoreCorruptedError, StoreLockedError
from esnotebook.events import NewEvent
from esnotebook.store import ParquetEventStore

sys.path.insert(0, str(Path(__file__).parent))
import _store_writer  # noqa: E402
from _store_writer import order_events, orders_frame  # noqa: E402

WRITER = str(Path(__file__).with_name("_store_writer.py"))


def spawn(*args: object) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, WRITER, *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"writer did not start: {line!r} {proc.stderr.read()}"
    return proc


@pytest.fixture(scope="module")
def forkserver():
    """Writer processes that start in milliseconds: modules are imported once, then forked.

    Each writer is still a separate process that gets SIGKILL, but a kill loop no longer
    pays an interpreter and polars start-up per trial.
    """
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["numpy", "polars", "pyarrow.parquet", "esnotebook", "_store_writer"])
    return ctx


def kill_after(ctx, args: list[object], wait: float) -> None:
    """Start a writer, let it run ``wait`` seconds once its store is open, then SIGKILL it."""
    ready = ctx.Event()
    proc = ctx.Process(target=_store_writer.run, args=([str(a) for a in args], ready))
    proc.start()
    assert ready.wait(60), "writer did not start"
    time.sleep(wait)
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it finished first (the forkserver reaps it): a kill "after the end" is a valid trial
    proc.join()
    assert proc.exitcode in (-signal.SIGKILL, 0)


def check_whole_and_contiguous(store: ParquetEventStore) -> pl.DataFrame:
    """Positions 1..head without gaps or duplicates; every order stream written whole."""
    seen = store.head_position
    df = store.to_polars()  # may include commits made since ``seen``
    assert df.height >= seen
    assert df["position"].to_list() == list(range(1, df.height + 1))
    if df.height == 0:
        return df
    assert df.select(pl.struct("stream_id", "version").is_duplicated().any()).item() is False
    orders = df.filter(pl.col("stream_id").str.starts_with("order-")).group_by("stream_id").agg(
        n=pl.len(), items=pl.col("items").max(), top=pl.col("version").max(), placed=pl.col("version").min()
    )
    partial = orders.filter((pl.col("n") != pl.col("items") + 1) | (pl.col("top") != pl.col("n")) | (pl.col("placed") != 1))
    assert partial.height == 0, f"partial commits visible: {partial}"
    return df


def read_acks(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------------------- crash safety
@pytest.mark.slow
def test_sigkilled_writers_lose_no_acknowledged_append_and_leave_nothing_partial(tmp_path, forkserver):
    """30 writers in turn, each SIGKILLed at a random moment while appending."""
    path, acks_file = tmp_path / "store", tmp_path / "acks.jsonl"
    rng = np.random.default_rng(7)
    in_flight: set[str] = set()
    for trial in range(30):
        kill_after(forkserver, ["append", path, acks_file, trial], rng.uniform(0.0, 0.2))
        store = ParquetEventStore(path)
        df = check_whole_and_contiguous(store)
        acks = read_acks(acks_file)
        if acks:
            # Every acknowledged stream holds exactly the positions and versions it was given
            # (positions of a stream are contiguous: each is written by one commit).
            held = df.group_by("stream_id").agg(
                first=pl.col("position").min(), last=pl.col("position").max(),
                n=pl.len(), top=pl.col("version").max(),
            )  # fmt: skip
            acked = pl.DataFrame(acks).rename({"stream": "stream_id"})
            both = acked.join(held, on="stream_id", how="left", suffix="_held")
            wrong = both.filter(
                (pl.col("first") != pl.col("first_held")).fill_null(True)
                | (pl.col("last") != pl.col("last_held")) | (pl.col("n") != pl.col("n_held"))
                | (pl.col("top") != pl.col("n"))
            )  # fmt: skip
            assert wrong.height == 0, f"acknowledged appends lost or changed: {wrong}"
        # The store holds nothing unacknowledged but, at most, the one commit in flight
        # when this writer died (committed, then killed before it could log the ack).
        acked = {a["stream"] for a in read_acks(acks_file)}
        unacked = set(df["stream_id"].unique()) - acked
        new = unacked - in_flight
        assert all(s.startswith(f"order-{trial}-") for s in new), new
        assert len({s.split(".")[0] for s in new}) <= 1, new
        in_flight |= unacked
    assert len(read_acks(acks_file)) > 0
    # The next writer removes what crashed writers left in _tmp and continues the positions.
    with ParquetEventStore(path) as store:
        head = store.head_position
        (e,) = store.append("after-crashes", [NewEvent("Note", {})])
        assert e.position == head + 1
        assert list((path / "_tmp").iterdir()) == []


# ---------------------------------------------------------------------------- one writer
def test_a_second_writer_in_the_same_process_gets_store_locked_error(tmp_path):
    with ParquetEventStore(tmp_path / "s") as first:
        first.append("s", [NewEvent("A", {})])
        second = ParquetEventStore(tmp_path / "s")
        with pytest.raises(StoreLockedError, match=rf"locked by another writer \(pid {os.getpid()}\).*lock_timeout"):
            second.append("s", [NewEvent("A", {})])
        assert second.head_position == 1  # reading is never blocked
        assert [e.version for e in second.read_stream("s")] == [1]
    second.append("s", [NewEvent("A", {})])  # the lock is free once the first closes
    assert second.stream_version("s") == 2
    second.close()


def test_a_writer_waiting_with_lock_timeout_gives_up_after_it(tmp_path):
    with ParquetEventStore(tmp_path / "s") as first:
        first.append("s", [NewEvent("A", {})])
        waiting = ParquetEventStore(tmp_path / "s", lock_timeout=0.2)
        t0 = time.monotonic()
        with pytest.raises(StoreLockedError, match=r"waited 0.2 s"):
            waiting.append("s", [NewEvent("A", {})])
        assert time.monotonic() - t0 >= 0.2


def _contend(tmp_path, *, hold: float, lock_timeout: float) -> tuple[list[subprocess.Popen], ParquetEventStore]:
    path, go = tmp_path / "store", tmp_path / "go"
    procs = [spawn("contend", path, go, seed, 6, hold, lock_timeout) for seed in (1, 2)]
    go.touch()
    for p in procs:
        p.wait(timeout=60)
    return procs, ParquetEventStore(path)


def test_two_writer_processes_at_once_one_gets_store_locked_error(tmp_path):
    procs, store = _contend(tmp_path, hold=0.5, lock_timeout=0.0)
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 3], [p.stderr.read() for p in procs]
    loser = next(p for p in procs if p.returncode == 3)
    assert "is locked by another writer (pid" in loser.stderr.read()
    check_whole_and_contiguous(store)
    assert [e.version for e in store.read_stream("shared")] == list(range(1, 7))


def test_two_writer_processes_that_wait_for_the_lock_both_commit_without_collisions(tmp_path):
    procs, store = _contend(tmp_path, hold=0.0, lock_timeout=30.0)
    assert [p.returncode for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    check_whole_and_contiguous(store)
    assert [e.version for e in store.read_stream("shared")] == list(range(1, 13))
    assert sorted({e.data["by"] for e in store.read_stream("shared")}) == [1, 2]


# ---------------------------------------------------------------------------- readers
@pytest.mark.slow
def test_readers_in_another_process_never_block_and_see_only_committed_data(tmp_path):
    path = tmp_path / "store"
    writer = spawn("append", path, tmp_path / "acks", 99)
    try:
        follower = ParquetEventStore(path)
        heads = []
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            for store in (follower, ParquetEventStore(path)):
                df = check_whole_and_contiguous(store)
                heads.append(df.height)
                assert sum(1 for _ in store.read_all(to_position=df.height)) == df.height
        assert len(set(heads)) > 3, "the writer made no progress while we read"
        assert writer.poll() is None, "the writer stopped while readers read"
    finally:
        writer.kill()
        writer.wait()


def test_a_store_object_sees_commits_made_through_another_object(tmp_path):
    reader = ParquetEventStore(tmp_path / "s")
    with ParquetEventStore(tmp_path / "s") as writer:
        writer.append("order-1", order_events("1", 2))
        assert reader.stream_version("order-1") == 3 and reader.streams() == ["order-1"]
        writer.append("order-2", order_events("2", 0))
        writer.append("order-1", [NewEvent("OrderShipped", {"order_id": "1"})])
        assert reader.stream_version("order-1") == 4 and reader.streams() == ["order-1", "order-2"]
        assert reader.to_polars()["position"].to_list() == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------------------- compaction
def _many_commits(path: Path, n: int, *, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    with ParquetEventStore(path, durable=False) as store:
        for i in range(n):
            if i % 4 == 3:
                store.append_frame(orders_frame([(f"f{i}", int(rng.integers(0, 4)))]))
            else:
                store.append(f"order-{i}", order_events(str(i), int(rng.integers(0, 6))))
        return store.to_polars(with_metadata=True)


def test_compact_merges_files_without_changing_any_event(tmp_path):
    path = tmp_path / "s"
    before = _many_commits(path, 30)
    with ParquetEventStore(path) as store:
        files = len(list((path / "events").iterdir()))
        assert files == 30
        left = store.compact(max_events=40)
        assert left == len(list((path / "events").iterdir())) < files
        assert_frame_equal(store.to_polars(with_metadata=True), before)
        assert store.compact(max_events=40) == left  # nothing left to merge
        (e,) = store.append("order-x", [NewEvent("OrderPlaced", {"order_id": "x", "customer": "c", "items": 0})])
        assert e.position == before.height + 1
    assert_frame_equal(ParquetEventStore(path).to_polars(with_metadata=True).head(before.height), before)


def test_stream_numbers_survive_reopening_and_compaction(tmp_path):
    path = tmp_path / "s"
    _many_commits(path, 12)
    with ParquetEventStore(path) as store:
        before = store.to_polars(with_stream_number=True)
        store.compact(max_events=50)
        assert_frame_equal(store.to_polars(with_stream_number=True), before)
    reopened = ParquetEventStore(path)
    assert_frame_equal(reopened.to_polars(with_stream_number=True), before)
    assert before["stream_number"].to_list() == [reopened.streams().index(s) for s in before["stream_id"]]


def _as_layout_2(path: Path) -> None:
    """Rewrite a store as layout 2 wrote it: no stream_number column, no checksum in the
    names, no store id, marker version 2."""
    import pyarrow.parquet as pq

    for f in list((path / "events").iterdir()):
        kv = {k: v for k, v in pq.read_metadata(f).metadata.items() if k != b"esnotebook.store_id"}
        old = f.with_name(f.name.split(".")[0] + ".parquet")
        pq.write_table(pq.read_table(f).drop(["stream_number"]).replace_schema_metadata(kv), old)
        f.unlink()
    (path / "esnotebook-store.json").write_text('{"format": "esnotebook-parquet", "version": 2}')


def test_a_layout_2_store_opens_and_numbers_its_streams_on_read(tmp_path):
    """Stores written before stream numbers were stored keep working: numbers come from the
    stream index on read; new commits store them; compaction writes them into old files."""
    path = tmp_path / "s"
    _many_commits(path, 8)
    with ParquetEventStore(path) as store:
        expected = store.to_polars(with_stream_number=True)
    _as_layout_2(path)
    with ParquetEventStore(path) as store:
        assert not any("stream_number" in pl.read_parquet_schema(f) for f in store.files())
        assert_frame_equal(store.to_polars(with_stream_number=True), expected)
        store.append("order-new", [NewEvent("OrderPlaced", {"order_id": "new", "customer": "c", "items": 0})])
        store.append(expected["stream_id"][0], [NewEvent("OrderShipped", {"order_id": "x"})])
        got = store.to_polars(with_stream_number=True)
        streams = store.streams()
        assert got["stream_number"].to_list() == [streams.index(s) for s in got["stream_id"]]
        assert got["stream_number"].tail(2).to_list() == [len(streams) - 1, 0]
        store.compact()
        assert all("stream_number" in pl.read_parquet_schema(f) for f in store.files())
        assert_frame_equal(store.to_polars(with_stream_number=True), got)


@pytest.mark.slow
def test_a_compaction_killed_at_any_moment_leaves_a_correct_store(tmp_path, forkserver):
    template = tmp_path / "template"
    before = _many_commits(template, 60)
    rng = np.random.default_rng(3)
    # How long one compaction takes here, to spread the kills over it.
    shutil.copytree(template, tmp_path / "timing")
    proc = spawn("compact", tmp_path / "timing", 12)
    t0 = time.monotonic()
    assert proc.stdout.readline().strip() == "done"
    duration = time.monotonic() - t0
    proc.wait()
    for trial in range(12):
        path = tmp_path / f"t{trial}"
        shutil.copytree(template, path)
        kill_after(forkserver, ["compact", path, 12], rng.uniform(0, duration * 1.1))
        store = ParquetEventStore(path)
        assert_frame_equal(store.to_polars(with_metadata=True), before)
        with store:
            store.compact(max_events=12)  # a writer tidies superseded files and finishes the job
            assert_frame_equal(store.to_polars(with_metadata=True), before)
            assert store.files() == sorted((path / "events").glob("*.parquet"))


@pytest.mark.slow
def test_readers_stay_correct_while_another_process_compacts(tmp_path):
    path = tmp_path / "s"
    # Compaction passes of growing size: a window of churn that outlasts a few reads.
    before = _many_commits(path, 300)
    reader = ParquetEventStore(path)
    proc = spawn("compact", path, "3,4,6,8,12,16,24,32,48,64,128")
    reads = overlapped = 0
    try:
        while proc.poll() is None or reads < 3:
            overlapped += proc.poll() is None
            fresh = ParquetEventStore(path)
            for store in (reader, fresh):
                assert_frame_equal(store.to_polars(with_metadata=True), before)
                assert store.stream_version("order-5") == before.filter(pl.col("stream_id") == "order-5").height
            events = list(reader.read_all(from_position=before.height - 20))
            assert [e.position for e in events] == list(range(before.height - 19, before.height + 1))
            reads += 1
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, proc.stderr.read()
    assert overlapped >= 1, "the compaction finished before the readers got going"
    assert len(ParquetEventStore(path).files()) < 300 // 10


# ---------------------------------------------------------------------------- bad input
def test_a_store_path_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "events.parquet"
    f.write_bytes(b"data")
    with pytest.raises(EventStoreError, match=r"is a file; a ParquetEventStore needs a folder"):
        ParquetEventStore(f)
    assert f.read_bytes() == b"data"


def test_a_folder_of_foreign_files_is_refused_and_left_alone(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("keep me")
    with pytest.raises(EventStoreError, match=r"is not an esnotebook store.*holds 1 entries \(thesis.txt\)"):
        ParquetEventStore(tmp_path / "mine")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["thesis.txt"]


def test_an_unknown_store_format_is_refused(tmp_path):
    ParquetEventStore(tmp_path / "s").close()
    (tmp_path / "s" / "esnotebook-store.json").write_text('{"format": "esnotebook-parquet", "version": 99}')
    with pytest.raises(EventStoreError, match="version 99 is not supported"):
        ParquetEventStore(tmp_path / "s")


def _damage_truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _damage_garbage(file: Path) -> None:
    file.write_bytes(os.urandom(300))


def _damage_empty(file: Path) -> None:
    file.write_bytes(b"")


def _damage_foreign_parquet(file: Path) -> None:
    pl.DataFrame({"name": ["a", "b"], "score": [1, 2]}).write_parquet(file)


def _rewrite(file: Path, change) -> None:
    """Rewrite an event file through ``change``, keeping its esnotebook metadata."""
    import pyarrow.parquet as pq

    kv = {k.decode(): v.decode() for k, v in pq.read_metadata(file).metadata.items() if k.startswith(b"esnotebook")}
    change(pl.read_parquet(file)).write_parquet(file, statistics=True, metadata=kv)


def _damage_wrong_positions(file: Path) -> None:
    _rewrite(file, lambda f: f.with_columns(pl.col("position") + 1000))


def _damage_wrong_row_count(file: Path) -> None:
    _rewrite(file, lambda f: f.head(1))


def _damage_no_field_metadata(file: Path) -> None:
    pl.read_parquet(file).write_parquet(file)


def _damage_field_without_column(file: Path) -> None:
    import pyarrow.parquet as pq

    frame = pl.read_parquet(file)
    frame.write_parquet(file, metadata={"esnotebook.fields": '{"ItemAdded": ["sku", "colour"]}'})
    assert "colour" not in pq.read_schema(file).names


def events_file(path: Path, first: int, last: int) -> Path:
    """The committed file of positions ``first..last`` (its name ends with its checksum)."""
    (found,) = (path / "events").glob(f"{first:012d}-{last:012d}.*parquet")
    return found


@pytest.mark.parametrize("naming", ["checksum", "layout 3"])
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_damage_truncate, "damaged or foreign file"),
        (_damage_garbage, "damaged or foreign file"),
        (_damage_empty, "damaged or foreign file"),
        (_damage_foreign_parquet, r"not an event file \(missing columns"),
        (_damage_no_field_metadata, r"not an event file \(its 'esnotebook.fields' metadata is missing"),
        (_damage_field_without_column, r"ItemAdded fields \['colour'\] have no column"),
        (_damage_wrong_positions, r"positions 1004..1006 do not match its name's range 4..6"),
        (_damage_wrong_row_count, r"holds 1 events, but its name promises 3 \(positions 4..6\)"),
    ],
)
def test_a_damaged_file_raises_store_corrupted_error_naming_it_and_nothing_is_lost(tmp_path, damage, message, naming):
    """A file named with its checksum fails that check, whatever the damage; a file of
    layout 3 (no checksum) fails the footer checks."""
    path = tmp_path / "s"
    with ParquetEventStore(path) as store:
        store.append("order-1", order_events("1", 2))
        before = store.to_polars()
        store.append("order-2", [NewEvent("ItemAdded", {"order_id": "2", "sku": "a", "quantity": 1, "price": 1}),
                                 NewEvent("ItemAdded", {"order_id": "2", "sku": "b", "quantity": 1, "price": 1}),
                                 NewEvent("ItemAdded", {"order_id": "2", "sku": "c", "quantity": 1, "price": 1})])  # fmt: skip
    victim = events_file(path, 4, 6)
    if naming == "layout 3":
        victim = victim.rename(path / "events" / "000000000004-000000000006.parquet")
    else:
        message = r"damaged file \(positions 4..6\): its bytes have CRC32"
    saved = victim.read_bytes()
    others = {p: p.read_bytes() for p in path.rglob("*.parquet") if p != victim}
    damage(victim)
    for attempt in ("open", "write"):
        with pytest.raises(StoreCorruptedError, match=rf"{victim.name}: .*{message}"):
            if attempt == "open":
                ParquetEventStore(path)
            else:
                ParquetEventStore(path, lock_timeout=1).append("x", [NewEvent("A", {})])
    # Nothing was deleted or rewritten: repairing the one file brings everything back.
    assert {p: p.read_bytes() for p in path.rglob("*.parquet") if p != victim} == others
    victim.write_bytes(saved)
    store = ParquetEventStore(path)
    assert_frame_equal(store.to_polars().head(3), before)
    assert store.head_position == 6


def test_a_missing_commit_file_is_reported_as_missing_positions(tmp_path):
    path = tmp_path / "s"
    with ParquetEventStore(path) as store:
        for i in range(3):
            store.append(f"s{i}", [NewEvent("A", {"i": i})])
    events_file(path, 2, 2).unlink()
    with pytest.raises(StoreCorruptedError, match=r"positions 2\.\.2 are missing"):
        ParquetEventStore(path)


@pytest.mark.parametrize("name", ["backup.parquet", "notes.txt", "000000000001-000000000001"])
def test_a_foreign_entry_in_the_events_folder_is_named(tmp_path, name):
    """A file or folder under events/ that is not <first>-<last>.parquet is damage, named."""
    path = tmp_path / "s"
    with ParquetEventStore(path) as store:
        store.append("s", [NewEvent("A", {})])
    entry = path / "events" / name
    entry.mkdir() if "." not in name else entry.write_bytes(b"x")
    with pytest.raises(StoreCorruptedError, match=rf"events/{name}: unexpected entry"):
        ParquetEventStore(path)


def test_a_version_1_store_is_refused_with_a_clear_error(tmp_path):
    """Layout v1 (a folder per commit) is not read by this version; the error says so."""
    ParquetEventStore(tmp_path / "s").close()
    (tmp_path / "s" / "esnotebook-store.json").write_text('{"format": "esnotebook-parquet", "version": 1}')
    with pytest.raises(EventStoreError, match=r"version 1 is not supported \(expected 'esnotebook-parquet' version 2 or 3 or 4\)"):
        ParquetEventStore(tmp_path / "s")


def test_a_rejected_append_leaves_no_file_behind(tmp_path):
    path = tmp_path / "s"
    with ParquetEventStore(path) as store:
        store.append("s", [NewEvent("A", {"n": 1})])
        files = sorted(path.rglob("*"))
        with pytest.raises(EventStoreError):
            store.append("s", [NewEvent("A", {"n": "one"})])
        with pytest.raises(EventStoreError):
            store.append("s", [NewEvent("A", {"n": 2})], expected_version=0)
        assert sorted(path.rglob("*")) == files


def test_the_html_summary_escapes_the_path(tmp_path):
    store = ParquetEventStore(tmp_path / "<b>shop</b>")
    assert "&lt;b&gt;shop&lt;/b&gt;" in store._repr_html_() and "<b>shop" not in store._repr_html_()


# ---------------------------------------------------------------------------- other tools
@pytest.fixture
def shop(tmp_path) -> ParquetEventStore:
    """A small store with three event types, an evolved schema and a compacted prefix."""
    path = tmp_path / "shop"
    with ParquetEventStore(path) as store:
        for i in range(6):
            store.append(f"order-{i}", order_events(str(i), i % 3))
        store.compact()
        store.append("order-9", [NewEvent("OrderPlaced", {"order_id": "9", "customer": "c", "items": 0, "channel": "web"})])
        store.append("order-1", [NewEvent("PaymentReceived", {"order_id": "1", "amount": 300})])
    return ParquetEventStore(path)


def test_duckdb_per_event_type_counts_equal_the_stores(shop):
    import duckdb

    glob = str(shop.path / "events" / "*.parquet")
    got = dict(duckdb.sql(
        f"SELECT event_type, count(*) FROM read_parquet('{glob}', union_by_name=true) GROUP BY 1"
    ).fetchall())  # fmt: skip
    expected = dict(shop.to_polars().group_by("event_type").len().iter_rows())
    assert got == expected and sum(got.values()) == len(shop)


def test_pyarrow_dataset_and_polars_scan_parquet_read_the_folder_as_is(shop):
    """The recipes of docs/parquet-layout.md give the store's own frame, typed."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    events = shop.path / "events"
    expected = shop.to_polars()
    files = sorted(events.glob("*.parquet"))
    assert files == shop.files()
    schema = pa.unify_schemas([pq.read_schema(f) for f in files])
    table = ds.dataset(files, schema=schema, format="parquet").to_table()
    # Files sorted by name are in position order, and so is each file: no sort needed.
    from_arrow = pl.from_arrow(table).select(expected.columns)
    assert_frame_equal(from_arrow, expected)

    frames = [pl.scan_parquet(f) for f in files]
    from_polars = pl.concat(frames, how="diagonal_relaxed").collect()
    assert_frame_equal(from_polars.select(expected.columns), expected)

    placed = pl.scan_parquet(
        files, schema=dict(expected.schema), missing_columns="insert", extra_columns="ignore"
    ).filter(
        pl.col("event_type") == "OrderPlaced"
    ).collect()  # fmt: skip
    assert_frame_equal(placed, expected.filter(pl.col("event_type") == "OrderPlaced"))


def test_the_layout_page_recipes_run_and_agree_with_the_store(shop, tmp_path, monkeypatch):
    """Every python block of docs/parquet-layout.md runs against a real store, and what the
    DuckDB, polars and pyarrow recipes read equals the store's own frame."""
    import re

    page = Path(__file__).parents[1] / "docs" / "parquet-layout.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(shop.path.parent)
    assert shop.path.name == "shop"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)
    expected = shop.to_polars()
    assert namespace["counts"] == dict(expected.group_by("event_type").len().iter_rows())
    assert_frame_equal(namespace["events"].select(expected.columns), expected)
    assert_frame_equal(pl.from_arrow(namespace["table"]).select(expected.columns), expected)
    assert_frame_equal(namespace["frame"], expected)
    items = namespace["items"].collect()
    assert items.height == expected.filter(pl.col("event_type") == "ItemAdded").height


def test_a_file_deleted_under_an_open_store_is_reported_not_retried_forever(tmp_path):
    path = tmp_path / "s"
    with ParquetEventStore(path) as store:
        store.append("order-1", order_events("1", 2))
        store.append("order-2", order_events("2", 1))
    reader = ParquetEventStore(path)
    assert len(reader.to_polars()) == 5
    events_file(path, 1, 3).unlink()
    t0 = time.monotonic()
    with pytest.raises(StoreCorruptedError, match=r"positions 1\.\.3 are missing \(next file is 000000000004-000000000005\.[0-9a-f]{8}\.parquet\)"):
        reader.to_polars()
    assert time.monotonic() - t0 < 5
