"""Checking imported rows one by one, and turning the good ones into an event frame.

:class:`Reader` holds what one import has learnt so far: the type of each
``(event type, payload field)`` (from the store, from ``dtypes`` or from the first value in
the file) and, at the end, which streams continue contiguously. See
:mod:`esnotebook.importers.files` for the rules it enforces.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import polars as pl

from .. import _schema
from ..errors import EventDataError
from ..events import check_event_type

if TYPE_CHECKING:
    from ..store.base import EventStore

#: The default mapping: canonical field -> the file's field (``None``: not in the file).
DEFAULT_COLUMNS: dict[str, str | None] = {
    "stream_id": "stream_id",
    "event_type": "event_type",
    "version": "version",
    "recorded_at": "recorded_at",
    "event_id": "event_id",
    "correlation_id": "correlation_id",
    "causation_id": "causation_id",
    "metadata": "metadata",
    "position": "position",
    "payload": None,
}
_ALL_OR_NONE = ("version", "recorded_at", "event_id")
_HEADER = ("stream_id", "event_type", *_ALL_OR_NONE, "correlation_id", "causation_id", "metadata")
_PYTHON_DTYPES: dict[type, pl.DataType] = {
    str: pl.String(), int: pl.Int64(), float: pl.Float64(), bool: pl.Boolean(),
    datetime: _schema.UTC_DATETIME,
}  # fmt: skip
_ISO_AWARE = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)\Z")
_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?\Z|[+-]?(inf|nan)\Z", re.I)

Good = tuple[int, dict[str, Any], Any]  # line, checked row, original record
Rejected = tuple[int, "str | None", str, Any]  # line, stream id, reason, original record


class Bad(Exception):
    """A row problem: the reason, and the stream when it is known."""

    def __init__(self, reason: str, stream_id: str | None = None) -> None:
        super().__init__(reason)
        self.stream_id = stream_id


def mapping_of(columns: Mapping[str, str | None] | None) -> dict[str, str | None]:
    mapping = dict(DEFAULT_COLUMNS)
    for key, value in (columns or {}).items():
        if key not in mapping:
            raise ValueError(
                f"'columns' key {key!r} is not a canonical field (expected one of "
                f"{', '.join(DEFAULT_COLUMNS)})"
            )
        if value is not None and not isinstance(value, str):
            raise ValueError(f"'columns'[{key!r}] must be a field name or None (got {value!r})")
        mapping[key] = value
    return mapping


def _dtype_of(name: str, given: type | pl.DataType) -> pl.DataType:
    if isinstance(given, type) and given in _PYTHON_DTYPES:
        return _PYTHON_DTYPES[given]
    if isinstance(given, pl.DataType) or (
        isinstance(given, type) and issubclass(given, pl.DataType)
    ):
        return _schema.frame_dtype(
            given() if isinstance(given, type) else given, f"dtypes[{name!r}]"
        )
    raise ValueError(
        f"dtypes[{name!r}] must be str, int, float, bool, datetime or a polars dtype "
        f"(got {given!r})"
    )


class Reader:
    """Checks records one by one, keeps the good ones, and commits them once."""

    def __init__(
        self,
        mapping: dict[str, str | None],
        dtypes: Mapping[str, type | pl.DataType] | None,
        into: EventStore | None,
        *,
        parse_dates: bool,
        text_cells: bool,
    ) -> None:
        self.mapping = mapping
        self.dtypes = {k: _dtype_of(k, v) for k, v in (dtypes or {}).items()}
        if into is None:
            from ..store.memory import InMemoryEventStore

            into = InMemoryEventStore()
        self.store = into
        self.parse_dates = parse_dates
        self.text_cells = text_cells
        self.known = {f for f in mapping.values() if f is not None}
        # (event type, field) -> (dtype, line that set it or None when it came from the store)
        self.types: dict[tuple[str, str], tuple[pl.DataType, int | None]] = {}
        self.stored_types = set(getattr(into, "event_types", lambda: [])())

    # .................................................................. a row
    def _field(self, record: dict[str, Any], key: str) -> Any:
        name = self.mapping[key]
        return None if name is None else record.get(name)

    def _row(self, line: int, record: dict[str, Any]) -> dict[str, Any]:
        stream_id = self._field(record, "stream_id")
        if not isinstance(stream_id, str) or not stream_id:
            what = "missing" if stream_id is None else f"not a non-empty string (got {stream_id!r})"
            raise Bad(f"field {self.mapping['stream_id']!r} (stream_id) is {what}")
        row: dict[str, Any] = {"stream_id": stream_id}
        try:
            event_type = self._field(record, "event_type")
            if event_type is None:
                raise Bad(f"field {self.mapping['event_type']!r} (event_type) is missing")
            try:
                row["event_type"] = check_event_type(event_type)
            except EventDataError as exc:
                raise Bad(str(exc)) from None
            for key in (
                "version",
                "recorded_at",
                "event_id",
                "correlation_id",
                "causation_id",
                "metadata",
            ):
                value = self._field(record, key)
                if value is not None:
                    row[key] = getattr(self, f"_check_{key}")(value)
            row["payload"] = self._payload(line, event_type, record)
        except Bad as exc:
            raise Bad(str(exc), stream_id) from None
        return row

    def _check_version(self, value: Any) -> int:
        if self.text_cells and isinstance(value, str) and _INT.match(value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise Bad(f"version must be an int >= 1 (got {value!r})")
        return value

    def _check_recorded_at(self, value: Any) -> datetime:
        when = aware(value)
        if when is None:
            raise Bad(
                f"recorded_at must be an ISO 8601 datetime with a time zone, e.g. "
                f"'2024-05-01T12:00:00Z' (got {value!r})"
            )
        return when

    def _check_event_id(self, value: Any) -> str:
        try:
            return str(uuid.UUID(value))
        except (TypeError, ValueError, AttributeError):
            raise Bad(f"event_id must be a UUID string (got {value!r})") from None

    def _check_correlation_id(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise Bad(f"correlation_id must be a non-empty string (got {value!r})")
        return value

    def _check_causation_id(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise Bad(f"causation_id must be a non-empty string (got {value!r})")
        return value

    def _check_metadata(self, value: Any) -> str | None:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise Bad(f"metadata must be a JSON object (got {value[:40]!r})") from None
        if not isinstance(value, dict):
            raise Bad(f"metadata must be a JSON object (got {type(value).__name__})")
        return json.dumps(value, separators=(",", ":")) if value else None

    def _payload(self, line: int, event_type: str, record: dict[str, Any]) -> dict[str, Any]:
        key = self.mapping["payload"]
        if key is not None:
            data = record.get(key)
            if data is None:
                return {}
            if isinstance(data, str) and self.text_cells:
                try:
                    data = json.loads(data)
                except ValueError:
                    raise Bad(
                        f"payload field {key!r} must hold a JSON object (got {data[:40]!r})"
                    ) from None
            text = False
            if not isinstance(data, dict):
                raise Bad(f"payload field {key!r} must be an object (got {type(data).__name__})")
        else:
            data = {k: v for k, v in record.items() if k not in self.known}
            text = self.text_cells
        out = {}
        for name, value in data.items():
            if value is None:
                continue
            try:
                _schema.check_field_name(name, event_type)
            except EventDataError as exc:
                raise Bad(str(exc)) from None
            out[name] = self._value(line, event_type, name, value, text)
        return out

    def _value(self, line: int, event_type: str, name: str, value: Any, text: bool) -> Any:
        expected = self._expected(event_type, name)
        if text:
            value = _from_text(value, None if expected is None else expected[0])
        elif (
            isinstance(value, str) and expected is not None and isinstance(expected[0], pl.Datetime)
        ):
            parsed = aware(value)
            value = parsed if parsed is not None else value
        where = f"{event_type} field {name!r}"
        try:
            dtype = _schema.infer(value, where)
        except EventDataError as exc:
            raise Bad(str(exc)) from None
        if expected is None:
            self.types[(event_type, name)] = (dtype, line)
            return value
        have, origin = expected
        try:
            if origin is None or origin == -1:
                _schema.extend(have, dtype, where)
                merged = have
            else:
                merged = _schema.unify(have, dtype, where)
        except EventDataError:
            source = {None: "the store", -1: "dtypes"}.get(origin, f"line {origin}")
            shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
            raise Bad(
                f"{where} is {_type_name(dtype)} ({shown}), expected {_type_name(have)} "
                f"(as set by {source})"
            ) from None
        if merged != have:
            self.types[(event_type, name)] = (merged, origin)
        return value

    def _expected(self, event_type: str, name: str) -> tuple[pl.DataType, int | None] | None:
        found = self.types.get((event_type, name))
        if found is not None:
            return found
        if event_type in self.stored_types:
            stored = self.store.schema(event_type).get(name)  # type: ignore[attr-defined]
            if stored is not None and not isinstance(stored, pl.Null):
                self.types[(event_type, name)] = (stored, None)
                return self.types[(event_type, name)]
        if name in self.dtypes:
            self.types[(event_type, name)] = (self.dtypes[name], -1)
            return self.types[(event_type, name)]
        return None

    # .................................................................. whole-file rules
    def _complete_header(self, good: list[Good], bad: list[Rejected]) -> list[Good]:
        """A field of :data:`_ALL_OR_NONE` that some rows have must be in every row."""
        present = [k for k in _ALL_OR_NONE if any(k in row for _, row, _ in good)]
        if not present:
            return good
        kept = []
        for line, row, original in good:
            missing = [k for k in present if k not in row]
            if missing:
                names = ", ".join(repr(self.mapping[k]) for k in missing)
                reason = f"field(s) {names} missing (other rows have them)"
                bad.append((line, row["stream_id"], reason, original))
            else:
                kept.append((line, row, original))
        return kept

    def _check_versions(self, good: list[Good], bad: list[Rejected]) -> list[Good]:
        """Each stream continues from the store's version, +1 per row, in file order.

        Once a row of a stream is bad, every later row of that stream is bad too: it could
        not be appended without the missing one. Earlier good rows are a valid prefix of
        the stream and stay.
        """
        first_bad: dict[str, int] = {}
        for line, sid, _, _ in bad:
            if sid is not None:
                first_bad[sid] = min(line, first_bad.get(sid, line))
        has_versions = any("version" in row for _, row, _ in good)
        current: dict[str, int] = {}
        kept = []
        for line, row, original in good:
            sid = row["stream_id"]
            if sid in first_bad and first_bad[sid] < line:
                reason = f"stream {sid!r} has a bad row on line {first_bad[sid]} before this one"
                bad.append((line, sid, reason, original))
                continue
            if sid not in current:
                current[sid] = self.store.stream_version(sid)
            expected = current[sid] + 1
            if has_versions and row["version"] != expected:
                reason = (
                    f"version {row['version']} of stream {sid!r} is not contiguous: expected "
                    f"{expected} (the stream is at version {current[sid]} before this row)"
                )
                bad.append((line, sid, reason, original))
                first_bad[sid] = line
                continue
            current[sid] = expected
            kept.append((line, row, original))
        return kept

    # .................................................................. the frame
    def _frame(self, rows: list[dict[str, Any]]) -> pl.DataFrame:
        columns: dict[str, pl.Series] = {}
        n = len(rows)
        for key in _HEADER:
            values = [row.get(key) for row in rows]
            if key in _ALL_OR_NONE and (not n or key not in rows[0]):
                continue
            dtype = {"version": pl.Int64(), "recorded_at": _schema.UTC_DATETIME}.get(
                key, pl.String()
            )
            columns[key] = pl.Series(key, values, dtype=dtype)
        fields: dict[str, pl.DataType] = {}
        owners: dict[str, str] = {}
        for (event_type, name), (dtype, _) in self.types.items():
            if name in fields and fields[name] != dtype and not isinstance(dtype, pl.Null):
                if isinstance(fields[name], pl.Null):
                    fields[name] = dtype
                    owners[name] = event_type
                    continue
                raise EventDataError(
                    f"payload field {name!r} is {_type_name(fields[name])} in {owners[name]} "
                    f"events but {_type_name(dtype)} in {event_type} events; one import "
                    "gives a field name one type (rename the field in one event type, or "
                    "import the event types separately); nothing was imported"
                )
            if name not in fields:
                fields[name], owners[name] = dtype, event_type
        for name, dtype in fields.items():
            values = [row["payload"].get(name) for row in rows]
            if self.parse_dates and dtype == pl.String():
                parsed = [aware(v) for v in values]
                if (
                    any(v is not None for v in values)
                    and all((p is not None) == (v is not None) for p, v in zip(parsed, values))
                    and not self._stored_as_string(name)
                ):
                    values, dtype = parsed, _schema.UTC_DATETIME
            if any(v is not None for v in values):
                columns[name] = pl.Series(name, values, dtype=dtype, strict=False)
        return pl.DataFrame(columns, height=n) if columns else pl.DataFrame(height=n)

    def _stored_as_string(self, name: str) -> bool:
        return any(
            origin is None or origin == -1
            for (_, field), (dtype, origin) in self.types.items()
            if field == name and dtype == pl.String()
        )


def aware(value: Any) -> datetime | None:
    """``value`` as a UTC datetime if it is an ISO 8601 string with a time zone."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc) if value.tzinfo is not None else None
    if not isinstance(value, str) or not _ISO_AWARE.match(value):
        return None
    try:
        return datetime.fromisoformat(value).astimezone(timezone.utc)
    except ValueError:
        return None


def _from_text(cell: str, expected: pl.DataType | None) -> Any:
    """A CSV cell as the Python value its field expects (or its own best guess)."""
    s = cell.strip()
    if expected is not None:
        if isinstance(expected, pl.String):
            return cell
        if isinstance(expected, pl.Datetime):
            return aware(s) or cell
    if _INT.match(s):
        return int(s)
    if _FLOAT.match(s):
        return float(s)
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    return aware(s) or cell


def _type_name(dtype: pl.DataType) -> str:
    names = {
        pl.Int64: "int",
        pl.Float64: "float",
        pl.String: "str",
        pl.Boolean: "bool",
        pl.Null: "null",
    }
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    return names.get(type(dtype), str(dtype))
