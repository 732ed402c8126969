"""The files of a Parquet store (layout version 3): names, footer checks, listing rules.

Each committed file is ``events/<first:012d>-<last:012d>.parquet``: the positions
``first..last`` in position order. Its key-value metadata (:data:`FIELDS_KEY`) lists, per
event type in it, that type's fields. Nothing here writes; :mod:`.parquet` does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from .. import _schema
from .._schema import Schema
from ..errors import EventStoreError, StoreCorruptedError
from ..events import check_event_type
from ._frames import HEADER_SCHEMA

__all__ = ["FIELDS_KEY", "File", "file_name_match", "resolve", "validate_file", "widest"]

#: The key of each file's Parquet key-value metadata: ``{event type: [its fields]}``.
FIELDS_KEY = "esnotebook.fields"
_FILE_NAME = re.compile(r"(\d{12})-(\d{12})\.parquet\Z")


def file_name_match(name: str) -> re.Match[str] | None:
    """``name`` parsed as ``<first>-<last>.parquet`` (groups 1 and 2), or ``None``."""
    return _FILE_NAME.match(name)


@dataclass(frozen=True, slots=True)
class File:
    """One committed file of ``events/``: positions ``first..last``, fields per event type."""

    first: int
    last: int
    path: Path
    fields: dict[str, Schema]
    #: Whether the file holds ``stream_number`` (files written before layout 3 do not).
    numbered: bool = True

    @property
    def name(self) -> str:
        return self.path.name


def validate_file(path: Path, first: int, last: int) -> File:
    """Check a committed file's footer before trusting it; :class:`StoreCorruptedError` if bad.

    The footer must hold the header columns, the fields metadata (each listed field a
    column), ``last - first + 1`` rows, and ``position`` statistics spanning ``first..last``.
    """
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
        schema = pl.read_parquet_schema(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read means damage
        raise StoreCorruptedError(f"{path}: damaged or foreign file ({exc})") from None
    missing = [c for c in HEADER_SCHEMA if c not in schema and c != "stream_number"]
    if missing:
        raise StoreCorruptedError(f"{path}: not an event file (missing columns {missing})")
    raw = (meta.metadata or {}).get(FIELDS_KEY.encode())
    try:
        listed = json.loads(raw)
        if not isinstance(listed, dict):
            raise ValueError("not a JSON object")
        fields: dict[str, Schema] = {}
        for event_type, names in listed.items():
            check_event_type(event_type)
            absent = [n for n in names if n not in schema or n in HEADER_SCHEMA]
            if absent:
                raise ValueError(f"{event_type} fields {absent} have no column")
            fields[event_type] = {n: schema[n] for n in names}
    except Exception as exc:  # noqa: BLE001 - missing or unreadable: not ours
        raise StoreCorruptedError(
            f"{path}: not an event file (its {FIELDS_KEY!r} metadata is missing or bad: {exc})"
        ) from None
    if meta.num_rows != last - first + 1:
        raise StoreCorruptedError(
            f"{path}: holds {meta.num_rows} events, but its name promises {last - first + 1} "
            f"(positions {first}..{last})"
        )
    lo, hi = _column_range(meta, "position")
    if lo is None or lo != first or hi != last:
        raise StoreCorruptedError(
            f"{path}: positions {lo}..{hi} do not match its name's range {first}..{last}"
        )
    return File(first, last, path, fields, numbered="stream_number" in schema)


def widest(a: pl.DataType, b: pl.DataType) -> pl.DataType | None:
    """The one column type that holds ``a`` and ``b`` as the store allows, or ``None``."""
    for stored, incoming in ((a, b), (b, a)):
        try:
            return _schema.extend(stored, incoming, "")
        except EventStoreError:
            continue
    return None


def resolve(names: list[tuple[str, int, int]], where: Path) -> list[tuple[str, int, int]]:
    """The live files: drop those inside a wider one; refuse gaps and partial overlaps."""
    live: list[tuple[str, int, int]] = []
    covered = 0
    for name, first, last in sorted(names, key=lambda x: (x[1], -x[2])):
        if last <= covered:
            continue  # superseded by a compacted file
        if first != covered + 1:
            if first > covered + 1:
                raise StoreCorruptedError(
                    f"{where}: positions {covered + 1}..{first - 1} are missing (next file is {name})"
                )
            raise StoreCorruptedError(f"{where / name}: overlaps positions already held by another file")
        if last < first:
            raise StoreCorruptedError(f"{where / name}: last position is before the first")
        live.append((name, first, last))
        covered = last
    return live


def _column_range(meta: Any, column: str) -> tuple[Any, Any]:
    idx = meta.schema.names.index(column)
    lo = hi = None
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(idx).statistics
        if stats is None or not stats.has_min_max:
            return None, None
        lo = stats.min if lo is None else min(lo, stats.min)
        hi = stats.max if hi is None else max(hi, stats.max)
    return lo, hi
