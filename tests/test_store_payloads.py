"""What a store accepts it can store and read back; what it cannot, it refuses whole.

Both backends check every payload at ``append`` / ``append_frame`` time against what they
can store and what the Parquet reader will reopen: 64-bit integers, valid Unicode, at most
:data:`~esnotebook._schema.MAX_DEPTH` Parquet levels per field and a footer pyarrow opens.
A refusal is an :class:`EventDataError` naming the event, the field, the limit and the
value, and leaves the store byte-for-byte unchanged.
"""

from __future__ import annotations

import math
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

import hypothesis.strategies as st
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from polars.testing import assert_frame_equal

from esnotebook._schema import MAX_DEPTH, normalize
from esnotebook.errors import EventDataError
from esnotebook.events import NewEvent
from esnotebook.store import InMemoryEventStore, ParquetEventStore
from esnotebook.store import memory as memory_module

SURROGATE = "a\udc80b"


def nested(kind: str, depth: int, leaf: object = 1) -> object:
    """``leaf`` inside ``depth`` dicts (``kind="dict"``) or lists."""
    value = leaf
    for _ in range(depth):
        value = {"k": value} if kind == "dict" else [value]
    return value


def canon(value: object) -> object:
    """``value`` with NaN made comparable (NaN != NaN), recursively."""
    if isinstance(value, float) and math.isnan(value):
        return "<nan>"
    if isinstance(value, dict):
        return {k: canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canon(v) for v in value]
    return value


def events_view(events) -> list[tuple]:
    return [
        (e.position, e.stream_id, e.version, e.event_type, e.event_id, canon(e.data), canon(e.metadata))
        for e in events
    ]


def state(store) -> object:
    """What a refusal must leave unchanged: the folder's bytes (but the writer's ``LOCK``,
    made when it first writes), or every read of the memory store."""
    if isinstance(store, ParquetEventStore):
        files = [p for p in sorted(store.path.rglob("*")) if p.is_file() and p.name != "LOCK"]
        return {str(p.relative_to(store.path)): p.read_bytes() for p in files}
    return store.head_position, events_view(store.read_all()), store.to_polars(with_metadata=True)


def assert_same_state(before, after) -> None:
    if isinstance(before, dict):
        assert after == before
    else:
        assert after[:2] == before[:2]
        assert_frame_equal(after[2], before[2])


@pytest.fixture
def seeded(store_factory):
    """A store holding 5 events whose ``n`` field is Int64 and ``s`` field String."""
    store = store_factory()
    for i in range(5):
        store.append(f"s-{i % 2}", [NewEvent("T", {"n": i, "s": f"v{i}"})])
    return store


