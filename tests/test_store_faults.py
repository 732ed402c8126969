"""The Parquet store's writer under real faults: I/O errors injected into the os calls of a
commit, SIGKILL at every step of creating a store, forked helpers that outlive the writer,
and a LOCK file or store folder replaced under a live writer.

The fault injectors run in child processes (this file is also their script):
``python test_store_faults.py inject FUNC ROOT`` and ``... fork-writer HOW PATH``.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import itertools
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest

from esnotebook.errors import (
    CommitUnconfirmedError,
    EventStoreError,
    StoreIOError,
    StoreLockedError,
)
from esnotebook.events import NewEvent
from esnotebook.store import ParquetEventStore
from esnotebook.store import _commit

HERE = Path(__file__)
WRITER = str(HERE.with_name("_store_writer.py"))


def events(n: int, tag: str = "e") -> list[NewEvent]:
    return [NewEvent("Noted", {"tag": tag, "i": i}) for i in range(n)]


def frame_of_three() -> pl.DataFrame:
    return pl.DataFrame(
        {"stream_id": ["f-1", "f-1", "f-2"], "event_type": ["Noted"] * 3, "tag": ["f"] * 3, "i": [0, 1, 2]}
    )


def child(*args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HERE), *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def view(path: Path) -> list[tuple[int, str, int]]:
    """(position, stream, version) of every event, as a store opened afresh shows them."""
    store = ParquetEventStore(path)
    return [(e.position, e.stream_id, e.version) for e in store.read_all()]


# ------------------------------------------------------------------ the injectors (children)
@contextmanager
def patched(names: list[str], k: int, action: Callable[[str], None]) -> Iterator[list[str]]:
    """Run ``action`` on entry to the ``k``-th call (counted across ``names``) of those os calls."""
    real = {name: getattr(os, name) for name in names}
    count = itertools.count(1)
    hit: list[str] = []

    def wrap(name: str) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            if next(count) == k:
                hit.append(name)
                action(name)
            return real[name](*args, **kwargs)

        return call

    for name in names:
        setattr(os, name, wrap(name))
    try:
        yield hit
    finally:
        for name, fn in real.items():
            setattr(os, name, fn)


def _inject(func: str, root: Path) -> None:
    """For each error, op and k = 1, 2, ...: fail the k-th ``os.<func>`` of one commit, and
    report what the commit raised, what the next append does and what a reopened store shows.
    Only that commit is durable (fsyncs): the rest of the trial runs fast."""
    for code, op in itertools.product([errno.EIO, errno.ENOSPC], ["append", "append_frame"]):

        def fail(name: str) -> None:
            raise OSError(code, os.strerror(code))

        for k in itertools.count(1):
            path = root / f"{code}-{op}-{k}"
            store = ParquetEventStore(path, durable=False)
            store.append("seed", events(1))
            out: dict[str, object] = {"code": code, "op": op, "k": k, "raised": None}
            store.durable = True
            with patched([func], k, fail) as hit:
                try:
                    if op == "append":
                        store.append("order-1", events(3), expected_version=0)
                    else:
                        store.append_frame(frame_of_three())
                except Exception as exc:  # noqa: BLE001 - the report says which
                    out.update(raised=type(exc).__name__, message=str(exc), errno=getattr(exc, "errno", None))
                    if isinstance(exc, CommitUnconfirmedError):
                        out["positions"] = [exc.positions.start, exc.positions.stop]
            store.durable = False
            if not hit:
                break
            out["same_object"] = [(e.position, e.stream_id, e.version) for e in store.read_all()]
            try:
                store.append("after", events(1))
                out["next"] = "ok"
            except Exception as exc:  # noqa: BLE001
                out["next"], out["next_message"] = type(exc).__name__, str(exc)
            store.close()
            out["reopened"] = view(path)
            again = ParquetEventStore(path, durable=False)
            again.append("reopened", events(1))
            out["appendable"] = [e.stream_id for e in again.read_all()][-1] == "reopened"
            again.close()
            print(json.dumps(out), flush=True)


def _create_kill(k: int, path: Path) -> None:
    names = ["mkdir", "open", "write", "fsync", "close", "link", "rename", "replace", "unlink"]
    with patched(names, k, lambda name: os.kill(os.getpid(), signal.SIGKILL)):
        ParquetEventStore(path)


def _fork_writer(how: str, path: Path) -> None:
    """Write, then leave a forked helper behind (multiprocessing, or a raw libc fork)."""
    store = ParquetEventStore(path)
    store.append("s", events(1))
    if how == "multiprocessing":
        helper = mp.get_context("fork").Process(target=time.sleep, args=(120,))
        helper.start()
        pid = helper.pid
    else:
        pid = ctypes.CDLL(None).fork()  # no at-fork hooks run: the helper keeps the lock
        if pid == 0:
            time.sleep(120)
            os._exit(0)
    print(pid, flush=True)
    time.sleep(120)


# ------------------------------------------------------------------ I/O errors in a commit
@pytest.mark.parametrize("func", ["open", "fsync", "close", "link", "unlink"])
def test_an_io_error_at_any_os_call_of_a_commit_has_an_outcome_the_reopened_store_confirms(tmp_path, func):
    """EIO or ENOSPC at the k-th call, for every k, in append and append_frame.
    StoreIOError: nothing stored. CommitUnconfirmedError: stored at its positions. Either way
    the store object then refuses to write (after a full disk with nothing stored it goes
    on), and the store opened again is intact and appendable."""
    done = child("inject", func, tmp_path)
    assert done.returncode == 0, done.stderr
    reports = [json.loads(line) for line in done.stdout.splitlines()]
    assert {(r["code"], r["op"]) for r in reports} == set(
        itertools.product([errno.EIO, errno.ENOSPC], ["append", "append_frame"])
    ), f"os.{func} was never called during a commit"
    for r in reports:
        commit = [("order-1", 1), ("order-1", 2), ("order-1", 3)]
        if r["op"] == "append_frame":
            commit = [("f-1", 1), ("f-1", 2), ("f-2", 1)]
        committed = [(1, "seed", 1)] + [(2 + i, s, v) for i, (s, v) in enumerate(commit)]
        assert r["raised"] in (None, "StoreIOError", "CommitUnconfirmedError"), r
        reopened = [tuple(e) for e in r["reopened"]]
        seen = [e for e in reopened if e[1] != "after"]
        if r["raised"] == "StoreIOError":
            assert seen == committed[:1], r
            assert str(tmp_path) in r["message"] and "not stored" in r["message"], r
            assert r["errno"] == r["code"], r
        else:
            assert seen == committed, r
        assert [tuple(e) for e in r["same_object"]] == seen, r  # the erring object knows too
        if r["raised"] == "CommitUnconfirmedError":
            assert r["positions"] == [2, 5] and "ARE committed" in r["message"], r
        if r["raised"] is None or (r["raised"] == "StoreIOError" and r["code"] == errno.ENOSPC):
            assert r["next"] == "ok" and reopened[-1][1] == "after", r
        else:
            assert r["next"] == "StoreIOError" and "stopped writing" in r["next_message"], r
            assert all(e[1] != "after" for e in reopened), r
        assert r["appendable"], r
    if func in ("fsync", "open", "close"):
        # the temporary file's fsync comes before the publish, the folder's after it
        assert {r["raised"] for r in reports} >= {"StoreIOError", "CommitUnconfirmedError"}, reports


def test_a_full_disk_while_writing_a_commit_is_a_store_io_error_naming_the_store(tmp_path, monkeypatch):
    """polars' "File out of specification" becomes StoreIOError (disk full); the object goes on."""
    store = ParquetEventStore(tmp_path / "s")
    store.append("seed", events(1))
    write = pl.DataFrame.write_parquet
    to_full_disk = lambda self, file, **kw: write(self, "/dev/full", **kw)  # noqa: E731 - real ENOSPC
    monkeypatch.setattr(pl.DataFrame, "write_parquet", to_full_disk)
    with pytest.raises(StoreIOError, match="the disk is full") as caught:
        store.append("order-1", events(2))
    assert caught.value.disk_full and str(tmp_path / "s") in str(caught.value)
    assert not any((tmp_path / "s" / "_tmp").iterdir())
    monkeypatch.undo()
    store.append("order-1", events(2))
    store.close()
    assert view(tmp_path / "s") == [(1, "seed", 1), (2, "order-1", 1), (3, "order-1", 2)]


