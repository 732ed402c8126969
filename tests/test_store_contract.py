"""The event-store contract: every backend (``store`` / ``store_factory`` fixtures) must pass it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from esnotebook.errors import ConcurrencyError, EventDataError
from esnotebook.events import CANONICAL_COLUMNS, NewEvent, RecordedEvent
from esnotebook.store import InMemoryEventStore, ParquetEventStore

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def fixed_clock():
    return T0


def placed(order: str, customer: str = "c-1") -> NewEvent:
    return NewEvent("OrderPlaced", {"order_id": order, "customer": customer})


def item(order: str, sku: str = "sku-1", quantity: int = 1, price: int = 100) -> NewEvent:
    return NewEvent("ItemAdded", {"order_id": order, "sku": sku, "quantity": quantity, "price": price})


def paid(order: str, amount: int) -> NewEvent:
    return NewEvent("PaymentReceived", {"order_id": order, "amount": amount})


def snapshot(store):
    """Everything observable about a store, to show a rejected call changed nothing."""
    return (
        store.head_position,
        len(store),
        store.streams(),
        {s: store.stream_version(s) for s in store.streams()},
        {t: store.schema(t) for t in store.event_types()},
        store.to_polars(with_metadata=True),
    )


def assert_unchanged(store, before):
    after = snapshot(store)
    assert after[:5] == before[:5]
    assert_frame_equal(after[5], before[5])


# ---------------------------------------------------------------------------- append
def test_positions_are_global_from_1_and_versions_per_stream_from_1(store):
    a = store.append("order-a", [placed("a"), item("a")])
    b = store.append("order-b", [placed("b")])
    c = store.append("order-a", [item("a", "sku-2")])
    assert [e.position for e in a + b + c] == [1, 2, 3, 4]
    assert [e.version for e in a] == [1, 2] and [e.version for e in b] == [1]
    assert [e.version for e in c] == [3]
    assert store.head_position == len(store) == 4
    assert store.streams() == ["order-a", "order-b"]
    assert store.stream_version("order-a") == 3 and store.stream_version("nope") == 0


def test_recorded_event_carries_ids_time_and_payload(store_factory):
    store = store_factory(clock=fixed_clock)
    e = NewEvent("OrderPlaced", {"order_id": "a", "customer": "c"}, metadata={"user": "u"},
                 causation_id="cmd-1")  # fmt: skip
    (r,) = store.append("order-a", [e])
    assert isinstance(r, RecordedEvent)
    assert (r.event_id, r.correlation_id, r.causation_id) == (e.event_id, e.event_id, "cmd-1")
    assert r.recorded_at == T0 and r.recorded_at.utcoffset() == timedelta(0)
    assert r.data == {"order_id": "a", "customer": "c"} and r.metadata == {"user": "u"}
    assert store.read_stream("order-a") == [r]


def test_empty_append_writes_nothing_but_still_checks_expected_version(store):
    assert store.append("order-a", []) == []
    assert len(store) == 0 and store.streams() == []
    with pytest.raises(ConcurrencyError):
        store.append("order-a", [], expected_version=3)


@pytest.mark.parametrize("expected", [None, 0])
def test_expected_version_none_or_0_accepts_a_new_stream(store, expected):
    assert [e.version for e in store.append("s", [placed("a")], expected_version=expected)] == [1]


def test_expected_version_n_accepts_a_stream_at_n(store):
    store.append("s", [placed("a"), item("a")])
    assert [e.version for e in store.append("s", [item("a")], expected_version=2)] == [3]


@pytest.mark.parametrize(("expected", "actual"), [(0, 2), (1, 2), (5, 2)])
def test_wrong_expected_version_raises_concurrency_error_and_writes_nothing(store, expected, actual):
    store.append("order-a", [placed("a"), item("a")])
    before = snapshot(store)
    with pytest.raises(ConcurrencyError) as info:
        store.append("order-a", [item("a")], expected_version=expected)
    err = info.value
    assert (err.stream_id, err.expected, err.actual) == ("order-a", expected, actual)
    assert "order-a" in str(err) and f"version {actual}" in str(err)
    assert_unchanged(store, before)


def test_expected_version_on_missing_stream_reports_actual_0(store):
    with pytest.raises(ConcurrencyError) as info:
        store.append("ghost", [placed("g")], expected_version=1)
    assert info.value.actual == 0 and len(store) == 0


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True])
def test_expected_version_must_be_a_non_negative_int(store, bad):
    # An EventDataError, so an EventStoreError as the README promises (and a ValueError).
    with pytest.raises(EventDataError, match="expected_version"):
        store.append("s", [placed("a")], expected_version=bad)
    with pytest.raises(EventDataError, match="from_position must be an int >= 0"):
        list(store.read_all(from_position=-1))


def test_an_append_with_one_bad_payload_writes_none_of_its_events(store):
    store.append("order-a", [placed("a")])
    before = snapshot(store)
    batch = [item("a"), item("a"), NewEvent("ItemAdded", {"order_id": "a", "sku": object()})]
    with pytest.raises(EventDataError, match=r"events\[2\].*'sku'.*object"):
        store.append("order-a", batch)
    assert_unchanged(store, before)


@pytest.mark.parametrize("stream_id", ["", None, 7])
def test_stream_id_must_be_a_non_empty_string(store, stream_id):
    with pytest.raises(EventDataError, match="stream_id"):
        store.append(stream_id, [placed("a")])


def test_events_must_be_new_events(store):
    with pytest.raises(EventDataError, match=r"events\[0\].*dict"):
        store.append("s", [{"type": "OrderPlaced"}])


# ---------------------------------------------------------------------------- reads
@pytest.fixture
def filled(store):
    store.append("order-a", [placed("a"), item("a", "x", 2, 50)])
    store.append("order-b", [placed("b"), item("b")])
    store.append("order-a", [paid("a", 100)])
    return store


def test_read_all_yields_events_after_from_position_in_order(filled):
    assert [e.position for e in filled.read_all()] == [1, 2, 3, 4, 5]
    assert [e.position for e in filled.read_all(from_position=2)] == [3, 4, 5]
    assert [e.position for e in filled.read_all(from_position=1, to_position=3)] == [2, 3]
    assert list(filled.read_all(from_position=5)) == []
    assert [e.position for e in filled.read_all(to_position=99)] == [1, 2, 3, 4, 5]


def test_read_all_filters_by_event_type(filled):
    assert [e.position for e in filled.read_all(event_types=["ItemAdded"])] == [2, 4]
    got = filled.read_all(from_position=2, event_types=["ItemAdded", "PaymentReceived", "Nope"])
    assert [(e.position, e.event_type) for e in got] == [(4, "ItemAdded"), (5, "PaymentReceived")]
    assert list(filled.read_all(event_types=[])) == []


def test_read_stream_returns_a_version_range(filled):
    assert [e.version for e in filled.read_stream("order-a")] == [1, 2, 3]
    assert [e.version for e in filled.read_stream("order-a", from_version=2)] == [2, 3]
    assert [e.version for e in filled.read_stream("order-a", to_version=2)] == [1, 2]
    assert [e.version for e in filled.read_stream("order-a", from_version=2, to_version=2)] == [2]
    assert filled.read_stream("order-a", to_version=0) == []
    assert filled.read_stream("nope") == []
    assert {e.stream_id for e in filled.read_stream("order-b")} == {"order-b"}


@pytest.mark.parametrize(
    "kwargs", [{"from_position": -1}, {"to_position": -1}, {"from_position": 1.0}]
)
def test_read_all_rejects_bad_positions(filled, kwargs):
    with pytest.raises(ValueError, match="position"):
        list(filled.read_all(**kwargs))


def test_read_stream_rejects_from_version_0(filled):
    with pytest.raises(ValueError, match="from_version must be an int >= 1 \\(got 0\\)"):
        filled.read_stream("order-a", from_version=0)


def test_read_all_and_read_stream_agree_with_append_results(store):
    appended = []
    for i in range(6):
        appended += store.append(f"order-{i % 2}", [placed(str(i)), item(str(i), quantity=i + 1)])
    assert list(store.read_all()) == appended
    for s in ("order-0", "order-1"):
        assert store.read_stream(s) == [e for e in appended if e.stream_id == s]


# ---------------------------------------------------------------------------- frames
def test_scan_gives_the_canonical_frame_with_union_of_typed_payload_fields(filled):
    df = filled.to_polars()
    assert df.columns[: len(CANONICAL_COLUMNS)] == list(CANONICAL_COLUMNS)
    assert set(df.columns[len(CANONICAL_COLUMNS):]) == {"order_id", "customer", "sku", "quantity", "price", "amount"}
    assert df["position"].to_list() == [1, 2, 3, 4, 5]
    assert df.schema["quantity"] == pl.Int64 and df.schema["recorded_at"] == pl.Datetime("us", "UTC")
    assert df["customer"].to_list() == ["c-1", None, "c-1", None, None]
    assert df["amount"].to_list() == [None, None, None, None, 100]
    assert df["quantity"].to_list() == [None, 2, None, 1, None]


def test_scan_filters_types_and_positions(filled):
    df = filled.scan(event_types=["ItemAdded"]).collect()
    assert df["position"].to_list() == [2, 4]
    assert "customer" not in df.columns and "sku" in df.columns
    df = filled.to_polars(from_position=2, to_position=4)
    assert df["position"].to_list() == [3, 4]
    assert filled.to_polars(event_types=["Nope"]).height == 0


def test_scan_of_an_empty_store_has_the_header_columns(store):
    df = store.to_polars()
    assert df.height == 0 and df.columns == list(CANONICAL_COLUMNS)


def test_with_metadata_adds_json_text_after_the_header(store):
    store.append("s", [NewEvent("OrderPlaced", {"order_id": "a"}, metadata={"user": "u1"})])
    df = store.to_polars(with_metadata=True)
    assert df.columns[len(CANONICAL_COLUMNS)] == "metadata"
    assert df["metadata"].to_list() == ['{"user":"u1"}']


def test_stream_number_is_the_streams_index_in_creation_order(store):
    """Each event carries its stream's number (its index in streams()), from append and
    append_frame alike; only with_stream_number=True shows it, after the header."""
    assert store.to_polars(with_stream_number=True).columns == [*CANONICAL_COLUMNS, "stream_number"]
    store.append("order-b", [placed("b")])
    store.append("order-a", [placed("a")])
    store.append_frame(pl.DataFrame({
        "stream_id": ["order-c", "order-a", "order-d", "order-c"],
        "event_type": ["ItemAdded"] * 4, "order_id": ["c", "a", "d", "c"],
    }))  # fmt: skip
    store.append("order-d", [paid("d", 5)])
    store.append("order-e", [placed("e")])
    assert store.streams() == ["order-b", "order-a", "order-c", "order-d", "order-e"]
    df = store.to_polars(with_stream_number=True)
    assert df.columns[len(CANONICAL_COLUMNS)] == "stream_number"
    assert df.schema["stream_number"] == pl.Int64
    assert df["stream_number"].to_list() == [0, 1, 2, 1, 3, 2, 3, 4]
    assert df["stream_number"].to_list() == [store.streams().index(s) for s in df["stream_id"]]
    assert "stream_number" not in store.to_polars().columns
    both = store.to_polars(with_metadata=True, with_stream_number=True).columns
    assert both[len(CANONICAL_COLUMNS) : len(CANONICAL_COLUMNS) + 2] == ["metadata", "stream_number"]


def test_to_pandas_goes_through_arrow_and_keeps_integer_columns_integer(filled):
    pdf = filled.to_pandas()
    assert isinstance(pdf, pd.DataFrame)
    assert list(pdf.columns) == filled.to_polars().columns
    assert str(pdf["quantity"].dtype) == "Int64"  # nullable, not float
    assert pdf["quantity"].tolist()[1] == 2 and pd.isna(pdf["quantity"].iloc[0])
    assert str(pdf["recorded_at"].dtype).startswith("datetime64") and "UTC" in str(pdf["recorded_at"].dtype)


# ---------------------------------------------------------------------------- append_frame
def order_frame(n_orders: int, *, first: int = 0) -> pl.DataFrame:
    rows = []
    for o in range(first, first + n_orders):
        rows.append({"stream_id": f"order-{o}", "event_type": "OrderPlaced", "order_id": str(o), "customer": "c", "sku": None, "quantity": None})
        rows.append({"stream_id": f"order-{o}", "event_type": "ItemAdded", "order_id": str(o), "customer": None, "sku": "s", "quantity": o + 1})
    return pl.DataFrame(rows)


def test_append_frame_assigns_positions_and_versions(store):
    store.append("order-0", [placed("0")])
    got = store.append_frame(order_frame(2, first=1))
    assert got == range(2, 6)
    df = store.to_polars()
    assert df["position"].to_list() == [1, 2, 3, 4, 5]
    assert df["version"].to_list() == [1, 1, 2, 1, 2]
    assert store.stream_version("order-2") == 2 and store.streams() == ["order-0", "order-1", "order-2"]
    assert store.schema("ItemAdded") == {"order_id": pl.String, "sku": pl.String, "quantity": pl.Int64}
    # A row carries only the fields that are not null in it.
    assert store.read_stream("order-1")[0].data == {"order_id": "1", "customer": "c"}


def test_append_frame_continues_versions_of_existing_streams(store):
    store.append("order-0", [placed("0")])
    store.append_frame(pl.DataFrame({"stream_id": ["order-0"], "event_type": ["ItemAdded"], "sku": ["s"]}))
    assert [e.version for e in store.read_stream("order-0")] == [1, 2]


def test_append_frame_checks_given_versions_against_the_store(store):
    store.append("order-0", [placed("0")])
    before = snapshot(store)
    frame = pl.DataFrame({"stream_id": ["order-1", "order-0"], "event_type": ["OrderPlaced", "ItemAdded"], "version": [1, 1]})
    with pytest.raises(ConcurrencyError) as info:
        store.append_frame(frame)
    assert (info.value.stream_id, info.value.expected, info.value.actual) == ("order-0", 0, 1)
    assert_unchanged(store, before)
    gappy = pl.DataFrame({"stream_id": ["order-0", "order-0"], "event_type": ["ItemAdded"] * 2, "version": [2, 4]})
    with pytest.raises(EventDataError, match="row 1.*version 4.*expected 3"):
        store.append_frame(gappy)
    assert_unchanged(store, before)
    store.append_frame(frame.with_columns(version=pl.Series([1, 2])))
    assert store.stream_version("order-0") == 2


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pl.DataFrame({"event_type": ["A"]}), "column 'stream_id' is missing"),
        (pl.DataFrame({"stream_id": ["s"], "event_type": [None]}, schema={"stream_id": pl.String, "event_type": pl.String}), "'event_type' has 1 nulls"),
        (pl.DataFrame({"stream_id": [""], "event_type": ["A"]}), "stream_id must be a non-empty"),
        (pl.DataFrame({"stream_id": ["s"], "event_type": ["A"], "version": ["1"]}), "'version' must hold integers"),
        (pl.DataFrame({"stream_id": ["s"], "event_type": ["A"], "event_id": ["nope"]}), "event_id must be a UUID"),
        (pl.DataFrame({"stream_id": ["s"], "event_type": ["A"], "recorded_at": [datetime(2026, 1, 1)]}), "timezone-aware"),
        (pl.DataFrame({"stream_id": ["s"], "event_type": ["A"], "metadata": ["[1]"]}), "metadata must be a JSON object"),
        (pl.DataFrame({"stream_id": ["s"], "event_type": ["bad type!"]}), "event type must be a name"),
        (pl.DataFrame({"stream_id": ["s"], "event_type": ["A"], "x": pl.Series([1], dtype=pl.Decimal(10, 2))}), "column 'x': column type Decimal.* is not supported"),
        (pl.DataFrame({"stream_id": ["s"], "event_type": ["A"], "stream_number": [7]}), "'stream_number' is assigned by the store"),
    ],
)
def test_append_frame_rejects_bad_frames_and_writes_nothing(store, frame, message):
    store.append("order-0", [placed("0")])
    before = snapshot(store)
    with pytest.raises(EventDataError, match=message):
        store.append_frame(frame)
    assert_unchanged(store, before)


def test_append_frame_with_a_bad_type_late_in_the_frame_writes_nothing(store):
    """Atomic as one append: types checked before any event type is written."""
    store.append("order-0", [item("0")])
    before = snapshot(store)
    frame = pl.DataFrame({"stream_id": ["a", "b"], "event_type": ["OrderPlaced", "ItemAdded"], "quantity": ["one", "two"]})
    with pytest.raises(EventDataError, match="quantity"):
        store.append_frame(frame)
    assert_unchanged(store, before)


def test_append_frame_accepts_pandas_and_checks_positions(store):
    got = store.append_frame(pd.DataFrame({"stream_id": ["s", "s"], "event_type": ["A", "B"], "n": [1, 2]}))
    assert got == range(1, 3)
    with pytest.raises(EventDataError, match="position 7 does not continue"):
        store.append_frame(pl.DataFrame({"stream_id": ["s"], "event_type": ["A"], "position": [7]}))
    assert store.append_frame(pl.DataFrame({"stream_id": ["s"], "event_type": ["A"], "position": [3]})) == range(3, 4)


def test_append_frame_keeps_given_ids_and_times(store):
    e = NewEvent("A", {})
    frame = pl.DataFrame({
        "stream_id": ["s"], "event_type": ["A"], "event_id": [e.event_id.upper()],
        "recorded_at": [T0], "causation_id": ["cmd"], "metadata": ['{"k":1}'],
    })  # fmt: skip
    assert store.append_frame(frame) == range(1, 2)
    (r,) = store.read_all()
    assert (r.event_id, r.correlation_id, r.causation_id, r.recorded_at, r.metadata) == (
        e.event_id, e.event_id, "cmd", T0, {"k": 1},
    )


def test_empty_append_frame_returns_an_empty_range(store):
    assert store.append_frame(pl.DataFrame({"stream_id": [], "event_type": []}, schema={"stream_id": pl.String, "event_type": pl.String})) == range(1, 1)
    assert len(store) == 0


# ---------------------------------------------------------------------------- schema evolution
def test_a_field_added_later_reads_as_null_for_older_events(store):
    store.append("s", [NewEvent("OrderPlaced", {"order_id": "a"})])
    store.append("s", [NewEvent("OrderPlaced", {"order_id": "b", "channel": "web"})])
    first, second = store.read_all()
    assert first.data == {"order_id": "a", "channel": None}
    assert second.data == {"order_id": "b", "channel": "web"}
    assert store.to_polars()["channel"].to_list() == [None, "web"]


def test_an_int_goes_into_a_float_field_and_reads_back_as_float(store):
    store.append("s", [NewEvent("M", {"x": 1.5})])
    store.append("s", [NewEvent("M", {"x": 2})])
    assert [e.data["x"] for e in store.read_all()] == [1.5, 2.0]
    assert isinstance(store.read_stream("s")[1].data["x"], float)


def test_a_null_only_field_gains_a_type_later(store):
    store.append("s", [NewEvent("M", {"x": None})])
    store.append("s", [NewEvent("M", {"x": "v"})])
    assert store.schema("M") == {"x": pl.String}
    assert [e.data["x"] for e in store.read_all()] == [None, "v"]


@pytest.mark.parametrize("via", ["append", "append_frame"])
def test_changing_a_fields_type_is_refused_and_writes_nothing(store, via):
    store.append("s", [NewEvent("ItemAdded", {"sku": "a", "quantity": 2})])
    before = snapshot(store)
    with pytest.raises(EventDataError, match=r"ItemAdded field 'quantity' is stored as Int64 but the new value is String"):
        if via == "append":
            store.append("s", [NewEvent("ItemAdded", {"sku": "b", "quantity": "two"})])
        else:
            store.append_frame(pl.DataFrame({"stream_id": ["s"], "event_type": ["ItemAdded"], "quantity": ["two"]}))
    assert_unchanged(store, before)


# ---------------------------------------------------------------------------- backends agree
def _fill_identically(store):
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(20)]
    it = iter(ids)
    store.append("order-1", [NewEvent("OrderPlaced", {"order_id": "1", "customer": "c"}, event_id=next(it)),
                             NewEvent("ItemAdded", {"order_id": "1", "sku": "s", "quantity": 2, "price": 5}, event_id=next(it))])
    store.append("order-2", [NewEvent("OrderPlaced", {"order_id": "2", "customer": "d", "vip": True}, event_id=next(it),
                                      metadata={"user": "u"}, causation_id="cmd-9")])
    store.append("order-1", [NewEvent("PaymentReceived", {"order_id": "1", "amount": 10, "at": T0}, event_id=next(it)),
                             NewEvent("Tagged", {"tags": ["a", "b"], "where": {"x": 1.5, "y": None}}, event_id=next(it))])
    store.append_frame(pl.DataFrame({
        "stream_id": ["order-3", "order-3"], "event_type": ["OrderPlaced", "ItemAdded"],
        "event_id": [next(it), next(it)], "order_id": ["3", "3"], "customer": ["e", None],
        "sku": [None, "t"], "quantity": [None, 1], "price": [None, 7],
    }))  # fmt: skip
    store.append("order-2", [NewEvent("ItemAdded", {"order_id": "2", "sku": "u", "quantity": 1, "price": 3, "note": "gift"}, event_id=next(it))])


def test_both_backends_give_identical_frames_and_events_for_identical_appends(tmp_path):
    mem = InMemoryEventStore(clock=fixed_clock)
    with ParquetEventStore(tmp_path / "p", clock=fixed_clock) as disk:
        _fill_identically(mem)
        _fill_identically(disk)
        for kwargs in ({}, {"with_metadata": True}, {"event_types": ["ItemAdded", "Tagged"]}, {"from_position": 3, "to_position": 6}):
            assert_frame_equal(mem.to_polars(**kwargs), disk.to_polars(**kwargs))
        assert list(mem.read_all()) == list(disk.read_all())
        assert mem.read_stream("order-2") == disk.read_stream("order-2")
        assert mem.streams() == disk.streams()
        assert {t: mem.schema(t) for t in mem.event_types()} == {t: disk.schema(t) for t in disk.event_types()}
        reopened = ParquetEventStore(tmp_path / "p")
        assert_frame_equal(mem.to_polars(with_metadata=True), reopened.to_polars(with_metadata=True))


def test_recorded_at_reads_back_with_the_same_utc_tzinfo_as_fresh_events(store):
    (fresh,) = store.append("s", [placed("a")])
    store.append_frame(pl.DataFrame({"stream_id": ["s"], "event_type": ["OrderPlaced"], "order_id": ["b"]}))
    read = list(store.read_all())
    assert fresh.recorded_at.tzinfo is timezone.utc
    assert all(e.recorded_at.tzinfo is timezone.utc for e in read)


def test_repr_and_html_summary_name_the_counts(store):
    store.append("s", [placed("a")])
    assert "events=1" in repr(store)
    html = store._repr_html_()
    assert "<table>" in html and "OrderPlaced" in html


def test_append_frame_twice_into_the_same_streams_keeps_versions_and_reads(store):
    store.append_frame(order_frame(3))
    store.append("order-1", [item("1", "z")])
    store.append_frame(order_frame(3))
    for s in ("order-0", "order-1", "order-2"):
        assert [e.version for e in store.read_stream(s)] == list(range(1, store.stream_version(s) + 1))
    assert store.stream_version("order-1") == 5 and store.stream_version("order-0") == 4


def test_dict_keys_a_field_gains_later_read_as_none_for_older_events_everywhere(store):
    store.append("s", [NewEvent("T", {"x": {"a": 1}, "l": [{"p": 1}]})])
    store.append("s", [NewEvent("T", {"x": {"a": 2, "b": 3}, "l": [{"q": 4}]})])
    want = [{"x": {"a": 1, "b": None}, "l": [{"p": 1, "q": None}]}, {"x": {"a": 2, "b": 3}, "l": [{"p": None, "q": 4}]}]
    assert [e.data for e in store.read_all()] == want
    assert [e.data for e in store.read_stream("s")] == want
    assert store.to_polars().select("x", "l").to_dicts() == want


def test_read_stream_finds_appends_between_append_frames_of_the_same_stream(store):
    one = pl.DataFrame({"stream_id": ["s"], "event_type": ["T"], "n": [0]})
    for i in range(2):
        store.append_frame(one)
        store.append("s", [NewEvent("T", {"n": i})])
    assert [e.version for e in store.read_stream("s")] == [1, 2, 3, 4]
    assert [e.version for e in store.read_stream("s", from_version=4)] == [4]
    assert [e.version for e in store.read_stream("s", from_version=2, to_version=3)] == [2, 3]


def test_append_frame_refuses_duplicate_event_ids_and_writes_nothing(store):
    before = snapshot(store)
    ids = ["6f1c2a4e-8b3d-4c1a-9e2f-0a1b2c3d4e5f"] * 2
    with pytest.raises(EventDataError, match=r"row 1: event_id .* also in row 0"):
        store.append_frame(pl.DataFrame({"stream_id": ["a", "b"], "event_type": ["T", "T"], "event_id": ids}))
    assert_unchanged(store, before)


def test_a_range_scan_of_a_store_made_of_many_commits_equals_the_filtered_whole(store):
    """Backends leave out the commits outside a scanned range (a consumer reading the newest
    batch reads those only); what comes back is exactly the whole frame filtered, with every
    column and type, even for a range with no event in it."""
    for i in range(12):
        if i % 3 == 2:
            store.append_frame(order_frame(2, first=100 + 2 * i))
        else:
            store.append(f"order-{i}", [placed(str(i)), *([paid(str(i), i)] if i % 2 else [])])
    whole = store.to_polars()
    head = store.head_position
    for lo, hi in [(0, None), (0, 1), (3, 7), (head - 1, None), (5, 5), (head, None), (head + 3, head + 9)]:
        got = store.to_polars(from_position=lo, to_position=hi)
        want = whole.filter(pl.col("position") > lo, pl.col("position") <= (hi if hi is not None else head))
        assert_frame_equal(got, want)
        events = list(store.read_all(from_position=lo, to_position=hi))
        assert [e.position for e in events] == want["position"].to_list()


def test_a_parquet_range_scan_opens_only_the_files_that_hold_the_range(tmp_path, monkeypatch):
    from esnotebook.store import parquet

    store = ParquetEventStore(tmp_path / "s", durable=False)
    for i in range(6):
        store.append(f"order-{i}", [placed(str(i)), paid(str(i), i)])
    opened = []
    real = parquet._scan_files
    monkeypatch.setattr(parquet, "_scan_files", lambda paths, *a: opened.append(paths) or real(paths, *a))
    assert store.to_polars(from_position=8, to_position=10)["position"].to_list() == [9, 10]
    assert [p.rsplit("/", 1)[1][:25] for p in opened[-1]] == ["000000000009-000000000010"]
    assert store.to_polars()["position"].to_list() == list(range(1, 13))
    assert len(opened[-1]) == 6


def test_a_memory_store_fed_one_event_at_a_time_stays_a_few_one_chunk_segments():
    """Events appended one at a time, each followed by a read (a live consumer), merge like a
    binary counter: at most 17 segments per 65,536 events, each frame one chunk, the newest
    event in the smallest. (Before, one segment of thousands of chunks made each read slower
    than the last.) Every read along the way sees exactly what was appended."""
    store = InMemoryEventStore()
    for i in range(1, 1001):
        store.append(f"order-{i % 7}", [paid(str(i), i)])
        assert store.to_polars(from_position=i - 1)["amount"].to_list() == [i]
    sizes = [s.last - s.first + 1 for s in store._segments]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == 1000
    assert len(sizes) == bin(1000).count("1")
    assert all(s.frame.n_chunks() == 1 for s in store._segments)
    assert store.to_polars()["amount"].to_list() == list(range(1, 1001))
