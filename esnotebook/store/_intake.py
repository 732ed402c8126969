"""Intake of an incoming event frame (``append_frame``): check its header columns, bring
them to their stored types, check or assign positions and versions, and fill in ids and
times. Shared by every backend; the store's lock is held around the calls that read its
state (positions, versions).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from .. import _schema
from ..errors import ConcurrencyError, EventDataError
from ..events import check_text, new_id_series

_UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def _cast_field(name: str, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        col = col.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    return col.cast(dtype)


def _as_polars(frame: Any) -> pl.DataFrame:
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if isinstance(frame, pl.DataFrame):
        return frame
    if type(frame).__module__.startswith("pandas"):
        try:
            return pl.from_pandas(frame)
        except UnicodeEncodeError:
            raise _bad_text(frame) from None
    raise EventDataError(
        f"append_frame needs a polars or pandas DataFrame (got {type(frame).__name__})"
    )


def _bad_text(frame: Any) -> EventDataError:
    """The error naming the first pandas cell whose text no Arrow column can hold."""
    for name in frame.columns:
        for row, value in enumerate(frame[name]):
            if isinstance(value, str):
                try:
                    check_text(value, f"append_frame: row {row} column {name!r}")
                except EventDataError as exc:
                    return exc
    return EventDataError("append_frame: the frame holds text that is not valid Unicode")


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


def _cast_failure(frame: pl.DataFrame, fields: dict[str, pl.DataType]) -> EventDataError:
    """The error naming the first value of ``frame`` that its field's column type cannot
    hold (an unsigned integer beyond the signed 64-bit range); rows are bisected."""
    def fits(name: str, lo: int, hi: int) -> bool:
        try:
            frame.slice(lo, hi - lo).select(_cast_field(name, fields[name]))
        except pl.exceptions.InvalidOperationError:
            return False
        return True

    for name, dtype in fields.items():
        lo, hi = 0, frame.height
        if not fits(name, lo, hi):
            while hi - lo > 1:  # rows lo..hi-1 hold a value that does not fit
                mid = (lo + hi) // 2
                if fits(name, lo, mid):
                    lo = mid
                else:
                    hi = mid
            value = frame.get_column(name).slice(lo, 1).to_list()[0]
            return EventDataError(
                f"append_frame: row {lo} ({frame['event_type'][lo]}) field {name!r}: {value!r} "
                f"does not fit its column type {dtype} (integers must lie in {_schema.INT64_RANGE})"
            )
    return EventDataError(f"append_frame: a payload column does not fit its type ({fields})")


def _prepare_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Check the header columns of an incoming frame and bring them to their stored types."""
    if "stream_number" in frame.columns:
        raise EventDataError(
            "append_frame: column 'stream_number' is assigned by the store (expected it absent; "
            "drop it - each store numbers its own streams)"
        )
    for required in ("stream_id", "event_type"):
        if required not in frame.columns:
            raise EventDataError(
                f"append_frame: column {required!r} is missing (columns: {', '.join(frame.columns)})"
            )
    exprs: list[pl.Expr] = []
    for name in ("stream_id", "event_type", "event_id", "correlation_id", "causation_id", "metadata"):
        if name in frame.columns:
            dt = frame.schema[name]
            if not isinstance(dt, (pl.String, pl.Categorical, pl.Enum, pl.Null)):
                raise EventDataError(f"append_frame: column {name!r} must hold strings (got {dt})")
            exprs.append(pl.col(name).cast(pl.String))
    for name in ("version", "position"):
        if name in frame.columns:
            if not frame.schema[name].is_integer():
                raise EventDataError(
                    f"append_frame: column {name!r} must hold integers (got {frame.schema[name]})"
                )
            exprs.append(pl.col(name).cast(pl.Int64))
    if "recorded_at" in frame.columns:
        dt = frame.schema["recorded_at"]
        if not isinstance(dt, pl.Datetime) or dt.time_zone is None:
            raise EventDataError(
                "append_frame: column 'recorded_at' must be a timezone-aware datetime "
                f"(got {dt}); use .dt.replace_time_zone('UTC')"
            )
        exprs.append(_cast_field("recorded_at", _schema.UTC_DATETIME))
    frame = frame.with_columns(exprs)
    for name in ("stream_id", "event_type", "version", "recorded_at", "event_id", "position"):
        if name in frame.columns:
            nulls = frame[name].null_count()
            if nulls:
                row = frame[name].is_null().arg_true()[0]
                raise EventDataError(f"append_frame: column {name!r} has {nulls} nulls (first at row {row})")
    empty = frame.select((pl.col("stream_id").str.len_bytes() == 0).arg_true().first()).item()
    if empty is not None:
        raise EventDataError(f"append_frame: row {empty}: stream_id must be a non-empty string")
    if "event_id" in frame.columns and frame.height:
        ids = pl.col("event_id").str.to_lowercase()
        bad = frame.select((~ids.str.contains(_UUID_PATTERN)).arg_true().first()).item()
        if bad is not None:
            raise EventDataError(
                f"append_frame: row {bad}: event_id must be a UUID string (got {frame['event_id'][bad]!r})"
            )
        frame = frame.with_columns(ids)
        twice = frame.select(pl.col("event_id").is_first_distinct().not_().arg_true().first()).item()
        if twice is not None:
            eid = frame["event_id"][twice]
            first = frame.select((pl.col("event_id") == eid).arg_true().first()).item()
            raise EventDataError(
                f"append_frame: row {twice}: event_id {eid!r} is also in row {first} (expected "
                "one event per id)"
            )
    if "metadata" in frame.columns:
        for i, text in enumerate(frame["metadata"].to_list()):
            if text is not None:
                try:
                    if not isinstance(json.loads(text, parse_constant=_refuse_constant), dict):
                        raise ValueError("not a JSON object")
                except ValueError as exc:
                    raise EventDataError(
                        f"append_frame: row {i}: metadata must be a JSON object text ({exc})"
                    ) from None
    return frame


