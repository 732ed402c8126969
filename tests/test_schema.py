"""Payload typing: which column type a payload value is stored as, and that it reads back."""

from __future__ import annotations

import decimal
from datetime import datetime, timedelta, timezone

import hypothesis.strategies as st
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

from esnotebook import _schema
from esnotebook.errors import EventDataError
from esnotebook.events import NewEvent
from esnotebook.store import InMemoryEventStore, ParquetEventStore

NAMES = st.text(alphabet="abcdefgh", min_size=1, max_size=4)
AWARE = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30))]),
)  # fmt: skip
LEAVES = {
    "int": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(allow_nan=False),
    "str": st.text(max_size=5),
    "bool": st.booleans(),
    "datetime": AWARE,
}


def values_of_one_shape(draw_leaf):
    """Nested lists/dicts whose leaves share one type (a list holds one type of item)."""
    return st.recursive(
        st.one_of(draw_leaf, st.none()),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3).filter(lambda xs: len({_shape(x) for x in xs if x is not None}) <= 1),
            st.dictionaries(NAMES, inner, max_size=3),
        ),
        max_leaves=6,
    )


def _shape(v):
    if isinstance(v, list):
        return ("list",)
    if isinstance(v, dict):
        return ("dict", tuple(sorted(v)))
    return type(v).__name__


PAYLOADS = st.sampled_from(sorted(LEAVES)).flatmap(
    lambda kind: st.dictionaries(NAMES, values_of_one_shape(LEAVES[kind]), min_size=1, max_size=4)
)


def _same(a, b):
    """Equal as stored: ints in float fields compare equal; nested dicts gain absent keys as
    None; an empty dict (no fields to type) is stored as null."""
    if a == {} or b == {}:
        a, b = a or None, b or None
    if isinstance(a, dict) and isinstance(b, dict):
        return all(_same(a.get(k), b.get(k)) for k in a.keys() | b.keys())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@given(PAYLOADS)
@settings(max_examples=150, deadline=None)
def test_any_json_compatible_payload_reads_back_as_appended(data):
    store = InMemoryEventStore()
    try:
        (rec,) = store.append("s", [NewEvent("E", data)])
    except EventDataError as exc:
        # The one refusal allowed: a list whose dict items have clashing field types.
        assert "two types in one append" in str(exc)
        return
    for got in (rec, next(store.read_all()), store.read_stream("s")[0]):
        assert _same(got.data, data)
    row = store.to_polars().row(0, named=True)
    assert _same({k: row[k] for k in data}, data)


@given(PAYLOADS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_payloads_read_back_identically_from_parquet(tmp_path_factory, data):
    memory = InMemoryEventStore()
    try:
        memory.append("s", [NewEvent("E", data)])
    except EventDataError:
        return
    with ParquetEventStore(tmp_path_factory.mktemp("p") / "s", durable=False) as disk:
        disk.append("s", [NewEvent("E", data)])
        assert _same(list(disk.read_all())[0].data, data)
        reopened = ParquetEventStore(disk.path)
        assert _same(list(reopened.read_all())[0].data, data)
        assert disk.schema("E") == memory.schema("E")


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ({1, 2}, "set"),
        (b"bytes", "bytes"),
        (object(), "object"),
        (decimal.Decimal("1.5"), "Decimal"),
        (complex(1, 2), "complex"),
    ],
)
def test_unsupported_payload_types_name_the_field_and_the_type(value, found):
    store = InMemoryEventStore()
    store.append("s", [NewEvent("E", {"ok": 1})])
    with pytest.raises(EventDataError, match=rf"field 'bad' has unsupported type {found}.*expected str, int"):
        store.append("s", [NewEvent("E", {"ok": 2}), NewEvent("E", {"ok": 3, "bad": value})])
    assert len(store) == 1 and store.schema("E") == {"ok": pl.Int64}


def test_naive_datetimes_and_oversized_ints_are_refused_with_the_fix():
    store = InMemoryEventStore()
    with pytest.raises(EventDataError, match="'at'.*timezone-aware.*tzinfo=timezone.utc"):
        store.append("s", [NewEvent("E", {"at": datetime(2026, 1, 1)})])
    with pytest.raises(EventDataError, match="'n'.*does not fit in 64 bits"):
        store.append("s", [NewEvent("E", {"n": 2**63})])
    with pytest.raises(EventDataError, match=r"'xs'\[1\]"):
        store.append("s", [NewEvent("E", {"xs": [1, object()]})])
    assert len(store) == 0


