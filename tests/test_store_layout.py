"""Layout v2 of the stores: one frame (file) per commit in position order, one column type
per field name across event types, and fast per-stream reads on the Parquet store."""

from __future__ import annotations

import json
import re
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from esnotebook.errors import EventDataError
from esnotebook.events import NewEvent
from esnotebook.store import InMemoryEventStore, ParquetEventStore
from esnotebook.store._frames import events_from_frame, frame_from_events

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def placed(order: str) -> NewEvent:
    return NewEvent("OrderPlaced", {"order_id": order, "customer": "c"})


def item(order: str, sku: str = "s", quantity: int = 1) -> NewEvent:
    return NewEvent("ItemAdded", {"order_id": order, "sku": sku, "quantity": quantity, "price": 100})


def ranged(name: str) -> str:
    """A file's name without its checksum and suffix: ``<first>-<last>``."""
    return name.split(".")[0]


def fields_of(file: Path) -> dict[str, list[str]]:
    return json.loads(pq.read_metadata(file).metadata[b"esnotebook.fields"])


# ---------------------------------------------------------------------------- one file per commit
def test_each_commit_is_one_file_named_by_its_positions_in_position_order(tmp_path):
    with ParquetEventStore(tmp_path / "s") as store:
        store.append("order-1", [placed("1"), item("1"), item("1", "t")])
        store.append_frame(pl.DataFrame({
            "stream_id": ["order-2", "order-1", "order-2"], "event_type": ["OrderPlaced", "ItemAdded", "ItemAdded"],
            "order_id": ["2", "1", "2"], "customer": ["d", None, None], "sku": [None, "u", "v"],
        }))  # fmt: skip
        store.append("order-1", [NewEvent("OrderShipped", {"order_id": "1"})])
    names = sorted(p.name for p in (tmp_path / "s" / "events").iterdir())
    assert [ranged(n) for n in names] == ["000000000001-000000000003", "000000000004-000000000006",
                                          "000000000007-000000000007"]  # fmt: skip
    assert all(re.fullmatch(r"\d{12}-\d{12}\.[0-9a-f]{8}\.parquet", n) for n in names)
    second = tmp_path / "s" / "events" / names[1]
    frame = pl.read_parquet(second)
    assert frame["position"].to_list() == [4, 5, 6]
    assert frame["event_type"].to_list() == ["OrderPlaced", "ItemAdded", "ItemAdded"]
    # The union of the commit's fields, null where a type lacks one ...
    assert frame["customer"].to_list() == ["d", None, None] and frame["sku"].to_list() == [None, "u", "v"]
    # ... and the metadata says which fields are whose.
    assert fields_of(second) == {"OrderPlaced": ["order_id", "customer"],
                                 "ItemAdded": ["order_id", "sku", "quantity", "price"]}  # fmt: skip
    assert fields_of(tmp_path / "s" / "events" / names[2]) == {"OrderShipped": ["order_id"]}


def test_an_event_read_back_holds_exactly_its_types_fields_and_later_fields_as_none(tmp_path):
    path = tmp_path / "s"
    with ParquetEventStore(path) as store:
        store.append("order-1", [placed("1"), item("1")])
        store.append("order-2", [NewEvent("OrderPlaced", {"order_id": "2", "customer": "d", "channel": "web"})])
    reader = ParquetEventStore(path)
    first, added = reader.read_stream("order-1")
    assert first.data == {"order_id": "1", "customer": "c", "channel": None}
    assert added.data == {"order_id": "1", "sku": "s", "quantity": 1, "price": 100}
    assert reader.read_stream("order-2")[0].data["channel"] == "web"


@pytest.mark.parametrize("kind", ["memory", "parquet"])
def test_scan_is_the_commits_stacked_without_a_sort(tmp_path, kind):
    """The canonical frame comes out in position order, and its plan holds no sort."""
    store = InMemoryEventStore() if kind == "memory" else ParquetEventStore(tmp_path / "s", durable=False)
    for i in range(5):
        store.append(f"order-{i}", [placed(str(i)), item(str(i))])
        store.append(f"order-{i - 1}", [NewEvent("OrderShipped", {"order_id": str(i - 1)})])
    lf = store.scan()
    assert "SORT" not in lf.explain().upper()
    df = lf.collect()
    assert df["position"].to_list() == list(range(1, 16))
    narrowed = store.scan(event_types=["ItemAdded", "OrderShipped"], from_position=3, to_position=12).collect()
    expected = df.filter(pl.col("event_type").is_in(["ItemAdded", "OrderShipped"]) & pl.col("position").is_between(4, 12))
    assert_frame_equal(narrowed, expected.select(narrowed.columns))
    assert narrowed.columns == [*df.columns[:8], "order_id", "sku", "quantity", "price"]


