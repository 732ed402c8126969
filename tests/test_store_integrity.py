"""The Parquet store's files can be trusted: a flipped byte, a stray or foreign file, or a
deleted newest file is a StoreCorruptedError, never data; tidy-up deletes only what a
checked file supersedes; readers see every commit, whatever the clock of the file system."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from esnotebook.errors import StoreChangedError, StoreCorruptedError
from esnotebook.events import NewEvent
from esnotebook.store import ParquetEventStore

sys.path.insert(0, str(Path(__file__).parent))
from _store_writer import order_events  # noqa: E402


def events_file(path: Path, first: int, last: int) -> Path:
    (found,) = (path / "events").glob(f"{first:012d}-{last:012d}.*parquet")
    return found


def event_files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((path / "events").iterdir())}


def recorded_head(path: Path) -> int:
    return int((path / "HEAD").read_text().split()[0])


def one_by_one(path: Path, n: int) -> ParquetEventStore:
    """A store of ``n`` commits of one event each (positions 1..n, one file each)."""
    store = ParquetEventStore(path, durable=False)
    for i in range(n):
        store.append(f"s{i % 3}", [NewEvent("Counted", {"i": i})])
    return store


# ---------------------------------------------------------------------------- checksums
@pytest.fixture(scope="module")
def flip_stores(tmp_path_factory):
    """Per compression: a store of three commits, the middle file to damage, its frame."""
    made = {}
    for compression in ("lz4", "zstd", "uncompressed"):
        path = tmp_path_factory.mktemp(compression) / "s"
        with ParquetEventStore(path, compression=compression, durable=False) as store:
            store.append("order-1", order_events("1", 2))
            store.append("order-2", [
                *order_events("2", 6),
                NewEvent("Noted", {"text": "a longer string " * 4, "tags": ["x", "y"], "at": {"lat": 1.5, "lon": -2.25}}),
            ])  # fmt: skip
            store.append("order-3", order_events("3", 1))
        made[compression] = (path, events_file(path, 4, 11), ParquetEventStore(path).to_polars(with_metadata=True))
    return made


@pytest.mark.parametrize("compression", ["lz4", "zstd", "uncompressed"])
@settings(max_examples=50)
@given(where=st.floats(0, 1, exclude_max=True), mask=st.integers(1, 255))
def test_a_flipped_byte_anywhere_in_a_commit_file_is_an_error_naming_it_never_data(
    flip_stores, compression, where, mask
):
    path, victim, expected = flip_stores[compression]
    saved = victim.read_bytes()
    at = int(where * len(saved))
    victim.write_bytes(saved[:at] + bytes([saved[at] ^ mask]) + saved[at + 1 :])
    try:
        with pytest.raises(StoreCorruptedError, match=rf"{victim.name}: damaged file \(positions 4\.\.11\)"):
            ParquetEventStore(path).to_polars(with_metadata=True)
    finally:
        victim.write_bytes(saved)
    assert_frame_equal(ParquetEventStore(path).to_polars(with_metadata=True), expected)


def test_verify_reads_every_file_again_and_reports_older_files_as_unchecked(tmp_path):
    path = tmp_path / "s"
    one_by_one(path, 3).close()
    # A file of layout 3 (named without its checksum) is still read, but no checksum covers it.
    old = events_file(path, 1, 1).rename(path / "events" / "000000000001-000000000001.parquet")
    reader = ParquetEventStore(path)
    report = reader.verify()
    assert report.rows() == [(old.name, 1, 1, False), (events_file(path, 2, 2).name, 2, 2, True),
                             (events_file(path, 3, 3).name, 3, 3, True)]  # fmt: skip
    # Damage after this object checked the file: its reads trust it, verify() does not.
    victim = events_file(path, 2, 2)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x10
    victim.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptedError, match=rf"1 of 3 files are damaged: .*{victim.name}: damaged file \(positions 2\.\.2\)"):
        reader.verify()


def test_a_layout_3_store_opens_unchanged_and_its_first_writer_marks_it_layout_4(tmp_path):
    import json

    import pyarrow.parquet as pq

    path = tmp_path / "s"
    one_by_one(path, 2).close()
    for f in (path / "events").iterdir():  # as layout 3 wrote them: no checksum, no store id
        kv = {k: v for k, v in pq.read_metadata(f).metadata.items() if k != b"esnotebook.store_id"}
        pq.write_table(pq.read_table(f).replace_schema_metadata(kv), f.with_name(f.name.split(".")[0] + ".parquet"))
        f.unlink()
    (path / "HEAD").unlink()
    (path / "esnotebook-store.json").write_text('{"format": "esnotebook-parquet", "version": 3}')
    before = event_files(path)
    assert ParquetEventStore(path).verify()["checked"].to_list() == [False, False]
    assert event_files(path) == before  # reading changes nothing
    with ParquetEventStore(path) as writer:
        writer.append("s0", [NewEvent("Counted", {"i": 2})])
    marker = json.loads((path / "esnotebook-store.json").read_text())
    assert marker["version"] == 4 and marker["store_id"]
    new = events_file(path, 3, 3)
    assert pq.read_metadata(new).metadata[b"esnotebook.store_id"].decode() == marker["store_id"]
    assert ParquetEventStore(path).verify()["checked"].to_list() == [False, False, True]
    assert recorded_head(path) == 3


def test_a_file_of_another_store_is_refused_even_under_a_name_of_this_store(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    one_by_one(ours, 4).close()
    with ParquetEventStore(theirs) as other:
        other.append_frame(pl.DataFrame({"stream_id": ["s0"] * 4, "event_type": ["Counted"] * 4, "i": [9, 9, 9, 9]}))
    before = event_files(ours)
    # Its own name (with its valid checksum), and the name an older layout would give it.
    for name in (events_file(theirs, 1, 4).name, "000000000001-000000000004.parquet"):
        stray = shutil.copy(events_file(theirs, 1, 4), ours / "events" / name)
        with pytest.raises(StoreCorruptedError, match=rf"{name}: belongs to another store"):
            ParquetEventStore(ours)
        with pytest.raises(StoreCorruptedError, match="belongs to another store"):
            ParquetEventStore(ours, lock_timeout=1).append("s0", [NewEvent("Counted", {"i": 0})])
        Path(stray).unlink()
        assert event_files(ours) == before  # the writer's tidy-up deleted nothing
    assert ParquetEventStore(ours).to_polars()["i"].to_list() == [0, 1, 2, 3]


# ---------------------------------------------------------------------------- tidy-up
def _garbage(src: Path) -> bytes:
    return os.urandom(300)


def _truncated(src: Path) -> bytes:
    return src.read_bytes()[:-40]


@pytest.mark.parametrize("name", ["000000000001-000000000999.parquet", "000000000001-000000000999.0badf00d.parquet"])
@pytest.mark.parametrize("content", [_garbage, _truncated])
def test_a_stray_file_whose_name_covers_the_store_makes_the_writer_delete_nothing(tmp_path, name, content):
    """Only a file that passes its checks supersedes the files inside its range."""
    path = tmp_path / "s"
    writer = one_by_one(path, 60)
    leftovers = {n: b for n, b in event_files(path).items() if n < "000000000004"}
    writer.compact()
    for n, data in leftovers.items():  # as a compactor killed before it deleted them left them
        (path / "events" / n).write_bytes(data)
    writer.close()  # a long-lived object that lets go of the lock between batches
    before = event_files(path)
    stray = path / "events" / name
    stray.write_bytes(content(events_file(path, 1, 60)))
    with pytest.raises(StoreCorruptedError, match=rf"{name}: damaged"):
        writer.append("s0", [NewEvent("Counted", {"i": 60})])
    assert {n: b for n, b in event_files(path).items() if n != name} == before
    stray.unlink()
    writer.close()
    writer.append("s0", [NewEvent("Counted", {"i": 60})])
    # The checked compacted file did supersede the leftovers: those are gone now.
    assert [n.split(".")[0] for n in event_files(path)] == ["000000000001-000000000060", "000000000061-000000000061"]
    assert ParquetEventStore(path).to_polars()["i"].to_list() == list(range(61))


def test_two_files_of_one_range_from_two_writers_are_an_error_and_neither_is_deleted(tmp_path):
    """Checksums make the names of two writers' commits differ: the pair is refused, not
    taken as one file superseding the other."""
    path = tmp_path / "s"
    writer = one_by_one(path, 3)
    writer.close()
    twin = tmp_path / "twin"
    shutil.copytree(path, twin)
    first = ParquetEventStore(path)
    first.append("s0", [NewEvent("Counted", {"i": 100})])
    second = ParquetEventStore(twin)
    second.append("s0", [NewEvent("Counted", {"i": 200})])  # same store id, same position 4
    second.close()
    (ours,) = (path / "events").glob("000000000004-000000000004.*")
    (theirs,) = (twin / "events").glob("000000000004-000000000004.*")
    assert ours.name != theirs.name
    shutil.copy(theirs, path / "events" / theirs.name)  # as a second writer would publish it
    before = event_files(path)
    for act in (lambda: ParquetEventStore(path), lambda: first.append("s1", [NewEvent("Counted", {"i": 5})])):
        with pytest.raises(StoreCorruptedError, match=r"both hold positions 4\.\.4"):
            act()
    assert event_files(path) == before


def test_compaction_leaves_a_run_whose_merge_a_reader_could_not_reopen(tmp_path, monkeypatch):
    """Each commit fits Parquet's footer limits; their merge might not: it is left as it is."""
    from esnotebook import _schema

    path = tmp_path / "s"
    store = ParquetEventStore(path, durable=False)
    for t in "ABC":
        store.append(f"s-{t}", [NewEvent(t, {f"{t}{i}": i for i in range(30)})])
    monkeypatch.setattr(_schema, "MAX_NODES", 45)  # one commit: 41 nodes; two: 71
    assert store.compact() == 3
    monkeypatch.setattr(_schema, "MAX_NODES", 1_000_000)
    assert store.compact() == 1
    assert ParquetEventStore(path).to_polars().height == 3