def test_an_empty_dict_value_is_stored_as_null_by_both_backends(tmp_path):
    for store in (InMemoryEventStore(), ParquetEventStore(tmp_path / "p")):
        store.append("s", [NewEvent("E", {"attrs": {}, "n": 1})])
        store.append("s", [NewEvent("E", {"attrs": {"k": "v"}, "n": 2})])
        assert [e.data["attrs"] for e in store.read_all()] == [None, {"k": "v"}]


@pytest.mark.parametrize("name", ["position", "stream_id", "event_type", "metadata", ""])
def test_reserved_or_empty_field_names_are_refused(name):
    with pytest.raises(EventDataError, match="reserved|non-empty"):
        InMemoryEventStore().append("s", [NewEvent("E", {name: 1})])


DTYPES = [pl.String(), pl.Int64(), pl.Float64(), pl.Boolean(), _schema.UTC_DATETIME, pl.List(pl.Int64()), pl.Struct({"a": pl.String()})]


@given(st.sampled_from(DTYPES), st.sampled_from(DTYPES))
def test_a_stored_field_accepts_only_its_own_type_null_or_int_into_float(stored, incoming):
    allowed = stored == incoming or (stored == pl.Float64() and incoming == pl.Int64())
    if allowed:
        assert _schema.extend(stored, incoming, "f") == stored
    else:
        with pytest.raises(EventDataError, match="changing a field's type is refused"):
            _schema.extend(stored, incoming, "f")
    assert _schema.extend(stored, pl.Null(), "f") == stored
    assert _schema.extend(pl.Null(), incoming, "f") == incoming


@given(st.sampled_from(DTYPES), st.sampled_from(DTYPES))
def test_unify_is_symmetric(a, b):
    try:
        ab = _schema.unify(a, b, "f")
    except EventDataError:
        with pytest.raises(EventDataError):
            _schema.unify(b, a, "f")
        return
    assert ab == _schema.unify(b, a, "f")


@given(st.lists(st.one_of(st.integers(-100, 100), st.floats(allow_nan=False, allow_infinity=False)), min_size=1))
def test_ints_and_floats_in_one_field_are_stored_as_float(xs):
    store = InMemoryEventStore()
    store.append("s", [NewEvent("E", {"x": x}) for x in xs])
    expected = pl.Float64 if any(isinstance(x, float) for x in xs) else pl.Int64
    assert store.schema("E") == {"x": expected}
    back = [e.data["x"] for e in store.read_all()]
    assert back == xs
    assert {type(x) for x in back} == ({float} if expected == pl.Float64 else {int})


@pytest.mark.parametrize(
    ("dtype", "nodes"), [(pl.Int64(), 1), (pl.List(pl.Int64()), 3), (pl.Struct({"a": pl.String(), "b": pl.Int64()}), 3)]
)
def test_check_width_allows_as_many_parquet_schema_nodes_as_pyarrow_reopens(dtype, nodes):
    """pyarrow reads a footer of up to 1,000,000 schema nodes: the root and each column's
    nodes (a list takes 3, a dict 1 plus its keys')."""
    columns = {f"c{i}": dtype for i in range((_schema.MAX_NODES - 1) // nodes)}
    _schema.check_width(columns, "the commit")
    columns["one_more"] = dtype
    with pytest.raises(EventDataError, match=r"the commit is too wide: .* 1,000,000 Parquet schema nodes"):
        _schema.check_width(columns, "the commit")


def test_check_width_refuses_names_beyond_the_footers_string_limit():
    """polars stores the Arrow schema as one footer string; pyarrow refuses one over 100 MB."""
    _schema.check_width({"n" * 74_000_000: pl.Int64()}, "the commit")
    with pytest.raises(EventDataError, match=r"100,000,000 bytes of Arrow schema.* about 101,333,408 bytes"):
        _schema.check_width({"n" * 76_000_000: pl.Int64()}, "the commit")
