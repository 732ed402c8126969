"""Payload typing: which column type each payload field is stored as.

Every event type has a schema, ``{field: polars dtype}``, grown as events arrive. A field
may start as ``Null`` (only ``None`` seen so far) and later gain a type; an ``Int64``
value may go into a ``Float64`` field; any other change of a field's type is refused,
because the stored column would no longer hold what older events meant.
"""

from __future__ import annotations

import reprlib
from datetime import datetime, timezone
from typing import Any

import polars as pl

from .errors import EventDataError
from .events import RESERVED_FIELDS, check_text

Schema = dict[str, pl.DataType]

UTC_DATETIME = pl.Datetime("us", "UTC")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT64_RANGE = "-2**63..2**63-1"

#: Parquet schema levels one payload field may take. pyarrow refuses to open a file whose
#: schema is deeper than 100 levels (the root takes one); a dict takes one level, a list
#: two, and the value at the bottom one: 98 nested dicts, or 49 nested lists, at most.
MAX_DEPTH = 99

#: pyarrow refuses to open a Parquet file whose footer holds a list of more than 1,000,000
#: elements or a string of more than 100,000,000 bytes. The longest list is the schema:
#: the root, one node per column, dict key and list item, and two more per list; the
#: longest string is the Arrow schema that polars stores beside it, about 4/3 x (name +
#: 48) bytes per node (measured with pyarrow 26 and polars 2.1; 56 below, for margin).
MAX_NODES = 1_000_000
MAX_SCHEMA_BYTES = 100_000_000

_SUPPORTED = "str, int, float, bool, None, timezone-aware datetime, list or dict"

# Python types that can be stored without any conversion when the field's dtype matches.
# datetime is absent on purpose: it must be checked for a time zone and turned into UTC.
_EXACT: dict[pl.DataType, type] = {
    pl.String(): str,
    pl.Int64(): int,
    pl.Float64(): float,
    pl.Boolean(): bool,
}


def exact_types(schema: Schema) -> dict[str, type]:
    """The fast-path table for :func:`check_event`: field -> Python type stored as-is."""
    return {name: _EXACT[dt] for name, dt in schema.items() if dt in _EXACT}


def infer(value: Any, where: str, room: int = MAX_DEPTH) -> pl.DataType:
    """The dtype a Python payload value is stored as, or :class:`EventDataError`.

    ``room`` is how many Parquet schema levels the value may still take (see
    :data:`MAX_DEPTH`).
    """
    t = type(value)
    nested = isinstance(value, (list, tuple, dict))
    if room < (2 if isinstance(value, (list, tuple)) else 1) + nested:
        _too_deep(where, reprlib.repr(value))
    if value is None:
        return pl.Null()
    if t is bool:
        return pl.Boolean()
    if t is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise EventDataError(f"{where}: int {value} does not fit in 64 bits (expected {INT64_RANGE})")
        return pl.Int64()
    if t is float:
        return pl.Float64()
    if t is str:
        check_text(value, where)
        return pl.String()
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise EventDataError(
                f"{where}: datetime must be timezone-aware (got naive {value.isoformat()}); "
                "use datetime(..., tzinfo=timezone.utc)"
            )
        return UTC_DATETIME
    if isinstance(value, (list, tuple)):
        inner: pl.DataType = pl.Null()
        for i, item in enumerate(value):
            inner = unify(inner, infer(item, f"{where}[{i}]", room - 2), f"{where}[{i}]")
        return pl.List(inner)
    if isinstance(value, dict):
        if not value:
            # A struct needs at least one field (Parquet cannot store one without); an
            # empty dict carries nothing, so it is stored, and reads back, as null.
            return pl.Null()
        fields = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise EventDataError(f"{where}: dict keys must be str (got {key!r})")
            check_text(key, f"{where}: dict key")
            fields[key] = infer(item, f"{where}.{key}", room - 1)
        return pl.Struct(fields)
    raise EventDataError(
        f"{where} has unsupported type {t.__name__} (value {value!r}); expected {_SUPPORTED}"
    )


def unify(a: pl.DataType, b: pl.DataType, where: str) -> pl.DataType:
    """The one dtype that holds values of both ``a`` and ``b`` (within one append)."""
    if a == b:
        return a
    if isinstance(a, pl.Null):
        return b
    if isinstance(b, pl.Null):
        return a
    if {type(a), type(b)} == {pl.Int64, pl.Float64}:
        return pl.Float64()
    if isinstance(a, pl.List) and isinstance(b, pl.List):
        return pl.List(unify(a.inner, b.inner, f"{where}[]"))
    if isinstance(a, pl.Struct) and isinstance(b, pl.Struct):
        fields = {f.name: f.dtype for f in a.fields}
        for f in b.fields:
            fields[f.name] = unify(fields[f.name], f.dtype, f"{where}.{f.name}") if f.name in fields else f.dtype
        return pl.Struct(fields)
    raise EventDataError(f"{where} holds values of two types in one append: {a} and {b}")