# ---------------------------------------------------------------------------- a missing tail
def test_deleted_newest_files_are_an_error_and_their_positions_are_never_handed_out_again(tmp_path):
    path = tmp_path / "s"
    writer = one_by_one(path, 5)
    reader = ParquetEventStore(path)
    assert reader.head_position == 5
    events_file(path, 5, 5).unlink()
    events_file(path, 4, 4).unlink()
    left = event_files(path)
    missing = r"positions 4\.\.5 are missing"
    with pytest.raises(StoreCorruptedError, match=missing):
        writer.append("s0", [NewEvent("Counted", {"i": 5})])  # the live writer
    with pytest.raises(StoreCorruptedError, match=missing):
        reader.to_polars()
    with pytest.raises(StoreCorruptedError, match=missing):
        ParquetEventStore(path)  # a new object: from the head the store recorded
    (path / "HEAD").unlink()
    with pytest.raises(StoreCorruptedError, match=missing):
        writer.append("s0", [NewEvent("Counted", {"i": 5})])  # its own head still says 5
    assert event_files(path) == left


def test_a_writer_killed_between_its_commit_and_the_head_record_leaves_the_record_behind(tmp_path):
    """The head record is a lower bound: SIGKILL just before it is written loses nothing."""
    path = tmp_path / "s"
    one_by_one(path, 2).close()
    code = f"""
import os, signal
real = os.open
def open_(path, *a, **k):
    if str(path).endswith("HEAD") and a[0] & os.O_WRONLY:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, *a, **k)
os.open = open_
from esnotebook.events import NewEvent
from esnotebook.store import ParquetEventStore
ParquetEventStore({str(path)!r}).append("s0", [NewEvent("Counted", {{"i": 2}})])
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert recorded_head(path) == 2
    store = ParquetEventStore(path)
    assert store.to_polars()["i"].to_list() == [0, 1, 2]
    store.append("s0", [NewEvent("Counted", {"i": 3})])
    assert recorded_head(path) == 4


def test_a_damaged_head_record_is_named_with_what_to_do(tmp_path):
    path = tmp_path / "s"
    one_by_one(path, 2).close()
    (path / "HEAD").write_text("00000000000000000007 00000000\n")
    with pytest.raises(StoreCorruptedError, match=r"HEAD: unreadable head record .* delete it"):
        ParquetEventStore(path)
    (path / "HEAD").unlink()
    assert ParquetEventStore(path).head_position == 2


# ---------------------------------------------------------------------------- lazy scans
def test_a_scan_planned_before_a_compaction_says_to_scan_again(tmp_path):
    path = tmp_path / "s"
    one_by_one(path, 6).close()
    reader = ParquetEventStore(path)
    planned = reader.scan(from_position=2)
    with ParquetEventStore(path) as compactor:  # as another process would: the files go
        compactor.compact()
    with pytest.raises(StoreChangedError, match=r"call scan\(\) again"):
        planned.collect()
    assert reader.scan(from_position=2).collect()["i"].to_list() == [2, 3, 4, 5]
    assert reader.to_polars()["i"].to_list() == list(range(6))


# ---------------------------------------------------------------------------- coarse clocks
def test_a_reader_sees_a_commit_made_within_the_same_whole_second(tmp_path):
    """What a file system with 1-second timestamps shows: the events folder keeps its mtime
    when a second commit lands within the same second as the reader's last listing."""
    path = tmp_path / "s"
    writer = one_by_one(path, 1)
    reader = ParquetEventStore(path)
    second = (time.time_ns() - 500_000_000) // 1_000_000_000 * 1_000_000_000
    os.utime(path / "events", ns=(second, second))
    assert reader.head_position == 1
    writer.append("s1", [NewEvent("Counted", {"i": 1})])
    os.utime(path / "events", ns=(second, second))
    assert reader.head_position == 2
    assert [e.data["i"] for e in reader.read_stream("s1")] == [1]


