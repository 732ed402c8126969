"""A command happens once: whatever fails after its events are committed (a snapshot write, a
key file, an fsync, a kill), the first delivery succeeds or its error says the command was
carried out, and every retry with the same idempotency key answers "duplicate".

Faults are real: an ``os`` call patched to raise ``OSError(ENOSPC/EIO)`` on the one write it
targets, an aggregate id whose old snapshot file name was too long, a SIGKILLed child process
between an append and its key file, and restarts (the store and the middleware made afresh).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import esnotebook as es
from esnotebook.examples import AddStock, Inventory, order_domain_bus
from esnotebook.idempotency import DurableIdempotency, duplicate_side_effects

ROOT = Path(__file__).resolve().parents[1]


def open_bus(path, **kwargs):
    store = es.ParquetEventStore(path)
    return store, order_domain_bus(store, middleware=[DurableIdempotency(store)], **kwargs)


def stock(store) -> int:
    repo = order_domain_bus(store).repository(Inventory)
    return repo.load("sku-1", use_snapshots=False).on_hand if repo.exists("sku-1") else 0


def fail_replace(monkeypatch, folder: str, code: int, times: int = 1_000_000) -> list[str]:
    """Make ``os.replace`` into ``<...>/<folder>/`` raise ``OSError(code)`` ``times`` times."""
    real, hits = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if folder in Path(dst).parts and len(hits) < times:
            hits.append(str(dst))
            raise OSError(code, os.strerror(code), str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return hits


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_a_snapshot_write_that_fails_after_the_append_does_not_run_the_command_again(
    tmp_path, monkeypatch, code
):
    hits = fail_replace(monkeypatch, "snapshots", code)
    store, bus = open_bus(tmp_path / "s", snapshot_every=1)
    with pytest.warns(RuntimeWarning, match=r"Inventory 'sku-1': the snapshot at version 1 was not saved"):
        first = bus.dispatch(AddStock("sku-1", 5, idempotency_key="delivery-1"))
    assert first.status == "ok" and hits
    again = [bus.dispatch(AddStock("sku-1", 5, idempotency_key="delivery-1")).status for _ in range(2)]
    store.close()
    store, bus = open_bus(tmp_path / "s", snapshot_every=1)
    again.append(bus.dispatch(AddStock("sku-1", 5, idempotency_key="delivery-1")).status)
    assert again == ["duplicate"] * 3
    assert stock(store) == 5 and duplicate_side_effects(store).height == 0
    store.close()


def test_a_long_aggregate_id_is_snapshotted_and_its_command_happens_once(tmp_path):
    """226 characters made the old temporary snapshot name longer than 255 bytes."""
    sku = "s" * 226
    store, bus = open_bus(tmp_path / "s", snapshot_every=1)
    results = [bus.dispatch(AddStock(sku, 5, idempotency_key="delivery-1")).status for _ in range(3)]
    assert results == ["ok", "duplicate", "duplicate"]
    repo = bus.repository(Inventory)
    assert repo.snapshots.latest("Inventory", sku).version == 1
    assert repo.load(sku).on_hand == 5 and len(store) == 1
    store.close()


def test_a_key_file_lost_to_a_full_disk_is_still_a_duplicate_after_a_later_key_and_a_restart(
    tmp_path, monkeypatch
):
    hits = fail_replace(monkeypatch, "idempotency", errno.ENOSPC, times=1)
    store, bus = open_bus(tmp_path / "s")
    with pytest.warns(RuntimeWarning, match="idempotency keys: a write to .* failed"):
        assert bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1")).status == "ok"
    assert hits and bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1")).status == "duplicate"
    assert bus.dispatch(AddStock("sku-1", 1, idempotency_key="k-2")).status == "ok"
    store.close()
    store, bus = open_bus(tmp_path / "s")
    assert [bus.dispatch(AddStock("sku-1", 5, idempotency_key=k)).status for k in ("k-1", "k-2")] == [
        "duplicate", "duplicate",
    ]  # fmt: skip
    assert stock(store) == 6 and duplicate_side_effects(store).height == 0
    store.close()


def test_a_key_lost_by_one_writer_is_found_by_the_next_before_it_records_a_higher_head(
    tmp_path, monkeypatch
):
    """Two writers (store objects) take turns on one store; the first loses its key file."""
    path = tmp_path / "s"
    es.ParquetEventStore(path).close()
    later, later_bus = open_bus(path)  # made before the first writer's command
    first, first_bus = open_bus(path)
    fail_replace(monkeypatch, "idempotency", errno.ENOSPC, times=1)
    with pytest.warns(RuntimeWarning):
        first_bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1"))
    first.close()
    assert later_bus.dispatch(AddStock("sku-1", 1, idempotency_key="k-2")).status == "ok"
    later.close()
    store, bus = open_bus(path)
    assert bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1")).status == "duplicate"
    assert stock(store) == 6
    store.close()


def fail_events_folder_sync(monkeypatch, events: Path, call: str, code: int) -> list[str]:
    """Make the first ``os.<call>`` on the events folder (its sync after a commit's rename)
    raise ``OSError(code)``."""
    real, hits = getattr(os, call), []

    def is_events(fd_or_path) -> bool:
        if call == "open":
            return Path(fd_or_path).resolve() == events
        return Path(os.readlink(f"/proc/self/fd/{fd_or_path}")) == events

    def failing(target, *args, **kwargs):
        if hits or not is_events(target):
            return real(target, *args, **kwargs)
        hits.append(call)
        if call == "close":
            real(target)  # the kernel releases the descriptor even when close reports an error
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, call, failing)
    return hits


@pytest.mark.parametrize(
    ("call", "code"),
    [("open", errno.EIO), ("fsync", errno.EIO), ("fsync", errno.ENOSPC), ("close", errno.EIO)],
)
def test_an_append_that_raised_after_its_commit_is_found_by_its_key(tmp_path, monkeypatch, call, code):
    store, bus = open_bus(tmp_path / "s")
    hits = fail_events_folder_sync(monkeypatch, (tmp_path / "s" / "events").resolve(), call, code)
    with pytest.raises(es.CommitUnconfirmedError) as raised:  # committed, durability unconfirmed
        bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1"))
    assert hits and len(store) == 1  # the events are stored although append raised
    assert "the command was carried out all the same" in "".join(raised.value.__notes__)
    assert bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1")).status == "duplicate"
    store.close()
    store, bus = open_bus(tmp_path / "s")
    assert bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1")).status == "duplicate"
    assert stock(store) == 5
    store.close()


def test_an_append_that_stored_nothing_is_carried_out_by_the_retry(tmp_path, monkeypatch):
    """The check by key must not turn a failure that stored nothing into a duplicate; and a
    key whose store could not be checked is checked before it runs again."""
    store, bus = open_bus(tmp_path / "s")
    real_link, real_head = os.link, type(store).head_position
    disk = ["fine"]

    def link(src, dst):  # the store publishes a commit with a hard link (no replace)
        if Path(dst).parent.name == "events" and disk == ["fine"]:
            disk[0] = "failing"  # the commit's publish fails, and so does the next look
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(dst))
        return real_link(src, dst)

    def head(self):
        if disk == ["failing"]:
            disk[0] = "recovered"
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_head.fget(self)

    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(type(store), "head_position", property(head))
    with pytest.raises(OSError) as raised:
        bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1"))
    assert len(store) == 0
    assert "could not be checked" in "".join(raised.value.__notes__)
    with pytest.raises(es.StoreIOError, match="stopped writing"):  # until opened again
        bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1"))
    store.close()
    store, bus = open_bus(tmp_path / "s")
    assert bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1")).status == "ok"
    assert bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1")).status == "duplicate"
    assert stock(store) == 5
    store.close()


CHILD = textwrap.dedent(
    """
    import errno, os, signal, sys
    import esnotebook as es
    from esnotebook.examples import AddStock, order_domain_bus
    from esnotebook.idempotency import DurableIdempotency

    store = es.ParquetEventStore(sys.argv[1])
    bus = order_domain_bus(store, middleware=[DurableIdempotency(store)])
    real, writes = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if "idempotency" in str(dst):
            writes.append(dst)
            if len(writes) == 1:  # k-1: the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
            if len(writes) == 3:  # k-3: killed between its append and its key file
                os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst, *args, **kwargs)

    os.replace = replace
    for i, quantity in enumerate([5, 2, 3], start=1):
        try:
            status = bus.dispatch(AddStock("sku-1", quantity, idempotency_key=f"k-{i}")).status
        except Exception as exc:
            status = "raised " + "".join(getattr(exc, "__notes__", []))
        print(f"k-{i}", status, flush=True)
    """
)


def test_a_sigkilled_sender_after_a_lost_key_file_repeats_nothing_after_a_restart(tmp_path):
    path = tmp_path / "s"
    es.ParquetEventStore(path).close()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout.split("\n")[:2] == ["k-1 ok", "k-2 ok"]
    store, bus = open_bus(path)
    assert len(store) == 3  # k-3's events were stored before the kill
    statuses = [bus.dispatch(AddStock("sku-1", 9, idempotency_key=f"k-{i}")).status for i in (1, 2, 3)]
    assert statuses == ["duplicate"] * 3
    assert stock(store) == 10 and duplicate_side_effects(store).height == 0
    store.close()


FAULTS = ["none", "snapshot write", "key file", "events folder sync", "commit publish"]


def inject(mp: pytest.MonkeyPatch, fault: str, events: Path) -> None:
    if fault == "snapshot write":
        fail_replace(mp, "snapshots", errno.ENOSPC)
    elif fault == "key file":
        fail_replace(mp, "idempotency", errno.ENOSPC)
    elif fault == "events folder sync":  # after the rename: committed, but append raises
        fail_events_folder_sync(mp, events, "fsync", errno.EIO)
    elif fault == "commit publish":  # before the commit's name exists: nothing stored
        real = os.link

        def link(src, dst):
            if Path(dst).parent == events:
                raise OSError(errno.EIO, os.strerror(errno.EIO), str(dst))
            return real(src, dst)

        mp.setattr(os, "link", link)


@settings(max_examples=12, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(1, 9), st.sampled_from(FAULTS), st.booleans()),
        min_size=1, max_size=8,
    )
)
def test_whatever_fails_each_key_is_carried_out_at_most_once(tmp_path_factory, deliveries):
    """A delivery that returned, or raised saying it was carried out, counts once; one that
    raised without saying so stored nothing. Restarts in between change nothing."""
    path = tmp_path_factory.mktemp("once") / "s"
    store, bus = open_bus(path, snapshot_every=1)
    events = (path / "events").resolve()
    done: dict[int, int] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for key, quantity, fault, restart in deliveries:
            with pytest.MonkeyPatch.context() as mp:
                inject(mp, fault, events)
                try:
                    status = bus.dispatch(AddStock("sku-1", quantity, idempotency_key=f"k-{key}")).status
                except (OSError, es.CommitUnconfirmedError) as exc:
                    notes = "".join(getattr(exc, "__notes__", []))
                    status = "carried out" if "carried out" in notes else "not stored"
            if status == "duplicate":
                assert key in done
            elif status != "not stored":
                assert key not in done
                done[key] = quantity
            if restart:
                store.close()
                store, bus = open_bus(path, snapshot_every=1)
        store.close()
        store, bus = open_bus(path, snapshot_every=1)
        again = [bus.dispatch(AddStock("sku-1", 1, idempotency_key=f"k-{k}")).status for k in done]
        assert again == ["duplicate"] * len(done)
    assert stock(store) == sum(done.values()) and duplicate_side_effects(store).height == 0
    store.close()