def _check_positions(frame: pl.DataFrame, head: int) -> None:
    expected = pl.int_range(head + 1, head + 1 + frame.height, dtype=pl.Int64)
    bad = frame.select((pl.col("position") != expected).arg_true().first()).item()
    if bad is not None:
        raise EventDataError(
            f"append_frame: row {bad}: position {frame['position'][bad]} does not continue the "
            f"store (expected {head + 1 + bad}; the store's head is {head}); drop the 'position' "
            "column to let the store assign positions"
        )


def _number_streams(stream_ids: pl.Series) -> tuple[np.ndarray, np.ndarray, pl.Series, np.ndarray]:
    """Number the rows of each stream 1, 2, ... in frame order, without a Python loop.

    Returns ``(within, run_of_row, names, counts)``: each row's number within its stream, the
    index of its stream in ``names``, the streams in order of first appearance, and their
    row counts. Streams are grouped by a stable sort of their 64-bit hashes; the strings are
    then compared so that a hash collision can never merge two streams.
    """
    n = stream_ids.len()
    hashes = stream_ids.hash(seed=0).to_numpy()
    order = np.argsort(hashes, kind="stable")
    sorted_ids = stream_ids.gather(order)
    start = np.empty(n, dtype=bool)
    start[0] = True
    np.not_equal(hashes[order[1:]], hashes[order[:-1]], out=start[1:])
    same = (sorted_ids == sorted_ids.shift(1)).fill_null(False).to_numpy()
    if (~start & ~same).any():
        # A collision: two streams share a hash. Fall back to exact (slower) grouping.
        rows = pl.DataFrame({"s": stream_ids, "i": np.arange(n)}).sort("s", "i")
        order = rows.get_column("i").to_numpy()
        sorted_ids = stream_ids.gather(order)
        start[1:] = ~(sorted_ids == sorted_ids.shift(1)).fill_null(False).to_numpy()[1:]
    idx = np.arange(n)
    run_start = np.maximum.accumulate(np.where(start, idx, 0))
    starts = np.flatnonzero(start)
    counts = np.diff(np.append(starts, n))
    # A stable sort keeps each stream's rows in frame order, so its run starts at its first
    # row: sorting the runs by that row gives the order of first appearance.
    by_appearance = np.argsort(order[starts], kind="stable")
    rank = np.empty(len(starts), dtype=np.int64)
    rank[by_appearance] = np.arange(len(starts))
    run_sorted = np.cumsum(start) - 1
    within = np.empty(n, dtype=np.int64)
    within[order] = idx - run_start + 1
    run_of_row = np.empty(n, dtype=np.int64)
    run_of_row[order] = rank[run_sorted]
    names = sorted_ids.gather(starts[by_appearance])
    return within, run_of_row, names, counts[by_appearance]