# ---------------------------------------------------------------------------- readers vs writers
def _write(path: str, seconds: float) -> None:
    """Whole orders, one commit each, letting go of the lock after each so the compactor runs."""
    store = ParquetEventStore(path, lock_timeout=30, durable=False)
    deadline, i = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        store.append(f"order-{i}", order_events(str(i), i % 5), expected_version=0)
        store.close()
        i += 1


def _compact(path: str, stop: str) -> None:
    store = ParquetEventStore(path, lock_timeout=30, durable=False)
    sizes = [3, 7, 20, 1000]
    i = 0
    while not os.path.exists(stop):
        store.compact(max_events=sizes[i % len(sizes)])
        store.close()
        time.sleep(0.02)  # flock is not fair: leave the writer its turns
        i += 1


def _read(path: str, stop: str, results) -> None:
    """Each view: positions 1..n without gaps, every order whole; scan() may be outdated."""
    store = ParquetEventStore(path)
    views = outdated = 0
    bad: list[str] = []
    while not os.path.exists(stop):
        for how in ("to_polars", "scan", "read_all"):
            try:
                if how == "read_all":
                    frame = pl.DataFrame([{"position": e.position, "stream_id": e.stream_id, "items": e.data.get("items")}
                                          for e in store.read_all()])  # fmt: skip
                else:
                    frame = store.to_polars() if how == "to_polars" else store.scan().collect()
            except StoreChangedError:
                outdated += 1
                continue
            except Exception as exc:  # noqa: BLE001 - reported to the test
                bad.append(f"{how}: {type(exc).__name__}: {exc}")
                continue
            views += 1
            if frame.height and frame["position"].to_list() != list(range(1, frame.height + 1)):
                bad.append(f"{how}: positions not 1..{frame.height}")
            elif frame.height:
                sizes = frame.group_by("stream_id").agg(n=pl.len(), items=pl.col("items").max())
                if sizes.filter(pl.col("n") != pl.col("items") + 1).height:
                    bad.append(f"{how}: a partial order at head {frame.height}")
    results.put((views, outdated, bad[:5]))


@pytest.mark.slow
def test_reader_processes_see_only_whole_gap_free_prefixes_beside_a_writer_and_a_compactor(tmp_path):
    path, stop = tmp_path / "s", tmp_path / "stop"
    ParquetEventStore(path).close()
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    readers = [ctx.Process(target=_read, args=(str(path), str(stop), results)) for _ in range(2)]
    compactor = ctx.Process(target=_compact, args=(str(path), str(stop)))
    writer = ctx.Process(target=_write, args=(str(path), 6.0))
    for p in (*readers, compactor, writer):
        p.start()
    try:
        writer.join(60)
        stop.touch()
        got = [results.get(timeout=60) for _ in readers]
        compactor.join(60)
    finally:
        for p in (*readers, compactor, writer):
            p.kill()
            p.join()
    assert writer.exitcode == 0 and compactor.exitcode == 0
    assert [bad for _, _, bad in got] == [[], []]
    assert all(views > 0 for views, _, _ in got)
    final = ParquetEventStore(path)
    assert final.to_polars()["position"].to_list() == list(range(1, final.head_position + 1))
    assert final.head_position > 50
    assert len(final.files()) < len(final.streams()) / 2  # the compactor kept merging