def extend(stored: pl.DataType, incoming: pl.DataType, where: str) -> pl.DataType:
    """The stored dtype after accepting ``incoming``; refuses a change of type."""
    if stored == incoming or isinstance(incoming, pl.Null):
        return stored
    if isinstance(stored, pl.Null):
        return incoming
    if isinstance(stored, pl.Float64) and isinstance(incoming, pl.Int64):
        return stored
    if isinstance(stored, pl.List) and isinstance(incoming, pl.List):
        return pl.List(extend(stored.inner, incoming.inner, f"{where}[]"))
    if isinstance(stored, pl.Struct) and isinstance(incoming, pl.Struct):
        fields = {f.name: f.dtype for f in stored.fields}
        for f in incoming.fields:
            fields[f.name] = (
                extend(fields[f.name], f.dtype, f"{where}.{f.name}") if f.name in fields else f.dtype
            )
        return pl.Struct(fields)
    raise EventDataError(
        f"{where} is stored as {stored} but the new value is {incoming}; changing a field's "
        "type is refused (nothing was written) - add a new field or a new event type instead"
    )


def normalize(value: Any, dtype: pl.DataType) -> Any:
    """``value`` as it reads back from a ``dtype`` column (int -> float, datetime -> UTC,
    an empty dict -> None: see :func:`infer`)."""
    if value is None or isinstance(dtype, pl.Null) or (isinstance(value, dict) and not value):
        return None
    if isinstance(dtype, pl.Float64):
        return float(value)
    if isinstance(dtype, pl.Datetime):
        return value.astimezone(timezone.utc)
    if isinstance(dtype, pl.List):
        return [normalize(v, dtype.inner) for v in value]
    if isinstance(dtype, pl.Struct):
        return {f.name: normalize(value.get(f.name), f.dtype) for f in dtype.fields}
    return value


def check_field_name(name: object, event_type: str) -> None:
    if not isinstance(name, str) or not name:
        raise EventDataError(f"{event_type}: payload field names must be non-empty str (got {name!r})")
    check_text(name, f"{event_type}: payload field name")
    if name in RESERVED_FIELDS:
        raise EventDataError(
            f"{event_type}: payload field {name!r} is reserved for the event frame; "
            f"rename it (reserved: {', '.join(sorted(RESERVED_FIELDS))})"
        )


def _too_deep(where: str, found: str) -> None:
    raise EventDataError(
        f"{where} is nested too deep: a field may take at most {MAX_DEPTH} Parquet levels (a "
        f"dict takes 1, a list 2, a value 1), or the store could not be reopened (got {found}, "
        "at the limit)"
    )


def frame_dtype(dtype: pl.DataType, where: str, room: int = MAX_DEPTH) -> pl.DataType:
    """The stored dtype for a column of an incoming frame, or :class:`EventDataError`.

    ``room`` is how many Parquet schema levels the column may still take (see
    :data:`MAX_DEPTH`).
    """
    if room < (3 if isinstance(dtype, (pl.List, pl.Array)) else 2 if isinstance(dtype, pl.Struct) else 1):
        _too_deep(where, str(dtype))
    if isinstance(dtype, (pl.String, pl.Categorical, pl.Enum)):
        return pl.String()
    if dtype.is_integer():
        return pl.Int64()
    if dtype.is_float():
        return pl.Float64()
    if isinstance(dtype, (pl.Boolean, pl.Null)):
        return dtype
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            raise EventDataError(
                f"{where}: datetime column must be timezone-aware (got {dtype}); use "
                ".dt.replace_time_zone('UTC')"
            )
        return UTC_DATETIME
    if isinstance(dtype, (pl.List, pl.Array)):
        return pl.List(frame_dtype(dtype.inner, f"{where}[]", room - 2))
    if isinstance(dtype, pl.Struct):
        return pl.Struct({f.name: frame_dtype(f.dtype, f"{where}.{f.name}", room - 1) for f in dtype.fields})
    raise EventDataError(f"{where}: column type {dtype} is not supported; expected {_SUPPORTED}")


def check_width(columns: Schema, where: str) -> None:
    """Refuse a commit file of ``columns`` that pyarrow could not reopen (:data:`MAX_NODES`)."""
    nodes, size = 1, 0
    for name, dtype in columns.items():
        n, b = _footprint(name, dtype)
        nodes += n
        size += b
    size = size * 4 // 3
    if nodes > MAX_NODES or size > MAX_SCHEMA_BYTES:
        raise EventDataError(
            f"{where} is too wide: one commit's columns may take {MAX_NODES:,} Parquet schema "
            f"nodes and {MAX_SCHEMA_BYTES:,} bytes of Arrow schema, or the store could not be "
            f"reopened (got {len(columns):,} columns: {nodes:,} nodes, about {size:,} bytes); "
            "spread the fields over fewer types per commit, or use shorter names"
        )


def _footprint(name: str, dtype: pl.DataType) -> tuple[int, int]:
    """(Parquet schema nodes, Arrow schema bytes before base64) of one column."""
    own = len(name.encode()) + 56
    if isinstance(dtype, pl.Struct):
        parts = [_footprint(f.name, f.dtype) for f in dtype.fields]
        return 1 + sum(n for n, _ in parts), own + sum(b for _, b in parts)
    if isinstance(dtype, pl.List):
        n, b = _footprint("item", dtype.inner)
        return 2 + n, own + b
    return 1, own
