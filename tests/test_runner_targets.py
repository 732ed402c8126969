"""ParquetTarget: readers in other processes while a runner commits, one committing runner
at a time, nothing removed but by a commit, and a writer killed at any moment leaves a
target that loads."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import esnotebook as es
from esnotebook.errors import StoreCorruptedError, StoreLockedError
from esnotebook.runner import ProjectionRunner
from esnotebook.runner_targets import ParquetTarget
from esnotebook.store._lock import WriterLock

sys.path.insert(0, str(Path(__file__).parent))
import _target_worker  # noqa: E402
from _target_worker import Count, consistent, folder  # noqa: E402

EVENTS, STREAMS = 600, 12


def filled(path: Path, events: int = EVENTS) -> es.ParquetEventStore:
    """A store of ``events`` Ticks over STREAMS streams (lock released: others may write)."""
    store = es.ParquetEventStore(path, durable=False)
    for i in range(0, events, 10):
        store.append(f"s-{i // 10 % STREAMS}", [es.NewEvent("Tick", {"i": i + j}) for j in range(10)])
    store.close()
    return store


def listing(path: Path) -> list[tuple[str, bytes]]:
    """The files of a folder and their bytes (the LOCK's aside: each taker writes its pid)."""
    return sorted((p.name, b"" if p.name == "LOCK" else p.read_bytes()) for p in path.iterdir())


def settled(path: Path) -> list[str]:
    """What a folder holds right after a commit: the manifest, the lock, the named state."""
    return sorted(["LOCK", "manifest.json", ParquetTarget(path).manifest["state"]])


@pytest.fixture(scope="module")
def forkserver():
    """Worker processes that start in milliseconds: modules imported once, then forked."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["numpy", "polars", "esnotebook", "_target_worker"])
    return ctx


@pytest.fixture
def stop(tmp_path):
    """The file that tells reader processes to stop: made at the end even if a test fails."""
    path = tmp_path / "stop"
    yield path
    path.touch()


def start(ctx, mode: str, store: Path, out: Path, **kwargs: object):
    ready = ctx.Event()
    args = (mode, str(store), ready, str(out))
    proc = ctx.Process(target=_target_worker.run, args=args, kwargs=kwargs, daemon=True)
    proc.start()
    assert ready.wait(60), f"{mode} process did not start"
    return proc


def result(proc, out: Path) -> dict:
    proc.join(60)
    assert proc.exitcode == 0, f"worker exit code {proc.exitcode}"
    return json.loads(out.read_text())


# ---------------------------------------------------------------------------- other processes
def test_readers_in_other_processes_see_only_commits_and_never_break_the_writer(tmp_path, forkserver, stop):
    """While a runner in one process commits 60 times (steps, and in-place rebuilds), a process
    reading with the documented ``ParquetTarget(path).load()`` and one with a read_only runner
    never fail and see only committed states (sum(n) == checkpoint); the writer's manifest
    never names a missing file; afterwards the folder holds just the last commit's files."""
    store = tmp_path / "store"
    filled(store)
    writer = start(forkserver, "write", store, tmp_path / "write.json", seed=1, commits=60)
    readers = {m: start(forkserver, m, store, tmp_path / f"{m}.json", stop=stop) for m in ("load", "runner")}
    wrote = result(writer, tmp_path / "write.json")
    stop.touch()
    assert wrote["commits"] >= 60 and wrote["missing"] == 0, wrote
    for mode, proc in readers.items():
        read = result(proc, tmp_path / f"{mode}.json")
        assert read["reads"] > 20 and read["failures"] == 0 and read["wrong"] == 0, (mode, read)
    assert [name for name, _ in listing(folder(store))] == settled(folder(store))


def test_a_writer_killed_at_random_moments_leaves_a_loadable_target(tmp_path, forkserver, stop):
    """6 writers in turn, each SIGKILLed at a random moment while it commits and a read_only
    runner reads in another process: after every kill the target loads a committed state, a
    new runner resumes from it to the exact fold and its first commit removes the leftovers;
    the reader never failed."""
    store_path = tmp_path / "store"
    store = filled(store_path)
    ProjectionRunner(store, Count(), target="parquet").step(5)
    rng = np.random.default_rng(7)
    reader = start(forkserver, "runner", store_path, tmp_path / "r.json", stop=stop)
    seen = set()
    for trial, wait in enumerate(rng.uniform(0.05, 0.6, size=6)):
        proc = start(forkserver, "write", store_path, tmp_path / "w.json", seed=trial, commits=10**9)
        proc.join(wait)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        assert proc.exitcode == -signal.SIGKILL
        unit = ParquetTarget(folder(store_path)).load()
        assert consistent(unit.state, unit.checkpoint), f"trial {trial}: not a committed state"
        seen.add(unit.checkpoint)
    assert len(seen) > 2  # the writers did commit between the kills
    stop.touch()
    read = result(reader, tmp_path / "r.json")
    assert read["failures"] == 0 and read["wrong"] == 0, read
    resumed = ProjectionRunner(store, Count(), target="parquet")
    resumed.catch_up()
    assert resumed.state["n"].to_list() == [EVENTS // STREAMS] * STREAMS
    assert [name for name, _ in listing(folder(store_path))] == settled(folder(store_path))


# ---------------------------------------------------------------------------- readers
def test_load_reads_the_newer_commit_when_one_replaced_the_files_it_was_about_to_read(tmp_path, monkeypatch):
    """A commit between a reader's manifest read and its file read removes the file the
    reader was about to open; load() then reads the newer commit instead of failing."""
    store = filled(tmp_path / "store", 40)
    writer = ProjectionRunner(store, Count(), target="parquet", batch_size=10)
    writer.step()
    real = pl.read_parquet
    calls = []

    def commit_first(path, *args, **kwargs):
        if not calls:
            writer.step()  # removes `path`, the state the reader's manifest named
        calls.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pl, "read_parquet", commit_first)
    unit = ParquetTarget(writer.target.path).load()
    assert unit.checkpoint == 20 and consistent(unit.state, 20)
    assert len(calls) == 2 and calls[0] != calls[1]


def test_a_manifest_naming_a_missing_file_is_a_named_corruption(tmp_path):
    """When the file the manifest names is gone and no newer commit exists, load() raises
    StoreCorruptedError naming the folder and the file, instead of looping or guessing."""
    store = filled(tmp_path / "store", 20)
    ProjectionRunner(store, Count(), target="parquet").step()
    target = ParquetTarget(folder(store.path))
    target.state_file.unlink()
    with pytest.raises(StoreCorruptedError, match=r"Count: the manifest names a file that is missing .*state-"):
        target.load()


def test_a_read_only_runner_reads_and_refreshes_but_never_writes_or_removes(tmp_path):
    """A read_only runner loads the last commit without touching the folder (not even a
    crashed commit's leftovers, nor creating a missing one), refuses every method that
    would commit with a PermissionError naming read_only, and follows the writer with
    refresh()."""
    store = filled(tmp_path / "store", 40)
    absent = ProjectionRunner(store, Count(), target="parquet", read_only=True)
    assert absent.checkpoint == 0 and not folder(store.path).exists()
    writer = ProjectionRunner(store, Count(), target="parquet", batch_size=10)
    writer.step()
    (folder(store.path) / "state-000000000099-crashed.parquet").write_bytes(b"left by a killed commit")
    before = listing(folder(store.path))
    reader = ProjectionRunner(store, Count(), target="parquet", read_only=True)
    assert reader.checkpoint == 10 and consistent(reader.full_state, 10)
    for call in (reader.step, reader.catch_up, reader.rebuild, reader.retry_dead_letters):
        with pytest.raises(PermissionError, match="read_only=True"):
            call()
    assert reader.refresh() == 10
    assert listing(folder(store.path)) == before
    writer.step()
    assert reader.refresh() == 20 and consistent(reader.full_state, 20)
    with pytest.raises(ValueError, match=r"'checkpoint' must be 'resume' \(got 'reset'\)"):
        ProjectionRunner(store, Count(), target="parquet", read_only=True, checkpoint="reset")


def test_loading_removes_nothing_and_the_next_commit_removes_the_leftovers(tmp_path):
    """Leftovers of a crashed commit (a state file, a temporary file) stay while anyone
    loads; the next commit, holding the lock, removes them."""
    store = filled(tmp_path / "store", 30)
    ProjectionRunner(store, Count(), target="parquet", batch_size=10).step()
    path = folder(store.path)
    (path / "state-000000000020-crashed.parquet").write_bytes(b"left by a killed commit")
    (path / ".state-x.parquet.0123.tmp").write_bytes(b"left by a killed commit")
    before = listing(path)
    runner = ProjectionRunner(store, Count(), target="parquet", batch_size=10)
    ParquetTarget(path).load()
    assert listing(path) == before
    runner.step()
    assert [name for name, _ in listing(path)] == settled(path)


def test_a_commit_never_removes_a_file_newer_than_its_manifest(tmp_path):
    """A file written after a commit's manifest (by a writer that got past the lock) is not
    the commit's to judge: it stays, while the older leftovers go."""
    store = filled(tmp_path / "store", 30)
    runner = ProjectionRunner(store, Count(), target="parquet", batch_size=10)
    runner.step()
    path = folder(store.path)
    old, new = path / "state-000000000001-old.parquet", path / "state-000000000099-new.parquet"
    old.write_bytes(b"left by a killed commit")
    new.write_bytes(b"another writer's")
    later = (path / "manifest.json").stat().st_mtime + 3600
    os.utime(new, (later, later))
    runner.step()
    assert new.exists() and not old.exists()


# ---------------------------------------------------------------------------- one committer
def test_a_second_runner_committing_to_a_target_is_refused_and_writes_nothing(tmp_path):
    """Two runners on one target (one forgotten in another notebook, say): once one has
    committed, the other's commit raises StoreLockedError with both checkpoints and writes
    nothing; a runner opened afterwards takes over, and then the first one is refused."""
    store = filled(tmp_path / "store", 40)
    a = ProjectionRunner(store, Count(), target="parquet", batch_size=5)
    b = ProjectionRunner(store, Count(), target="parquet", batch_size=7)
    a.step()
    before = listing(folder(store.path))
    refused = r"another runner committed .*\(then at checkpoint 0, now 5\); nothing was written"
    with pytest.raises(StoreLockedError, match=refused):
        b.step()
    assert listing(folder(store.path)) == before and b.checkpoint == 0
    a.step()
    c = ProjectionRunner(store, Count(), target="parquet")
    assert c.checkpoint == 10 and c.catch_up() == 30
    with pytest.raises(StoreLockedError, match=r"\(then at checkpoint 10, now 40\)"):
        a.step()
    unit = ParquetTarget(folder(store.path)).load()
    assert unit.checkpoint == 40 and consistent(unit.state, 40)


def test_of_two_runners_in_two_processes_one_is_refused_and_the_target_stays_whole(tmp_path, forkserver):
    """Two writer processes start on one target at once: one is refused with
    StoreLockedError and stops, the other commits on; neither's manifest ever names a
    missing file and the target loads a committed state."""
    store = tmp_path / "store"
    filled(store)
    writers = [start(forkserver, "write", store, tmp_path / f"w{s}.json", seed=s, commits=30) for s in (1, 2)]
    wrote = [result(proc, tmp_path / f"w{seed}.json") for seed, proc in zip((1, 2), writers)]
    assert sorted("refused" in w for w in wrote) == [False, True], wrote
    assert all(w["missing"] == 0 for w in wrote), wrote
    assert "only one runner may commit to a target" in max(w.get("refused", "") for w in wrote).lower()
    unit = ParquetTarget(folder(store)).load()
    assert consistent(unit.state, unit.checkpoint)


def test_a_commit_while_another_holds_the_targets_lock_is_refused_naming_it(tmp_path):
    """A commit while another runner is mid-commit (it holds the target's LOCK) raises
    StoreLockedError naming that runner's pid, and writes nothing."""
    store = filled(tmp_path / "store", 20)
    runner = ProjectionRunner(store, Count(), target="parquet", batch_size=10)
    runner.step()
    other = WriterLock(folder(store.path))
    assert other.take(0)
    before = listing(folder(store.path))
    try:
        with pytest.raises(StoreLockedError, match=rf"another runner \(pid {os.getpid()}\) is committing"):
            runner.step()
        assert listing(folder(store.path)) == before
    finally:
        other.release()
    runner.step()
    assert runner.checkpoint == 20


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abr"), st.integers(1, 9)), min_size=1, max_size=12))
def test_any_interleaving_of_two_runners_and_a_reader_keeps_the_target_whole(tmp_path_factory, ops):
    """Runners a and b step, or reopen ("r": a is opened anew), in any order: a commit
    succeeds exactly when no other runner committed since the runner last loaded or
    committed; a refused one changes nothing; every load is the last successful commit."""
    store = filled(tmp_path_factory.mktemp("s") / "store", 60)
    runners = {"a": ProjectionRunner(store, Count(), target="parquet"),
               "b": ProjectionRunner(store, Count(), target="parquet")}  # fmt: skip
    last, fresh = 0, {"a", "b"}  # last committed checkpoint; runners whose view is current
    for who, n in ops:
        if who == "r":
            runners["a"], who = ProjectionRunner(store, Count(), target="parquet"), "a"
            fresh.add("a")
            continue
        runner = runners[who]
        if who in fresh and runner.lag:
            runner.step(n)
            last, fresh = runner.checkpoint, {who}
        elif runner.lag:
            with pytest.raises(StoreLockedError):
                runner.step(n)
        unit = ParquetTarget(folder(store.path)).load()
        assert (unit.checkpoint if unit else 0) == last
        assert unit is None or consistent(unit.state, unit.checkpoint)