# ------------------------------------------------------------------ append refusals
BAD_APPENDS = {
    # name: (stream_id, event, message parts)
    "2**70 into an Int64 field (fast path)": ("s-0", NewEvent("T", {"n": 2**70, "s": "x"}),
        ["events[0] (T) field 'n'", "-2**63..2**63-1", str(2**70)]),
    "-2**63-1 into an Int64 field": ("s-0", NewEvent("T", {"n": -(2**63) - 1, "s": "x"}),
        ["field 'n'", "-2**63..2**63-1", str(-(2**63) - 1)]),
    "2**64 in a new field": ("s-0", NewEvent("U", {"big": 2**64}), ["events[0] (U) field 'big'", "64 bits"]),
    "lone surrogate in a String field (fast path)": ("s-0", NewEvent("T", {"n": 1, "s": SURROGATE}),
        ["events[0] (T) field 's'", "valid Unicode", repr(SURROGATE)]),
    "lone surrogate in a nested value": ("s-0", NewEvent("U", {"x": {"y": [SURROGATE]}}),
        ["field 'x'.y[0]", "lone surrogate"]),
    "lone surrogate in a dict key": ("s-0", NewEvent("U", {"x": {SURROGATE: 1}}), ["dict key", "lone surrogate"]),
    "lone surrogate in a field name": ("s-0", NewEvent("U", {SURROGATE: 1}), ["U: payload field name", "lone surrogate"]),
    "lone surrogate in a stream id": (SURROGATE, NewEvent("T", {"n": 1, "s": "x"}), ["stream_id", "lone surrogate"]),
    "lone surrogate in metadata": ("s-0", NewEvent("T", {"n": 1, "s": "x"}, metadata={"who": SURROGATE}),
        ["events[0] (T): metadata", "valid Unicode"]),
    "NaN in metadata": ("s-0", NewEvent("T", {"n": 1, "s": "x"}, metadata={"v": math.nan}),
        ["events[0] (T): metadata", "finite"]),
    "metadata nested 100,000 deep": ("s-0", NewEvent("T", {"n": 1, "s": "x"}, metadata=nested("dict", 100_000)),
        ["events[0] (T): metadata"]),
    "a dict nested 99 deep": ("s-0", NewEvent("U", {"x": nested("dict", 99)}),
        ["events[0] (U) field 'x'", f"{MAX_DEPTH} Parquet levels", "nested too deep"]),
    "a list nested 50 deep": ("s-0", NewEvent("U", {"x": nested("list", 50)}), ["field 'x'", "nested too deep"]),
    "a dict nested 5,000 deep": ("s-0", NewEvent("U", {"x": nested("dict", 5000)}), ["nested too deep"]),
    "a field name the footer cannot hold": ("s-0", NewEvent("U", {"n" * 76_000_000: 1}),
        ["too wide", "100,000,000 bytes of Arrow schema"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_APPENDS))
def test_append_refuses_what_cannot_be_stored_and_read_back_and_writes_nothing(seeded, case):
    stream_id, event, parts = BAD_APPENDS[case]
    before = state(seeded)
    with pytest.raises(EventDataError) as info:
        seeded.append(stream_id, [event])
    for part in parts:
        assert part in str(info.value)
    assert_same_state(before, state(seeded))
    assert len(list(seeded.read_all())) == seeded.head_position == 5


def test_an_append_with_a_bad_event_late_in_the_batch_writes_none_of_it(seeded):
    before = state(seeded)
    with pytest.raises(EventDataError, match=r"events\[2\] \(T\) field 'n'"):
        seeded.append("s-9", [NewEvent("T", {"n": 1, "s": "a"}), NewEvent("T", {"n": 2, "s": "b"}),
                              NewEvent("T", {"n": 2**63, "s": "c"})])  # fmt: skip
    assert_same_state(before, state(seeded))


def test_ids_with_lone_surrogates_are_refused_when_the_event_is_made():
    for name in ("correlation_id", "causation_id"):
        with pytest.raises(EventDataError, match=f"{name} must be valid Unicode"):
            NewEvent("T", {}, **{name: SURROGATE})


@pytest.mark.parametrize(("kind", "depth"), [("dict", 98), ("list", 49)])
def test_the_depth_limit_is_where_a_reopened_store_stops_reading(tmp_path, kind, depth):
    store = ParquetEventStore(tmp_path / "s")
    with pytest.raises(EventDataError, match="nested too deep"):
        store.append("s", [NewEvent("T", {"x": nested(kind, depth + 1)})])
    store.append("s", [NewEvent("T", {"x": nested(kind, depth)})])
    store.close()
    reopened = ParquetEventStore(tmp_path / "s")
    assert [e.data for e in reopened.read_all()] == [{"x": nested(kind, depth)}]
    reopened.close()


def test_an_empty_dict_beside_other_values_in_a_list_reads_back_as_none_everywhere(store):
    store.append("s", [NewEvent("T", {"a": [[False], [{}]], "b": [[1], {}]})])
    want = {"a": [[False], [None]], "b": [[1], None]}
    assert [e.data for e in store.read_all()] == [e.data for e in store.read_stream("s")] == [want]
    assert store.to_polars().select("a", "b").to_dicts() == [want]


def test_metadata_keys_read_back_as_json_gives_them_in_both_stores(store):
    (recorded,) = store.append("s", [NewEvent("T", {}, metadata={1: {"a": (1, 2)}})])
    assert recorded.metadata == {"1": {"a": [1, 2]}}
    assert [e.metadata for e in store.read_all()] == [{"1": {"a": [1, 2]}}]


# ------------------------------------------------------------------ append_frame refusals
def frame(**payload) -> pl.DataFrame:
    n = len(next(iter(payload.values())))
    return pl.DataFrame({"stream_id": [f"f-{i}" for i in range(n)], "event_type": ["F"] * n, **payload})


BAD_FRAMES = {
    "UInt64 above 2**63-1": (lambda: frame(u=pl.Series([1, 2, 2**63], dtype=pl.UInt64)),
        ["row 2 (F) field 'u'", "9223372036854775808", "-2**63..2**63-1"]),
    "UInt64 above 2**63-1 inside a list": (lambda: frame(u=pl.Series([[1], [2**64 - 1]], dtype=pl.List(pl.UInt64))),
        ["row 1 (F) field 'u'", "18446744073709551615"]),
    "NaN in metadata text": (lambda: frame(metadata=['{"v":1}', '{"v":NaN}']), ["row 1: metadata", "NaN"]),
    "a lone surrogate in a pandas object column": (
        lambda: pd.DataFrame({"stream_id": ["a", "b"], "event_type": ["F", "F"], "z": ["ok", SURROGATE]}, dtype=object),
        ["row 1 column 'z'", "lone surrogate"]),
    "a struct column nested 99 deep": (lambda: frame(x=[nested("dict", 99)]), ["column 'x'", "nested too deep"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_append_frame_refuses_what_cannot_be_stored_and_writes_nothing(seeded, case):
    make, parts = BAD_FRAMES[case]
    before = state(seeded)
    with pytest.raises(EventDataError) as info:
        seeded.append_frame(make())
    for part in parts:
        assert part in str(info.value)
    assert_same_state(before, state(seeded))


# ------------------------------------------------------------------ the in-memory tail
def test_a_failed_seal_keeps_every_event_of_the_tail(monkeypatch):
    store = InMemoryEventStore()
    for i in range(6):
        store.append(f"s-{i}", [NewEvent("T", {"n": i})])
    real = memory_module.frame_from_events

    def fail_once(*args):
        monkeypatch.setattr(memory_module, "frame_from_events", real)
        raise MemoryError("injected")

    monkeypatch.setattr(memory_module, "frame_from_events", fail_once)
    with pytest.raises(MemoryError):
        store.to_polars()
    assert [e.position for e in store.read_all()] == [1, 2, 3, 4, 5, 6]
    assert store.to_polars()["n"].to_list() == [0, 1, 2, 3, 4, 5]


# ------------------------------------------------------------------ threads
def test_reads_under_concurrent_appends_are_whole_gap_free_prefixes(store_factory):
    """Writer threads append 1-3 events at a time, often of new types; reader threads'
    read_all, to_polars and read_stream each return positions 1..n (no gap, no repeat),
    with n the head after some append (whole appends only)."""
    store = store_factory(durable=False) if store_factory.kind == "parquet" else store_factory()
    rounds = 150 if store_factory.kind == "memory" else 30
    heads: set[int] = {0}
    stream_tops: dict[str, set[int]] = {}
    done = threading.Event()
    problems: list[str] = []

    def write(w: int) -> None:
        for r in range(rounds):
            stream = f"w{w}-{r % 3}"
            events = [NewEvent(f"T{w}_{r % 40}", {f"f{r % 7}": r}) for _ in range(1 + r % 3)]
            recorded = store.append(stream, events)
            heads.add(recorded[-1].position)
            stream_tops.setdefault(stream, {0}).add(recorded[-1].version)

    def check(what: str, positions: list[int]) -> None:
        if positions != list(range(1, len(positions) + 1)):
            problems.append(f"{what}: not a gap-free prefix ({len(positions)} events)")
        elif positions and positions[-1] not in heads:
            problems.append(f"{what}: ends at {positions[-1]}, inside an append")

    def read(kind: int) -> None:
        while not done.is_set():
            if kind == 0:
                check("read_all", [e.position for e in store.read_all()])
            elif kind == 1:
                check("to_polars", store.to_polars()["position"].to_list())
            else:
                stream = "w0-1"
                versions = [e.version for e in store.read_stream(stream)]
                if versions != list(range(1, len(versions) + 1)):
                    problems.append(f"read_stream: versions {versions[:5]}... are not 1..n")
                elif versions and versions[-1] not in stream_tops.get(stream, ()):
                    problems.append("read_stream: ends inside an append")

    writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    readers = [threading.Thread(target=read, args=(k,)) for k in (0, 0, 1, 1, 2)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join(timeout=120)
    done.set()
    for t in readers:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in writers + readers)
    assert problems == []
    check("final read_all", [e.position for e in store.read_all()])
    assert problems == [] and store.head_position == max(heads)


# ------------------------------------------------------------------ wide payloads
def test_read_all_of_a_wide_payload_gives_every_field(store):
    data = {f"f{i}": i for i in range(3000)}
    store.append("s", [NewEvent("T", data)])
    store.append_frame(pl.DataFrame({"stream_id": ["s"], "event_type": ["T"], "f7": [-7]}))
    first, second = store.read_all()
    assert first.data == data
    assert second.data == {**dict.fromkeys(data), "f7": -7}


# ------------------------------------------------------------------ property
names = st.sampled_from(["a", "b", "c", "d"]) | st.just(SURROGATE)
texts = st.text(max_size=4) | st.sampled_from([SURROGATE, "\ud800", "é\U0001f600"])
ints = st.integers(-(2**63), 2**63 - 1) | st.integers(2**63, 2**70) | st.integers(-(2**70), -(2**63) - 1)
leaves = st.none() | st.booleans() | ints | st.floats() | texts
values = st.recursive(
    leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3), max_leaves=8
)
deep = st.builds(nested, st.sampled_from(["dict", "list"]), st.integers(40, 105), leaves)
payloads = st.dictionaries(names, values | deep, max_size=3)
appends = st.lists(st.tuples(st.sampled_from(["s-1", "s-2"]), st.sampled_from(["A", "B"]), payloads),
                   min_size=1, max_size=6)  # fmt: skip


def check_round_trip(store, plan, reopen) -> None:
    """Append ``plan`` one event at a time; each refusal must leave the store as it was,
    and every read must give back exactly the accepted events."""
    accepted = []
    for stream, event_type, payload in plan:
        before = state(store)
        try:
            accepted += store.append(stream, [NewEvent(event_type, payload)])
        except EventDataError:
            assert_same_state(before, state(store))
    schemas = {t: store.schema(t) for t in store.event_types()}
    # Fields (and dict keys) a type gained after an event was stored read back as None for it.
    expected = events_view(
        replace(e, data={f: normalize(e.data.get(f), dt) for f, dt in schemas[e.type].items()}) for e in accepted
    )
    assert events_view(store.read_all()) == expected
    for stream in store.streams():
        assert events_view(store.read_stream(stream)) == [x for x in expected if x[1] == stream]
    rows = store.to_polars().to_dicts()
    assert [(r["position"], canon({f: r[f] for f in schemas[r["event_type"]]})) for r in rows] == [
        (x[0], x[5]) for x in expected
    ]
    if reopen is not None:
        assert events_view(reopen()) == expected


@settings(max_examples=60)
@given(plan=appends)
def test_memory_store_reads_back_exactly_what_it_accepts(plan):
    check_round_trip(InMemoryEventStore(), plan, None)


@settings(max_examples=30)
@given(plan=appends)
def test_parquet_store_reads_back_exactly_what_it_accepts_also_after_reopening(plan):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s"
        store = ParquetEventStore(path, durable=False)

        def reopen():
            store.close()
            again = ParquetEventStore(path)
            try:
                return list(again.read_all())
            finally:
                again.close()

        try:
            check_round_trip(store, plan, reopen)
        finally:
            store.close()
