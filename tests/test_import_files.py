"""JSON Lines and CSV import (column mapping, bad rows, refuse or reject) and JSON Lines export."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import esnotebook as es
from esnotebook.errors import EventDataError
from esnotebook.importers import ImportRefusedError, export_jsonl, import_csv, import_jsonl
from esnotebook.store.memory import InMemoryEventStore

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def order_events(store):
    store.append("order-1", [
        es.NewEvent("OrderPlaced", {"order_id": "1", "customer": "c-1"}, metadata={"user": "u-1"}),
        es.NewEvent("ItemAdded", {"order_id": "1", "sku": "s-1", "quantity": 2, "price": 150}),
        es.NewEvent("PaymentReceived", {"order_id": "1", "amount": 300}),
    ])  # fmt: skip
    store.append("order-2", [
        es.NewEvent("OrderPlaced", {"order_id": "2", "customer": "c-2"}),
        es.NewEvent("OrderCancelled", {"order_id": "2", "reason": "changed mind"}, causation_id="cmd-9"),
    ])  # fmt: skip
    store.append("shipment-1", [
        es.NewEvent("Shipped", {"at": T0, "parcels": [1, 2], "box": {"w": 1.5, "h": 2.0}}),
    ])  # fmt: skip


def write_lines(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_export_then_import_gives_the_identical_canonical_frame(store_factory, tmp_path):
    """Into a fresh store, nothing is assigned anew: positions, ids, times, payloads and
    metadata all come back identical, datetime payload fields as datetimes."""
    source = store_factory()
    order_events(source)
    assert export_jsonl(source, to=tmp_path / "e.jsonl") == 6
    target = store_factory()
    report = import_jsonl(tmp_path / "e.jsonl", into=target)
    assert report.imported == 6 and report.rejected == 0 and report.rejects_path is None
    a = source.to_polars(with_metadata=True)
    b = target.to_polars(with_metadata=True)
    assert a.schema == b.schema
    assert a.equals(b)


payload_values = st.one_of(
    st.integers(-(2**53), 2**53), st.text(max_size=5), st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)  # fmt: skip


@settings(max_examples=30)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(["A", "B"]), payload_values),
        min_size=1,
        max_size=25,
    )
)
def test_round_trip_holds_for_any_events(tmp_path_factory, events):
    """export -> import into a fresh store -> the same canonical frame, for any history
    (fields typed per event type: A's field x is always a str, B's y always an int)."""
    source = InMemoryEventStore()
    for stream, event_type, value in events:
        numeric = type(value) is int
        data = (
            {"x": str(value)} if event_type == "A" else {"y": value if numeric else len(str(value))}
        )
        source.append(f"s-{stream}", [es.NewEvent(event_type, data)])
    path = tmp_path_factory.mktemp("rt") / "e.jsonl"
    export_jsonl(source, to=path)
    target = import_jsonl(path, parse_dates=False).store
    assert target.to_polars(with_metadata=True).equals(source.to_polars(with_metadata=True))


def test_export_of_some_event_types_only(tmp_path):
    source = InMemoryEventStore()
    order_events(source)
    assert export_jsonl(source, to=tmp_path / "e.jsonl", event_types=["OrderPlaced"]) == 2
    lines = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [x["event_type"] for x in lines] == ["OrderPlaced", "OrderPlaced"]
    assert "sku" not in lines[0] and lines[0]["metadata"] == {"user": "u-1"}


def test_column_mapping_with_nested_payload_and_no_versions(tmp_path):
    """Mapped names are read; without versions and times the store assigns them."""
    path = write_lines(tmp_path / "in.jsonl", [
        {"aggregate": "cart-1", "type": "CartOpened", "data": {"owner": "ann"}},
        {"aggregate": "cart-1", "type": "ItemPut", "data": {"sku": "x", "n": 2}},
        {"aggregate": "cart-2", "type": "CartOpened", "data": {"owner": "bob"}, "ignored": 1},
    ])  # fmt: skip
    report = import_jsonl(
        path, columns={"stream_id": "aggregate", "event_type": "type", "payload": "data"}
    )
    frame = report.store.to_polars()
    assert frame.select("stream_id", "version", "event_type").rows() == [
        ("cart-1", 1, "CartOpened"), ("cart-1", 2, "ItemPut"), ("cart-2", 1, "CartOpened"),
    ]  # fmt: skip
    assert frame["owner"].to_list() == ["ann", None, "bob"] and frame["n"].to_list() == [
        None,
        2,
        None,
    ]
    assert "ignored" not in frame.columns


def test_unknown_mapping_key_is_refused():
    with pytest.raises(ValueError, match=r"'columns' key 'stream' is not a canonical field"):
        import_jsonl("x.jsonl", columns={"stream": "s"})


BAD_FILE = [
    {"stream_id": "a", "event_type": "Placed", "version": 1, "qty": 1},  # 1 good
    {"event_type": "Placed", "version": 1},  # 2 no stream
    "{not json",  # 3 bad JSON
    {"stream_id": "a", "event_type": "Placed", "version": 2, "qty": "three"},  # 4 wrong type
    {"stream_id": "a", "event_type": "Placed", "version": 3, "qty": 3},  # 5 after a bad row
    {"stream_id": "b", "event_type": "Placed", "version": 1, "qty": 1},  # 6 good
    {"stream_id": "b", "event_type": "Placed", "version": 3, "qty": 1},  # 7 gap
    {"stream_id": "c", "event_type": "Placed", "qty": 1},  # 8 missing version
    {
        "stream_id": "d",
        "event_type": "Placed",
        "version": 1,
        "recorded_at": "2024-01-01T00:00:00",
    },  # 9 naive
    [1, 2],  # 10 not an object
]
BAD_LINES = {
    2: "stream_id) is missing",
    3: "not valid JSON",
    4: "Placed field 'qty' is str ('three'), expected int (as set by line 1)",
    5: "stream 'a' has a bad row on line 4 before this one",
    7: "version 3 of stream 'b' is not contiguous: expected 2",
    8: "'version' missing (other rows have them)",
    9: "recorded_at must be an ISO 8601 datetime with a time zone",
    10: "not a JSON object",
}


def test_refuse_names_every_bad_line_and_imports_nothing(tmp_path):
    path = write_lines(tmp_path / "in.jsonl", BAD_FILE)
    store = InMemoryEventStore()
    store.append("z", [es.NewEvent("Kept", {})])
    with pytest.raises(ImportRefusedError) as info:
        import_jsonl(path, into=store)
    problems = info.value.problems
    assert problems["line"].to_list() == sorted(BAD_LINES)
    for line, reason in zip(problems["line"], problems["reason"]):
        assert BAD_LINES[line] in reason, (line, reason)
    assert "line 4: Placed field 'qty'" in str(info.value) and "nothing was imported" in str(
        info.value
    )
    assert len(store) == 1 and not (tmp_path / "in.jsonl.rejects.jsonl").exists()


def test_reject_imports_the_good_rows_and_writes_the_bad_ones_with_reasons(tmp_path):
    path = write_lines(tmp_path / "in.jsonl", BAD_FILE)
    report = import_jsonl(path, on_error="reject", rejects=tmp_path / "bad.jsonl")
    assert report.imported == 2 and report.rejected == len(BAD_LINES)
    assert report.store.to_polars().select("stream_id", "version").rows() == [("a", 1), ("b", 1)]
    rejected = [json.loads(x) for x in (tmp_path / "bad.jsonl").read_text().splitlines()]
    assert [r["rejected_line"] for r in rejected] == sorted(BAD_LINES)
    assert rejected[0]["record"] == BAD_FILE[1] and rejected[1]["record"] == "{not json"
    assert all(BAD_LINES[r["rejected_line"]] in r["rejected_reason"] for r in rejected)
    assert report.rejects_path == str(tmp_path / "bad.jsonl")
    assert "ImportReport" in report._repr_html_() and report.to_polars().height == len(BAD_LINES)


def test_a_commit_that_fails_imports_nothing_and_writes_no_rejects(tmp_path):
    """Rows that pass the file checks but clash with the store (a stored field type)
    make the single commit fail: nothing imported, no rejects file left behind."""
    store = InMemoryEventStore()
    store.append("a", [es.NewEvent("Placed", {"qty": 1})])
    path = write_lines(tmp_path / "in.jsonl", [
        {"stream_id": "a", "event_type": "Placed", "qty": 2},
        {"stream_id": "b", "event_type": "Placed", "qty": "x"},
        {"stream_id": "b", "event_type": "Other", "qty": 2.5},
        {"stream_id": "c", "event_type": "Other", "qty": "y"},
    ])  # fmt: skip
    with pytest.raises(EventDataError, match="payload field 'qty' is"):
        import_jsonl(path, into=store, on_error="reject")
    assert len(store) == 1
    assert list(tmp_path.iterdir()) == [path]


def test_store_schema_decides_field_types_and_versions_continue_the_store(tmp_path):
    store = InMemoryEventStore()
    store.append("a", [es.NewEvent("Placed", {"qty": 1})])
    path = write_lines(tmp_path / "in.jsonl", [
        {"stream_id": "a", "event_type": "Placed", "version": 2, "qty": 2},
        {"stream_id": "a", "event_type": "Placed", "version": 3, "qty": 2.5},
        {"stream_id": "a", "event_type": "Placed", "version": 1, "qty": 3},
    ])  # fmt: skip
    with pytest.raises(ImportRefusedError) as info:
        import_jsonl(path, into=store)
    reasons = dict(zip(info.value.problems["line"], info.value.problems["reason"]))
    assert "is float (2.5), expected int (as set by the store)" in reasons[2]
    assert set(reasons) == {2, 3}


def test_csv_with_mapping_dtypes_and_inferred_types(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text(
        "order,kind,v,when,sku,qty,paid,note\n"
        'o-1,ItemAdded,1,2024-05-01T12:00:00Z,007,2,true,"multi\nline"\n'
        "o-1,ItemAdded,2,2024-05-01T12:01:00+02:00,A-9,3.5,false,\n"
    )
    report = import_csv(path, columns={"stream_id": "order", "event_type": "kind", "version": "v",
                                       "recorded_at": "when"}, dtypes={"sku": str})  # fmt: skip
    frame = report.store.to_polars()
    assert frame["sku"].to_list() == ["007", "A-9"]
    assert frame["qty"].dtype == pl.Float64 and frame["qty"].to_list() == [2.0, 3.5]
    assert frame["paid"].to_list() == [True, False] and frame["note"].to_list() == [
        "multi\nline",
        None,
    ]
    assert frame["recorded_at"].to_list() == [T0, datetime(2024, 5, 1, 10, 1, tzinfo=timezone.utc)]


def test_csv_bad_rows_are_reported_by_line_and_rejected_to_a_csv(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text(
        "stream_id,event_type,version,qty\n"
        "a,Placed,1,1\n"
        "a,Placed,2,three\n"
        "b,Placed,x,1\n"
        "c,Placed,1\n"
        "d,Placed,1,4\n"
    )
    report = import_csv(path, on_error="reject")
    assert report.store.to_polars().select("stream_id", "qty").rows() == [("a", 1), ("d", 4)]
    lines = dict(zip(report.problems["line"], report.problems["reason"]))
    assert "is str ('three'), expected int (as set by line 2)" in lines[3]
    assert "version must be an int >= 1 (got 'x')" in lines[4]
    assert "has 3 cells, the header has 4" in lines[5]
    rejected = pl.read_csv(report.rejects_path, infer_schema=False)
    assert rejected.columns == [
        "rejected_line",
        "rejected_reason",
        "stream_id",
        "event_type",
        "version",
        "qty",
    ]
    assert rejected["rejected_line"].to_list() == ["3", "4", "5"]
    assert rejected["qty"].to_list()[0] == "three"


def test_missing_file_and_bad_mode_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file at"):
        import_jsonl(tmp_path / "nope.jsonl")
    write_lines(tmp_path / "x.jsonl", [{"stream_id": "a", "event_type": "E"}])
    with pytest.raises(ValueError, match=r"'on_error' must be 'refuse' or 'reject' \(got 'skip'\)"):
        import_jsonl(tmp_path / "x.jsonl", on_error="skip")


row_kinds = st.sampled_from(
    ["good", "good", "good", "no_stream", "wrong_type", "skip_version", "not_json"]
)


@settings(max_examples=40)
@given(
    st.lists(st.tuples(st.integers(0, 2), row_kinds), min_size=1, max_size=20),
    st.sampled_from(["refuse", "reject"]),
)
def test_never_half_imported(tmp_path_factory, plan, on_error):
    """refuse: all rows or none. reject: imported + rejected = all rows, and each stream
    holds exactly its rows before its first bad row, with contiguous versions."""
    next_version = {0: 1, 1: 1, 2: 1}
    lines, intended = [], []
    for stream, kind in plan:
        v = next_version[stream]
        row = {"stream_id": f"s{stream}", "event_type": "E", "version": v, "n": v}
        if kind == "no_stream":
            del row["stream_id"]
        elif kind == "wrong_type":
            row["n"] = "x"
        elif kind == "skip_version":
            row["version"] = v + 1
        next_version[stream] = v + 1
        lines.append("{broken" if kind == "not_json" else json.dumps(row))
        intended.append((stream, kind))
    path = tmp_path_factory.mktemp("h") / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    store = InMemoryEventStore()
    store.append("other", [es.NewEvent("E", {"n": 0})])
    # Expected: a stream keeps its rows before its first bad row. Every bad row used up a
    # version number, so even when the importer cannot tell its stream (no stream_id, not
    # JSON) the stream's next row skips a version and is bad too.
    broken: set[int] = set()
    expected: dict[str, list[int]] = {}
    for stream, kind in intended:
        if kind != "good":
            broken.add(stream)
        elif stream not in broken:
            expected.setdefault(f"s{stream}", []).append(len(expected.get(f"s{stream}", [])) + 1)
    all_good = all(kind == "good" for _, kind in intended)
    if on_error == "refuse" and not all_good:
        with pytest.raises(ImportRefusedError):
            import_jsonl(path, into=store)
        assert len(store) == 1
        return
    report = import_jsonl(path, into=store, on_error=on_error)
    assert report.imported + report.rejected == len(lines)
    frame = store.to_polars().filter(pl.col("stream_id") != "other")
    got = {
        s: frame.filter(pl.col("stream_id") == s)["version"].to_list()
        for s in frame["stream_id"].unique()
    }
    assert got == expected
    assert frame["n"].to_list() == frame["version"].to_list()


def test_report_html_is_compact_and_escaped():
    from esnotebook.importers import ImportReport, problems_frame

    rows = [(i, "<b>s</b>", f"bad <script>{i}</script>") for i in range(1, 16)]
    report = ImportReport("<in>.jsonl", None, range(3, 5), problems_frame(rows), "r.jsonl")
    page = report._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;in&gt;.jsonl" in page
    assert page.count("<tr><td>") == 10 and "5 more in .problems" in page
    assert report.imported == 2 and report.rejected == 15
    assert report.to_pandas()["line"].tolist() == list(range(1, 16))
    assert "positions=3..4" in repr(report)