# ---------------------------------------------------------------------------- one type per field
@pytest.mark.parametrize("kind", ["memory", "parquet"])
@pytest.mark.parametrize("how", ["append", "append_frame"])
def test_a_field_name_keeps_one_column_type_across_event_types(tmp_path, kind, how):
    """'amount' as int64 in one type and string in another is refused, naming both; nothing written."""
    store = InMemoryEventStore() if kind == "memory" else ParquetEventStore(tmp_path / "s")
    store.append("pay-1", [NewEvent("PaymentReceived", {"amount": 300})])
    before = store.to_polars(with_metadata=True)
    files = sorted((tmp_path / "s").rglob("*")) if kind == "parquet" else None
    with pytest.raises(EventDataError) as info:
        if how == "append":
            store.append("pay-1", [NewEvent("RefundIssued", {"amount": "3.00"})])
        else:
            store.append_frame(pl.DataFrame({"stream_id": ["pay-1"], "event_type": ["RefundIssued"], "amount": ["3.00"]}))
    text = str(info.value)
    assert "RefundIssued" in text and "'PaymentReceived'" in text and "String" in text and "Int64" in text
    assert "one field name keeps one column type" in text and "nothing was written" in text
    assert_frame_equal(store.to_polars(with_metadata=True), before)
    assert store.event_types() == ["PaymentReceived"]
    if files is not None:
        assert sorted((tmp_path / "s").rglob("*")) == files
        store.close()


@pytest.mark.parametrize("kind", ["memory", "parquet"])
def test_an_int_goes_into_another_types_float_column_and_a_none_field_takes_the_shared_type(tmp_path, kind):
    store = InMemoryEventStore() if kind == "memory" else ParquetEventStore(tmp_path / "s")
    store.append("a", [NewEvent("Measured", {"value": 1.5, "note": None})])
    store.append("a", [NewEvent("Counted", {"value": 2, "note": "x"})])
    assert store.schema("Counted")["value"] == pl.Float64
    assert store.schema("Measured")["note"] == pl.String
    assert [e.data["value"] for e in store.read_all()] == [1.5, 2.0]
    assert store.to_polars().schema["value"] == pl.Float64
    if kind == "parquet":
        reopened = ParquetEventStore(tmp_path / "s")
        assert reopened.schema("Counted") == store.schema("Counted")
        assert reopened.field_types() == {"value": pl.Float64, "note": pl.String}
        store.close()


# ---------------------------------------------------------------------------- per-stream reads
@pytest.fixture
def scans(monkeypatch):
    """The file lists every ``pl.scan_parquet`` call receives."""
    calls: list[list[str]] = []
    real = pl.scan_parquet

    def spy(source, **kwargs):
        calls.append([ranged(Path(f).name) for f in (source if isinstance(source, list) else [source])])
        return real(source, **kwargs)

    monkeypatch.setattr(pl, "scan_parquet", spy)
    return calls


def _shop(path: Path) -> None:
    with ParquetEventStore(path, durable=False) as store:
        for i in range(6):
            store.append(f"order-{i}", [placed(str(i)), item(str(i))])
        store.append("order-2", [NewEvent("OrderShipped", {"order_id": "2"})])


def test_read_stream_opens_only_the_files_that_hold_the_stream(tmp_path, scans):
    _shop(tmp_path / "s")
    reader = ParquetEventStore(tmp_path / "s")
    reader.stream_version("order-2")  # builds the index (one scan of every file)
    scans.clear()
    assert [e.version for e in reader.read_stream("order-2")] == [1, 2, 3]
    assert scans == [["000000000005-000000000006", "000000000013-000000000013"]]
    scans.clear()
    assert reader.read_stream("order-4", from_version=2)[0].data["sku"] == "s"
    assert scans == [["000000000009-000000000010"]]


def test_the_stream_index_survives_compaction_and_follows_other_writers(tmp_path, scans):
    path = tmp_path / "s"
    _shop(path)
    reader = ParquetEventStore(path)
    assert reader.stream_version("order-1") == 2
    with ParquetEventStore(path) as writer:
        writer.compact(max_events=6)
        writer.append("order-1", [NewEvent("OrderShipped", {"order_id": "1"})])
    scans.clear()
    events = reader.read_stream("order-1")
    assert [(e.version, e.position) for e in events] == [(1, 3), (2, 4), (3, 14)]
    assert scans[-1] == ["000000000001-000000000006", "000000000014-000000000014"]


