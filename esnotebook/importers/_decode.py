"""Decoding the ``eventsourcing`` library's stored-event rows into an event frame.

Rows arrive in notification order as ``(notification id, originator id, originator
version, topic, state)``. States are decrypted (when a ``decrypt`` function is given),
inflated when zlib-compressed, then decoded per topic: vectorised through polars' JSON
reader where the library's built-in transcodings (``datetime_iso``, ``uuid_hex``,
``decimal_str``) sit at the top level of the state, and one state at a time, with the
library's own ``{"_type_", "_data_"}`` rules, for nested or custom transcodings.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import polars as pl

from .. import _schema
from .._schema import UTC_DATETIME
from ..errors import EventDataError
from ..events import RESERVED_FIELDS

EventTypeMode = Literal["qualname", "name"]
StreamIdMode = Literal["prefixed", "id"]
DecimalMode = Literal["float", "str"]

_TRANSCODED = frozenset({"_type_", "_data_"})
_ROW_SCHEMA = {
    "_nid": pl.Int64(),
    "_oid": pl.String(),
    "version": pl.Int64(),
    "_topic": pl.String(),
    "_state": pl.Binary(),
}
#: ``datetime.isoformat()`` of an aware datetime; ``%.f`` also matches no fraction.
_ISO_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%:z"


class Options:
    """The decoding options of one import, checked once."""

    __slots__ = ("event_types", "stream_ids", "decimals", "transcodings", "decrypt")

    def __init__(
        self,
        event_types: EventTypeMode | Callable[[str], str],
        stream_ids: StreamIdMode,
        decimals: DecimalMode,
        transcodings: Mapping[str, Callable[[Any], Any]] | None,
        decrypt: Callable[[bytes], bytes] | None,
    ) -> None:
        if not callable(event_types) and event_types not in ("qualname", "name"):
            raise ValueError(
                f"'event_types' must be 'qualname', 'name' or a function (got {event_types!r})"
            )
        if stream_ids not in ("prefixed", "id"):
            raise ValueError(f"'stream_ids' must be 'prefixed' or 'id' (got {stream_ids!r})")
        if decimals not in ("float", "str"):
            raise ValueError(f"'decimals' must be 'float' or 'str' (got {decimals!r})")
        self.event_types = event_types
        self.stream_ids = stream_ids
        self.decimals = decimals
        self.transcodings = dict(transcodings or {})
        self.decrypt = decrypt


def decode_all(
    batches: Iterator[list[tuple[Any, ...]]], total: int, options: Options, source: str
) -> pl.DataFrame:
    from .._progress import progress_bar

    parts: list[pl.DataFrame] = []
    with progress_bar(total=total, desc=f"reading {source}", unit="event") as bar:
        for rows in batches:
            parts.extend(_decode_batch(rows, options))
            bar.update(len(rows))
    if not parts:
        return pl.DataFrame(
            schema={
                "stream_id": pl.String,
                "version": pl.Int64,
                "event_type": pl.String,
                "recorded_at": UTC_DATETIME,
            }  # fmt: skip
        )
    _check_field_types(parts)
    frame = parts[0] if len(parts) == 1 else pl.concat(parts, how="diagonal_relaxed").sort("_nid")
    return _finish_stream_ids(frame, options)


def _decode_batch(rows: list[tuple[Any, ...]], options: Options) -> list[pl.DataFrame]:
    """One frame per topic in the batch (rows keep their notification id ``_nid``)."""
    # Rows go to polars as they are: building columns in Python costs more than the fetch.
    head = pl.DataFrame(rows, schema=_ROW_SCHEMA, orient="row")
    head = head.with_columns(_state=_plain_states(head, options))
    parts = []
    for (topic_name,), group in head.partition_by(
        "_topic", as_dict=True, maintain_order=True
    ).items():
        payload = _decode_states(group, topic_name, options)
        parts.append(pl.concat([group.drop("_state"), payload], how="horizontal"))
    return parts


def _plain_states(head: pl.DataFrame, options: Options) -> pl.Series:
    """The states as JSON text, decrypted and decompressed as needed."""
    raw = head["_state"]
    states: list[bytes] = []
    if options.decrypt is not None:
        states = [_decrypt(options.decrypt, s, head, i) for i, s in enumerate(raw.to_list())]
        raw = pl.Series(states, dtype=pl.Binary)
    plain = raw.bin.starts_with(b"{")
    if not plain.all():
        states = states or raw.to_list()
        # zlib output starts with 0x78; anything else (or a failed inflate) is not ours to read.
        for i in (~plain).arg_true().to_list():
            states[i] = _inflate(states[i], head, i)
        raw = pl.Series(states, dtype=pl.Binary)
    try:
        return raw.cast(pl.String)
    except pl.exceptions.InvalidOperationError:
        bad = next(i for i, s in enumerate(raw.to_list()) if not _is_utf8(s))
        raise EventDataError(f"{_where(head, bad)}: state is not UTF-8 JSON") from None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _decrypt(decrypt: Callable[[bytes], bytes], state: bytes, head: pl.DataFrame, i: int) -> bytes:
    try:
        return decrypt(bytes(state))
    except Exception as exc:
        raise EventDataError(
            f"{_where(head, i)}: decrypt failed ({type(exc).__name__}: {exc})"
        ) from None


def _inflate(state: bytes, head: pl.DataFrame, i: int) -> bytes:
    try:
        out = zlib.decompress(state)
    except zlib.error:
        out = b""
    if not out.startswith(b"{"):
        raise EventDataError(
            f"{_where(head, i)}: the state is neither JSON nor zlib-compressed JSON (it starts "
            f"with {bytes(state[:8])!r}); the application probably encrypts its events "
            "(CIPHER_TOPIC). Encrypted stores are refused: pass decrypt=<the application's "
            "cipher>.decrypt to read them"
        )
    return out


def _where(head: pl.DataFrame, i: int) -> str:
    nid, oid, version, topic = head.row(i)[:4]
    return f"stored event {nid} ({topic}, originator {oid}, version {version})"


def _decode_states(group: pl.DataFrame, topic: str, options: Options) -> pl.DataFrame:
    """Payload columns (with ``recorded_at``) of one topic's states, in row order."""
    frame = None
    if not options.transcodings:
        frame = _decode_states_fast(group["_state"], options)
    if frame is None:
        frame = _decode_states_exact(group, topic, options)
    if "timestamp" not in frame.columns:
        raise EventDataError(
            f"{_where(group, 0)}: the state has no 'timestamp' to become recorded_at "
            f"(fields: {', '.join(frame.columns) or 'none'})"
        )
    if not isinstance(frame.schema["timestamp"], pl.Datetime):
        raise EventDataError(
            f"{_where(group, 0)}: the state's 'timestamp' is {frame.schema['timestamp']}, "
            "expected a datetime (the library's datetime_iso transcoding)"
        )
    clash = sorted(set(frame.columns) & RESERVED_FIELDS)
    if clash:
        raise EventDataError(
            f"{_where(group, 0)}: state field(s) {', '.join(map(repr, clash))} would collide "
            "with the event frame's own columns; esnotebook cannot import them as payload"
        )
    if frame["timestamp"].null_count():
        bad = frame["timestamp"].is_null().arg_true()[0]
        raise EventDataError(f"{_where(group, bad)}: the state's 'timestamp' is missing or null")
    frame = frame.rename({"timestamp": "recorded_at"})
    name = _event_type(topic, options)
    return frame.with_columns(
        event_type=pl.lit(name, pl.String), _prefix=pl.lit(_prefix(topic), pl.String)
    )