# ------------------------------------------------------------------ publishing never overwrites
@pytest.mark.parametrize("way", ["link", "renameat2", "check-then-rename"])
def test_publishing_onto_an_existing_file_refuses_and_leaves_it_unchanged(tmp_path, monkeypatch, way):
    def no_hard_links(*args: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    if way != "link":
        monkeypatch.setattr(os, "link", no_hard_links)
    if way == "check-then-rename":
        monkeypatch.setattr(_commit, "_renameat2", lambda tmp, final: False)
    final, tmp, fresh = tmp_path / "final", tmp_path / "tmp", tmp_path / "fresh"
    final.write_bytes(b"committed")
    tmp.write_bytes(b"other")
    with pytest.raises(FileExistsError):
        _commit.publish(tmp, final)
    assert final.read_bytes() == b"committed"
    _commit.publish(tmp, fresh)
    assert fresh.read_bytes() == b"other" and final.read_bytes() == b"committed"


def test_a_commit_onto_a_file_another_writer_published_stores_and_overwrites_nothing(tmp_path):
    """Two writers that both believe they hold the lock: the second publish is refused."""
    store = ParquetEventStore(tmp_path / "s")
    store.append("seed", events(1))
    other = tmp_path / "other"
    ParquetEventStore(other).append("x", events(2))  # positions 1..2: a file named like ours
    taken = other / "events" / next(p.name for p in (other / "events").iterdir())
    with pytest.raises(StoreLockedError, match="another writer"):
        _commit.commit_file(
            lambda path: path.write_bytes(b"ours") and taken, tmp_path / "s" / "_tmp" / "t",
            durable=True, check=lambda: None, store=other, positions=range(1, 3),
        )  # fmt: skip
    assert view(other) == [(1, "x", 1), (2, "x", 2)]
    assert not (tmp_path / "s" / "_tmp" / "t").exists()


# ------------------------------------------------------------------ creation
def test_a_store_killed_at_any_step_of_its_creation_is_absent_or_opens_empty(tmp_path):
    """SIGKILL on entry to the k-th os call of creating a store, for every k."""
    ctx = mp.get_context("forkserver")  # a trial starts in milliseconds, polars imported once
    ctx.set_forkserver_preload(["polars", "esnotebook"])
    half_created = 0
    for k in itertools.count(1):
        path = tmp_path / f"k{k}" / "store"
        trial = ctx.Process(target=_create_kill, args=(k, path))
        trial.start()
        trial.join(120)
        if trial.exitcode == 0:
            break
        assert trial.exitcode == -signal.SIGKILL, k
        if not path.exists():
            continue
        half_created += not (path / "esnotebook-store.json").exists() and any(path.iterdir())
        store = ParquetEventStore(path)
        assert len(store) == 0 and isinstance(store.store_id, str), k
        store.append("s", events(1))
        assert view(path) == [(1, "s", 1)]
    assert k > 5 and half_created >= 2, (k, half_created)


def test_a_half_created_store_of_an_older_version_is_finished_but_a_markerless_store_is_not(tmp_path):
    """An empty events/, _tmp/ and a marker temporary at the top: what a crash left before.
    A folder whose events/ holds files is not half-created: it stays refused."""
    path = tmp_path / "s"
    (path / "events").mkdir(parents=True)
    (path / "_tmp").mkdir()
    (path / ".esnotebook-store.json.ca4d41b38c284cdc83413757553515ec").write_text('{"form')
    store = ParquetEventStore(path)
    assert sorted(p.name for p in path.iterdir()) == ["_tmp", "esnotebook-store.json", "events"]
    store.append("s", events(1))
    store.close()
    assert view(path) == [(1, "s", 1)]
    (path / "esnotebook-store.json").unlink()
    (path / "LOCK").unlink()
    with pytest.raises(EventStoreError, match="not an esnotebook store"):
        ParquetEventStore(path)


def test_each_store_gets_an_id_at_creation_and_keeps_it(tmp_path):
    a, b = ParquetEventStore(tmp_path / "a"), ParquetEventStore(tmp_path / "b")
    assert len(a.store_id) == 32 and int(a.store_id, 16) >= 0 and a.store_id != b.store_id
    assert ParquetEventStore(tmp_path / "a").store_id == a.store_id
    marker = tmp_path / "a" / "esnotebook-store.json"
    info = json.loads(marker.read_text())
    del info["store_id"]
    marker.write_text(json.dumps(info))
    assert ParquetEventStore(tmp_path / "a").store_id is None


# ------------------------------------------------------------------ one writer, really
@contextmanager
def forked_writer(path: Path, how: str) -> Iterator[tuple[subprocess.Popen, int]]:
    writer = subprocess.Popen(
        [sys.executable, str(HERE), "fork-writer", how, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        helper = int(writer.stdout.readline())
        try:
            yield writer, helper
        finally:
            os.kill(helper, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()


def test_a_forked_helper_that_outlives_its_writer_does_not_keep_the_store_locked(tmp_path):
    with forked_writer(tmp_path / "s", "multiprocessing") as (writer, helper):
        with pytest.raises(StoreLockedError, match=f"pid {writer.pid}\\)"):
            ParquetEventStore(tmp_path / "s").append("t", events(1))  # the live writer is named
        writer.kill()
        writer.wait()
        os.kill(helper, 0)  # the helper still runs
        ParquetEventStore(tmp_path / "s").append("t", events(1))
    assert view(tmp_path / "s") == [(1, "s", 1), (2, "t", 1)]


def test_a_lock_kept_by_a_raw_fork_of_a_dead_writer_is_reported_as_such(tmp_path):
    with forked_writer(tmp_path / "s", "raw") as (writer, helper):
        writer.kill()
        writer.wait()
        with pytest.raises(StoreLockedError, match=f"pid {writer.pid}, which has exited"):
            ParquetEventStore(tmp_path / "s").append("t", events(1))


def test_closing_the_store_in_a_forked_child_leaves_the_parents_lock_held(tmp_path):
    store = ParquetEventStore(tmp_path / "s")
    store.append("s", events(1))
    pid = os.fork()
    if pid == 0:
        store.close()
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    probe = os.open(tmp_path / "s" / "LOCK", os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(probe)
    store.append("s", events(1))
    assert store.is_writer


def test_a_writer_whose_lock_file_was_deleted_refuses_and_the_new_writer_loses_nothing(tmp_path):
    path = tmp_path / "s"
    old = ParquetEventStore(path)
    old.append("a", events(1))
    (path / "LOCK").unlink()
    new = ParquetEventStore(path)
    new.append("b", events(1))
    with pytest.raises(StoreLockedError, match="LOCK was deleted or replaced"):
        old.append("a", events(1))
    with pytest.raises(StoreLockedError, match="stopped writing"):
        old.append("a", events(1))
    new.append("b", events(1))
    assert view(path) == [(1, "a", 1), (2, "b", 1), (3, "b", 2)]


def test_a_writer_whose_folder_was_recreated_refuses_and_writes_nothing_into_the_new_store(tmp_path):
    path = tmp_path / "s"
    old = ParquetEventStore(path)
    old.append("a", events(2))
    shutil.rmtree(path)
    new = ParquetEventStore(path)
    new.append("b", events(1))
    with pytest.raises(StoreLockedError, match="stopped writing"):
        old.append("a", events(1))
    assert view(path) == [(1, "b", 1)]


def test_a_writer_process_stops_when_its_lock_file_is_deleted_and_no_ack_is_lost(tmp_path):
    """A live writer loop, LOCK deleted, a second writer process: every ack survives."""
    path, acks = tmp_path / "s", tmp_path / "acks"
    first = subprocess.Popen(
        [sys.executable, WRITER, "append", str(path), str(acks), "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert first.stdout.readline().strip() == "ready"
        while not acks.exists() or len(acks.read_text().splitlines()) < 5:
            time.sleep(0.01)
        (path / "LOCK").unlink()
        try:
            err = first.communicate(timeout=60)[1]
        except subprocess.TimeoutExpired:
            pytest.fail("the first writer went on writing after its LOCK was deleted")
        assert first.returncode != 0 and "LOCK was deleted or replaced" in err
    finally:
        first.kill()
        first.wait()
    second = subprocess.run(
        [sys.executable, WRITER, "append", str(path), str(acks), "2", "10"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    store = ParquetEventStore(path)
    lines = [json.loads(line) for line in acks.read_text().splitlines()]
    assert len(lines) >= 15
    for ack in lines:
        got = store.read_stream(ack["stream"])
        assert [e.position for e in got] == list(range(ack["first"], ack["last"] + 1)), ack
    assert [e.position for e in store.read_all()] == list(range(1, len(store) + 1))


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "inject":
        _inject(rest[0], Path(rest[1]))
    elif mode == "fork-writer":
        _fork_writer(rest[0], Path(rest[1]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