def test_a_load_after_a_save_in_the_same_process_reads_no_file(tmp_path, scans):
    with ParquetEventStore(tmp_path / "s") as store:
        saved = store.append("order-1", [placed("1")], expected_version=0)
        saved += store.append("order-1", [item("1")], expected_version=1)
        scans.clear()
        assert store.read_stream("order-1") == saved
        assert store.read_stream("order-1", from_version=2) == saved[1:]
        assert scans == []
        # The same events come back from the files.
        assert ParquetEventStore(tmp_path / "s").read_stream("order-1") == saved


def test_cached_streams_stay_right_when_another_writer_or_a_bulk_import_extends_them(tmp_path):
    path = tmp_path / "s"
    first = ParquetEventStore(path)
    first.append("order-1", [placed("1")])
    first.close()
    with ParquetEventStore(path) as second:
        second.append("order-1", [item("1", "a")])
    assert [e.data.get("sku") for e in first.read_stream("order-1")] == [None, "a"]
    first.append_frame(pl.DataFrame({"stream_id": ["order-1"], "event_type": ["ItemAdded"], "sku": ["b"]}))
    first.append("order-1", [item("1", "c")])
    assert [e.version for e in first.read_stream("order-1")] == [1, 2, 3, 4]
    assert [e.data.get("sku") for e in first.read_stream("order-1")] == [None, "a", "b", "c"]
    assert first.read_stream("order-1", to_version=2) == ParquetEventStore(path).read_stream("order-1", to_version=2)
    first.close()


_STEP = st.tuples(st.sampled_from(["w1", "w2"]), st.integers(0, 3), st.integers(1, 3), st.booleans())


@settings(max_examples=25)
@given(st.lists(_STEP, min_size=1, max_size=12))
def test_read_stream_equals_the_in_memory_store_whoever_wrote_and_read_last(steps):
    """Two store objects on one folder take turns writing (and reading): every read_stream of
    either equals the in-memory store fed the same appends, version by version."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s"
        objs = {"w1": ParquetEventStore(path, durable=False), "w2": ParquetEventStore(path, durable=False)}
        model = InMemoryEventStore()
        for who, stream, n, bulk in steps:
            store = objs[who]
            for other in objs.values():
                if other is not store:
                    other.close()
            sid = f"order-{stream}"
            if bulk:
                frame = pl.DataFrame({"stream_id": [sid] * n, "event_type": ["ItemAdded"] * n, "sku": [f"k{i}" for i in range(n)]})
                store.append_frame(frame)
                model.append_frame(frame)
            else:
                events = [item(str(stream), f"k{i}", i) for i in range(n)]
                store.append(sid, events)
                model.append(sid, events)
            for reader in objs.values():
                for s in model.streams():
                    got = [(e.position, e.version, e.event_type, e.data) for e in reader.read_stream(s)]
                    want = [(e.position, e.version, e.event_type, e.data) for e in model.read_stream(s)]
                    assert got == want
                    lo = max(1, model.stream_version(s) - 1)
                    assert [e.version for e in reader.read_stream(s, from_version=lo)] == list(range(lo, model.stream_version(s) + 1))
        for o in objs.values():
            o.close()


# ---------------------------------------------------------------------------- events_from_frame
@pytest.mark.parametrize("n", [3, 600])
def test_events_from_a_mixed_frame_keep_row_order_type_fields_and_utc(n):
    """Short and long columns (the long ones convert datetimes vectorised) give the same events."""
    from esnotebook.events import RecordedEvent

    events = [
        RecordedEvent(i + 1, f"s{i % 7}", i // 7 + 1, "A" if i % 3 else "B", f"id-{i}",
                      T0 + timedelta(microseconds=37 * i), f"id-{i}", None,
                      {"x": i, "when": T0} if i % 3 else {"y": str(i)}, {"k": i} if i % 5 == 0 else {})  # fmt: skip
        for i in range(n)
    ]
    fields = {"A": ["x", "when"], "B": ["y"]}
    schema = {"x": pl.Int64(), "when": pl.Datetime("us", "UTC"), "y": pl.String()}
    frame = frame_from_events(events, schema, [i % 7 for i in range(n)])
    back = events_from_frame(frame, fields)
    assert back == events
    assert all(e.recorded_at.tzinfo is timezone.utc for e in back)
    assert all(e.data["when"].tzinfo is timezone.utc for e in back if e.event_type == "A")