def _decode_states_fast(states: pl.Series, options: Options) -> pl.DataFrame | None:
    """Vectorised decoding; ``None`` when the states need the exact Python path."""
    try:
        decoded = states.str.json_decode(infer_schema_length=None)
    except Exception:
        return None
    if not isinstance(decoded.dtype, pl.Struct):
        return None
    frame = decoded.struct.unnest()
    out = []
    for name in frame.columns:
        column = frame[name]
        dtype = column.dtype
        if isinstance(dtype, pl.Struct) and {f.name for f in dtype.fields} == _TRANSCODED:
            converted = _convert_transcoded(column, options)
            if converted is None:
                return None
            out.append(converted)
        elif _holds_transcoded(dtype) or isinstance(dtype, pl.Struct) and not dtype.fields:
            return None
        else:
            out.append(column)
    return pl.DataFrame(out)


def _holds_transcoded(dtype: pl.DataType) -> bool:
    if isinstance(dtype, pl.Struct):
        return {f.name for f in dtype.fields} == _TRANSCODED or any(
            _holds_transcoded(f.dtype) for f in dtype.fields
        )
    if isinstance(dtype, (pl.List, pl.Array)):
        return _holds_transcoded(dtype.inner)
    return False


def _convert_transcoded(column: pl.Series, options: Options) -> pl.Series | None:
    kinds = column.struct.field("_type_").drop_nulls().unique().to_list()
    data = column.struct.field("_data_")
    if len(kinds) != 1 or data.dtype != pl.String:
        return None
    kind = kinds[0]
    try:
        if kind == "datetime_iso":
            # The library writes datetime.isoformat(); parsing with that exact format is
            # ten times faster than letting polars guess. Anything else: let it guess
            # (aware strings are converted to UTC, naive ones taken as UTC).
            out = data.str.to_datetime(_ISO_FORMAT, time_zone="UTC", time_unit="us", strict=False)
            if out.null_count() != data.null_count():
                out = data.str.to_datetime(time_zone="UTC", time_unit="us")
        elif kind == "uuid_hex":
            out = pl.select(_dashed(pl.lit(data))).to_series()
        elif kind == "decimal_str":
            out = data.cast(pl.Float64) if options.decimals == "float" else data
        else:
            return None
    except Exception:
        return None
    if out.null_count() != data.null_count():
        return None
    return out.alias(column.name)


