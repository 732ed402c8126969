"""The files of a Parquet store (layout version 4): names, checks, listing rules.

Each committed file is ``events/<first:012d>-<last:012d>.<crc:08x>.parquet``: the positions
``first..last`` in position order, and the CRC32C of the whole file's bytes. Files of layouts
2 and 3 are named without the CRC; they still open, unchecked. Each file's key-value metadata
lists, per event type in it, that type's fields (:data:`FIELDS_KEY`) and, since layout 4,
the id of the store that wrote it (:data:`STORE_ID_KEY`). Nothing here writes;
:mod:`.parquet` does.

Why a CRC of the whole file, in its name: the commit point is the rename of a file into
``events/``, so a checksum in the name is committed by that same rename, with nothing to
keep in step. It covers every byte: data pages, and the footer with the statistics that
reads push filters down to. A hash in the key-value metadata would have to leave out the
footer that holds it, and Parquet's page checksums cover only data pages (not the footer)
and polars' writer has no option for them. CRC32C (the Castagnoli polynomial, computed by the
processor's own instruction through the ``crc32c`` package) runs at several GB/s and without
the GIL, where zlib's CRC32 manages about 1-2 GB/s, so checking a file costs a small fraction
of decoding it (``benchmarks/bench_store.py`` prints the ratio).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crc32c
import polars as pl

from .. import _schema
from .._schema import Schema
from ..errors import EventStoreError, StoreCorruptedError
from ..events import check_event_type
from ._frames import HEADER_SCHEMA

__all__ = [
    "FIELDS_KEY", "STORE_ID_KEY", "File", "file_checksum", "file_name", "file_name_match",
    "resolve", "validate_file", "widest",
]  # fmt: skip

#: The key of each file's Parquet key-value metadata: ``{event type: [its fields]}``.
FIELDS_KEY = "esnotebook.fields"
#: The key-value metadata holding the id of the store that wrote the file (layout 4).
STORE_ID_KEY = "esnotebook.store_id"
_FILE_NAME = re.compile(r"(\d{12})-(\d{12})(?:\.([0-9a-f]{8}))?\.parquet\Z")
_CHUNK = 1 << 16  # stays in the CPU cache between the read and the CRC


def file_name(first: int, last: int, checksum: int) -> str:
    """The name of a committed file.

    >>> file_name(1, 10, 0xBEEF)
    '000000000001-000000000010.0000beef.parquet'
    """
    return f"{first:012d}-{last:012d}.{checksum:08x}.parquet"


def file_name_match(name: str) -> re.Match[str] | None:
    """``name`` parsed as ``<first>-<last>[.<crc>].parquet`` (groups 1, 2, 3), or ``None``."""
    return _FILE_NAME.match(name)


def file_checksum(path: Path) -> int:
    """The CRC32C of the file's bytes."""

    crc = 0
    buffer = bytearray(_CHUNK)  # one buffer, read into: no allocation per chunk
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            crc = crc32c.crc32c(view[:n], crc)
    return crc


@dataclass(frozen=True, slots=True)
class File:
    """One committed file of ``events/``: positions ``first..last``, fields per event type."""

    first: int
    last: int
    path: Path
    fields: dict[str, Schema]
    #: Whether the file holds ``stream_number`` (files written before layout 3 do not).
    numbered: bool = True
    #: The CRC32C its name records (``None``: a file of layout 2 or 3, unchecked).
    checksum: int | None = None
    #: The id of the store that wrote it (``None``: written before layout 4).
    store_id: str | None = None

    @property
    def name(self) -> str:
        return self.path.name


def validate_file(path: Path, first: int, last: int, checksum: int | None) -> File:
    """Check a committed file before trusting it; :class:`StoreCorruptedError` if bad.

    Its bytes must have the CRC32C ``checksum`` (checked first, so that no reader ever parses
    damaged bytes; ``None`` skips this for older files). The footer must hold the header
    columns, the fields metadata (each listed field a column), ``last - first + 1`` rows,
    and ``position`` statistics spanning ``first..last``. A file that vanished raises
    :class:`FileNotFoundError` (a concurrent compaction may have removed it).
    """
    import pyarrow.parquet as pq

    if checksum is not None and (found := file_checksum(path)) != checksum:
        raise StoreCorruptedError(
            f"{path}: damaged file (positions {first}..{last}): its bytes have CRC32C "
            f"{found:08x}, but {checksum:08x} was recorded when it was committed"
        )
    try:
        meta = pq.read_metadata(path)
        schema = pl.read_parquet_schema(path)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to read means damage
        raise StoreCorruptedError(f"{path}: damaged or foreign file ({exc})") from None
    missing = [c for c in HEADER_SCHEMA if c not in schema and c != "stream_number"]
    if missing:
        raise StoreCorruptedError(f"{path}: not an event file (missing columns {missing})")
    kv = meta.metadata or {}
    raw = kv.get(FIELDS_KEY.encode())
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
    store_id = kv.get(STORE_ID_KEY.encode())
    return File(
        first, last, path, fields, numbered="stream_number" in schema, checksum=checksum,
        store_id=None if store_id is None else store_id.decode(errors="replace"),
    )  # fmt: skip


def widest(a: pl.DataType, b: pl.DataType) -> pl.DataType | None:
    """The one column type that holds ``a`` and ``b`` as the store allows, or ``None``."""
    for stored, incoming in ((a, b), (b, a)):
        try:
            return _schema.extend(stored, incoming, "")
        except EventStoreError:
            continue
    return None


def resolve(names: list[tuple[str, int, int]], where: Path) -> list[tuple[str, int, int]]:
    """The live files: drop those inside a wider one; refuse gaps and partial overlaps.

    Two files with the same range are refused too: compaction always writes a range wider
    than each file it merges, so only two writers (a deleted ``LOCK``) make such a pair, and
    neither may be taken as superseded.
    """
    live: list[tuple[str, int, int]] = []
    covered = 0
    for name, first, last in sorted(names, key=lambda x: (x[1], -x[2])):
        if live and (first, last) == live[-1][1:]:
            raise StoreCorruptedError(
                f"{where}: {live[-1][0]} and {name} both hold positions {first}..{last}: two "
                "writers committed the same positions (was LOCK deleted?); keep the right one"
            )
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