def _assign_versions(
    frame: pl.DataFrame, versions: dict[str, int], numbers: dict[str, int]
) -> tuple[pl.DataFrame, dict[str, int]]:
    """``frame`` with each row's stream version and stream number, and the streams' versions
    after it. ``numbers`` holds the stored streams' numbers; a new stream takes the next
    free number, in order of first appearance (its place in ``versions`` once committed)."""
    within, run_of_row, names, counts = _number_streams(frame.get_column("stream_id"))
    name_list = names.to_list()
    k = len(name_list)
    # A Python lookup per stream, skipped when the store has no streams yet (a bulk import).
    current = np.fromiter((versions.get(s, 0) for s in name_list), np.int64, k) if versions else np.zeros(k, np.int64)
    stored = np.fromiter((numbers.get(s, -1) for s in name_list), np.int64, k) if numbers else np.full(k, -1)
    fresh = stored < 0
    stored[fresh] = len(numbers) + np.arange(int(fresh.sum()))
    stream_number = pl.Series("stream_number", stored[run_of_row], dtype=pl.Int64)
    expected = within + current[run_of_row] if current.any() else within
    top = dict(zip(name_list, (current + counts).tolist()))
    if "version" in frame.columns:
        given = frame.get_column("version").to_numpy()
        bad = np.flatnonzero(given != expected)
        if len(bad):
            row = int(bad[0])
            sid, want = frame["stream_id"][row], int(expected[row])
            cur = int(current[run_of_row[row]])
            if want == cur + 1:
                raise ConcurrencyError(sid, int(given[row]) - 1, cur)
            raise EventDataError(
                f"append_frame: row {row}: stream {sid!r} version {int(given[row])} is not contiguous "
                f"(expected {want}: versions of a stream must rise by 1 in frame order)"
            )
        return frame.with_columns(stream_number), top
    return frame.with_columns(pl.Series("version", expected, dtype=pl.Int64), stream_number), top


def _fill_header(frame: pl.DataFrame, head: int, now: datetime) -> pl.DataFrame:
    n = frame.height
    cols: list[pl.Expr | pl.Series] = [
        pl.int_range(head + 1, head + 1 + n, dtype=pl.Int64).alias("position")
    ]
    if "event_id" not in frame.columns:
        cols.append(new_id_series(n))
    if "recorded_at" not in frame.columns:
        cols.append(pl.lit(now, _schema.UTC_DATETIME).alias("recorded_at"))
    for name in ("causation_id", "metadata"):
        if name not in frame.columns:
            cols.append(pl.lit(None, pl.String).alias(name))
    frame = frame.with_columns(cols)
    if "correlation_id" in frame.columns:
        frame = frame.with_columns(pl.coalesce("correlation_id", "event_id").alias("correlation_id"))
    else:
        frame = frame.with_columns(pl.col("event_id").alias("correlation_id"))
    return frame