def _dashed(hex32: pl.Expr) -> pl.Expr:
    """32 hex digits as the dashed UUID form ``8-4-4-4-12``."""
    parts = ((0, 8), (8, 4), (12, 4), (16, 4), (20, 12))
    return pl.concat_str([hex32.str.slice(o, n) for o, n in parts], separator="-")


def _decode_states_exact(group: pl.DataFrame, topic: str, options: Options) -> pl.DataFrame:
    """The library's own JSON rules, one state at a time (custom or nested transcodings)."""
    hook = _object_hook(options)
    rows = []
    for i, text in enumerate(group["_state"].to_list()):
        try:
            value = json.loads(text, object_hook=hook)
        except _TranscodingError as exc:
            raise EventDataError(f"{_where(group, i)}: {exc}") from None
        except ValueError as exc:
            raise EventDataError(
                f"{_where(group, i)}: the state is not valid JSON ({exc})"
            ) from None
        if not isinstance(value, dict):
            raise EventDataError(f"{_where(group, i)}: the state is not a JSON object")
        rows.append(value)
    try:
        return pl.from_dicts(rows, infer_schema_length=None)
    except Exception as exc:
        raise EventDataError(
            f"events of topic {topic!r} could not be made into typed columns ({exc}); "
            "a field must keep one type across the events of a type"
        ) from None


class _TranscodingError(ValueError):
    pass


def _object_hook(options: Options) -> Callable[[dict[str, Any]], Any]:
    decimal_as = float if options.decimals == "float" else str
    custom = options.transcodings

    def decode(d: dict[str, Any]) -> Any:
        if len(d) != 2 or "_type_" not in d or "_data_" not in d:
            return d
        kind, data = d["_type_"], d["_data_"]
        if kind in custom:
            return custom[kind](data)
        if kind == "datetime_iso":
            value = datetime.fromisoformat(data)
            return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
        if kind == "uuid_hex":
            return str(UUID(data))
        if kind == "decimal_str":
            return decimal_as(Decimal(data))
        raise _TranscodingError(
            f"the state uses the custom transcoding {kind!r}, which esnotebook cannot decode; "
            f"pass transcodings={{{kind!r}: function(data) -> value}}"
        )

    return decode


def _event_type(topic: str, options: Options) -> str:
    if callable(options.event_types):
        return options.event_types(topic)
    qualname = topic.rpartition(":")[2]
    return qualname if options.event_types == "qualname" else qualname.rpartition(".")[2]


def _prefix(topic: str) -> str | None:
    qualname = topic.rpartition(":")[2]
    owner = qualname.rpartition(".")[0]
    return owner.rpartition(".")[2].lower() or None


def _check_field_types(parts: list[pl.DataFrame]) -> None:
    """Refuse a field with two types: one frame column cannot hold both faithfully.

    Within an event type, ints and floats of one field make a float field (as the store's
    own append does); across event types a field name must have one type.
    """
    by_type: dict[str, dict[str, pl.DataType]] = {}
    for part in parts:
        event_type = part["event_type"][0]
        fields = by_type.setdefault(event_type, {})
        for name, dtype in part.schema.items():
            if name.startswith("_") or name in ("version", "event_type", "recorded_at"):
                continue
            if isinstance(dtype, pl.Null):
                continue
            have = fields.get(name)
            fields[name] = (
                dtype
                if have is None
                else _schema.unify(have, dtype, f"{event_type} field {name!r}")
            )
    owners: dict[str, tuple[pl.DataType, str]] = {}
    for event_type, fields in by_type.items():
        for name, dtype in fields.items():
            if name in owners and owners[name][0] != dtype:
                first, where = owners[name]
                raise EventDataError(
                    f"field {name!r} is {first} in {where} events but {dtype} in {event_type} "
                    "events; one import gives a field name one type: rename the field in one "
                    "of the event classes, or import the event types separately"
                )
            owners.setdefault(name, (dtype, event_type))


def _finish_stream_ids(frame: pl.DataFrame, options: Options) -> pl.DataFrame:
    """The stream id of each row, worked out once per originator and joined back."""
    oid = pl.col("_oid")
    # The library stores a UUID originator id as 32 hex digits; text ids stay as they are.
    readable = pl.when(oid.str.contains(r"^[0-9a-f]{32}$")).then(_dashed(oid)).otherwise(oid)
    streams = frame.group_by("_oid", maintain_order=True).agg(pl.col("_prefix").first())
    if options.stream_ids == "prefixed":
        prefix = pl.col("_prefix")
        stream = (
            pl.when(prefix.is_null())
            .then(readable)
            .otherwise(pl.concat_str([prefix, pl.lit("-"), readable]))
        )
    else:
        stream = readable
    streams = streams.select("_oid", stream.alias("stream_id"))
    frame = frame.join(streams, on="_oid", how="left", maintain_order="left")
    payload = [
        c
        for c in frame.columns
        if not c.startswith("_") and c not in ("stream_id", "version", "event_type", "recorded_at")
    ]
    return frame.select(
        "stream_id", "version", "event_type",
        pl.col("recorded_at").dt.convert_time_zone("UTC"), *payload,
    )  # fmt: skip
