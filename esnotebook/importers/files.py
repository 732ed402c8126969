"""Events in and out of files: JSON Lines and CSV import, JSON Lines export.

The file format
---------------
One event per JSON line (or CSV record). By default the fields are the canonical event
frame's, so a file written by :func:`export_jsonl` imports as it is:

==================  ========================================================  ==========
field               meaning                                                   required
==================  ========================================================  ==========
``stream_id``       the stream, a non-empty string                            yes
``event_type``      the event type, e.g. ``"OrderPlaced"``                    yes
``version``         the version in its stream; must continue the stream       no [1]_
                    (the store's version + 1, then + 1 per row, in file order)
``recorded_at``     ISO 8601 with a time zone, e.g. ``2024-05-01T12:00:00Z``  no [1]_
``event_id``        a UUID string                                             no [1]_
``correlation_id``  a string                                                  no
``causation_id``    a string                                                  no
``metadata``        a JSON object (or its JSON text)                          no
``position``        ignored: the store assigns positions in file order        no
anything else       a payload field of the event                              --
==================  ========================================================  ==========

.. [1] Either every row has it or none does; when none does, the store assigns it (versions
   continue each stream, ``recorded_at`` is the import time, event ids are new).

``columns={"stream_id": "aggregate_id", "event_type": "type", "payload": "data"}`` maps
other names onto these: each key names a canonical field and each value the file's field
(``None``: the file has no such field). ``"payload"`` names one field holding the payload
as an object (JSON Lines) or as JSON text (CSV); by default the payload is every field that
is not mapped.

Payload types
-------------
A JSON value keeps its JSON type; an event type's field takes the type the store already
has for it, else the one given in ``dtypes``, else the type of its first value in the file
(an int field may receive floats: it becomes a float field). A value of another type is a
*wrong type*. A top-level string field whose every value is an ISO 8601 datetime with a
time zone becomes a datetime field (``parse_dates=False`` keeps it a string). In CSV every
cell is text: the first non-empty value of a field decides whether it is an int, float,
bool (``true``/``false``), datetime or string field, unless ``dtypes`` says; empty cells are
nulls (the event does not carry the field).

Bad rows
--------
A row is bad when it is not a JSON object, lacks a required field, has a value of the
wrong type, or its version does not continue its stream (including every later row of a
stream once one of its rows is bad). ``on_error="refuse"`` (default) imports nothing and
raises :class:`ImportRefusedError` listing each bad line and why; ``on_error="reject"``
imports the good rows in one atomic commit and writes each bad row, with its line and
reason, to a rejects file. Nothing is ever half-imported: every row is checked before the
single commit, and a commit that fails writes nothing.
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from ..events import RESERVED_FIELDS
from ._report import ImportRefusedError, ImportReport, problems_frame
from ._rows import DEFAULT_COLUMNS, Bad, Reader, Rejected, mapping_of

if TYPE_CHECKING:
    from ..store.base import EventStore

__all__ = ["DEFAULT_COLUMNS", "export_jsonl", "import_csv", "import_jsonl"]

OnError = Literal["refuse", "reject"]

_EXPORT_CHUNK = 200_000


# ---------------------------------------------------------------------- public
def import_jsonl(
    path: str | os.PathLike[str],
    *,
    into: EventStore | None = None,
    columns: Mapping[str, str | None] | None = None,
    on_error: OnError = "refuse",
    rejects: str | os.PathLike[str] | None = None,
    dtypes: Mapping[str, type | pl.DataType] | None = None,
    parse_dates: bool = True,
) -> ImportReport:
    """Import events from a JSON Lines file (one JSON object per line).

    See the module documentation for the format, the column mapping and what makes a row
    bad.

    Parameters
    ----------
    path
        The file.
    into
        The store to import into (default: a new in-memory store, ``report.store``).
    columns
        Overrides of :data:`DEFAULT_COLUMNS`: canonical name -> the file's field name.
    on_error
        ``"refuse"``: any bad row and nothing is imported (:class:`ImportRefusedError`);
        ``"reject"``: the good rows are imported and the bad ones written to ``rejects``.
    rejects
        Where ``"reject"`` writes bad rows (default ``<path>.rejects.jsonl``): one JSON
        object per bad row, ``{"rejected_line": n, "rejected_reason": "...", "record": ...}``
        with the original object (or the original text when it was not JSON).
    dtypes
        Payload field types that override inference: ``{"sku": str, "placed": datetime}``
        (Python types or polars dtypes).
    parse_dates
        Turn string fields whose every value is an aware ISO 8601 datetime into datetimes.

    Returns
    -------
    ImportReport
        What was imported and what was rejected (``.problems``).

    Examples
    --------
    >>> import esnotebook as es, pathlib, tempfile
    >>> old_store = es.InMemoryEventStore()
    >>> _ = old_store.append("order-1", [es.NewEvent("OrderPlaced", {"customer": "ada"})])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "events.jsonl"
    >>> _ = es.export_jsonl(old_store, to=path)
    >>> report = es.import_jsonl(path, on_error="reject")
    >>> report.imported, report.rejected, report.store.to_polars()["customer"].to_list()
    (1, 0, ['ada'])
    """
    source = Path(path)
    mapping = mapping_of(columns)
    reader = Reader(mapping, dtypes, into, parse_dates=parse_dates, text_cells=False)
    return _run(reader, _jsonl_records(source), source, on_error, rejects, ".jsonl")


def import_csv(
    path: str | os.PathLike[str],
    *,
    into: EventStore | None = None,
    columns: Mapping[str, str | None] | None = None,
    on_error: OnError = "refuse",
    rejects: str | os.PathLike[str] | None = None,
    dtypes: Mapping[str, type | pl.DataType] | None = None,
    delimiter: str = ",",
) -> ImportReport:
    """Import events from a CSV file with a header row.

    As :func:`import_jsonl`, with text cells: an empty cell is a null, and each payload
    field's type comes from the store, ``dtypes``, or its first non-empty value (see the
    module documentation). ``"reject"`` writes a CSV (default ``<path>.rejects.csv``) of the
    bad records with two leading columns, ``rejected_line`` and ``rejected_reason``.

    Examples
    --------
    >>> import esnotebook as es, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "orders.csv"
    >>> _ = path.write_text("order,event_type,sku,quantity\\norder-1,ItemAdded,042,2\\n")
    >>> report = es.import_csv(path, columns={"stream_id": "order"}, dtypes={"sku": str})
    >>> report.imported, report.store.to_polars().select("sku", "quantity").row(0)
    (1, ('042', 2))
    """
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"'delimiter' must be one character (got {delimiter!r})")
    source = Path(path)
    mapping = mapping_of(columns)
    reader = Reader(mapping, dtypes, into, parse_dates=False, text_cells=True)
    return _run(
        reader, _CsvRecords(source, delimiter), source, on_error, rejects, ".csv", delimiter
    )


def export_jsonl(
    store: EventStore,
    *,
    to: str | os.PathLike[str],
    event_types: Sequence[str] | None = None,
) -> int:
    """Write a store's events to a JSON Lines file, in position order; return how many.

    Each line holds the canonical columns (``recorded_at`` as ISO 8601 in UTC), the
    event's payload fields, and ``metadata`` as an object when the event has any. The file
    is written beside its target and renamed into place, so it is never seen half-written.
    :func:`import_jsonl` reads it back as it is.

    Examples
    --------
    >>> import esnotebook as es
    >>> store = es.InMemoryEventStore()
    >>> _ = store.append("order-1", [es.NewEvent("OrderPlaced", {"customer": "c-1"})])
    >>> import tempfile, pathlib; path = pathlib.Path(tempfile.mkdtemp()) / "e.jsonl"
    >>> es.export_jsonl(store, to=path)
    1
    """
    from .._progress import progress_bar

    target = Path(to)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    head = store.head_position
    count = 0
    try:
        with (
            open(tmp, "w", encoding="utf-8") as out,
            progress_bar(total=head, desc="exporting", unit="event") as bar,
        ):
            for lo in range(0, head, _EXPORT_CHUNK):
                hi = min(lo + _EXPORT_CHUNK, head)
                lines = _export_lines(store, event_types, lo, hi)
                if lines.len():
                    out.write("\n".join(lines.to_list()))
                    out.write("\n")
                count += lines.len()
                bar.update(hi - lo)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def _export_lines(
    store: EventStore, event_types: Sequence[str] | None, lo: int, hi: int
) -> pl.Series:
    """One chunk's JSON lines, each event with only its own type's payload fields."""
    frame = store.scan(
        event_types=event_types, from_position=lo, to_position=hi, with_metadata=True
    ).collect()
    header = [c for c in frame.columns if c in RESERVED_FIELDS and c != "metadata"]
    parts = []
    for (event_type,), part in frame.partition_by(
        "event_type", as_dict=True, maintain_order=True
    ).items():
        fields = list(store.schema(event_type))  # type: ignore[attr-defined]
        encoded = pl.struct([*header, *fields]).struct.json_encode()
        # metadata is already JSON text: splice it in as an object, not a quoted string.
        with_meta = pl.concat_str(
            [encoded.str.head(-1), pl.lit(',"metadata":'), pl.col("metadata"), pl.lit("}")]
        )
        parts.append(
            part.select(
                "position",
                pl.when(pl.col("metadata").is_null())
                .then(encoded)
                .otherwise(with_meta)
                .alias("line"),
            )
        )
    if not parts:
        return pl.Series("line", [], dtype=pl.String)
    return pl.concat(parts).sort("position")["line"]


# ---------------------------------------------------------------------- records
def _jsonl_records(source: Path) -> Iterator[tuple[int, Any, str]]:
    """``(line number, parsed value or Bad, original text)`` for each non-blank line."""
    with open(source, encoding="utf-8") as f:
        for n, text in enumerate(f, start=1):
            text = text.rstrip("\r\n")
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except ValueError as exc:
                yield n, Bad(f"not valid JSON ({exc})"), text
                continue
            if not isinstance(value, dict):
                yield n, Bad(f"not a JSON object (got {type(value).__name__})"), text
            else:
                yield n, value, text


class _CsvRecords:
    """``(line number, record or Bad, original cells)`` per CSV record; ``header`` after."""

    def __init__(self, source: Path, delimiter: str) -> None:
        self.source = source
        self.delimiter = delimiter
        self.header: list[str] = []

    def __iter__(self) -> Iterator[tuple[int, Any, Any]]:
        with open(self.source, encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter=self.delimiter)
            self.header = next(reader, None) or []
            header = self.header
            start = reader.line_num + 1
            for cells in reader:
                # A quoted cell may span lines: a record starts where the previous one ended.
                line, start = start, reader.line_num + 1
                if not any(cells):
                    continue
                if len(cells) != len(header):
                    yield line, Bad(f"has {len(cells)} cells, the header has {len(header)}"), cells
                    continue
                yield line, {k: (v if v != "" else None) for k, v in zip(header, cells)}, cells


# ---------------------------------------------------------------------- one run
def _run(
    reader: Reader,
    records: Iterable[tuple[int, Any, Any]],
    source: Path,
    on_error: OnError,
    rejects: str | os.PathLike[str] | None,
    suffix: str,
    delimiter: str = ",",
) -> ImportReport:
    if on_error not in ("refuse", "reject"):
        raise ValueError(f"'on_error' must be 'refuse' or 'reject' (got {on_error!r})")
    if not source.is_file():
        raise FileNotFoundError(f"no file at {str(source)!r}")
    from .._progress import progress_bar

    good: list[tuple[int, dict[str, Any], Any]] = []
    bad: list[Rejected] = []
    with progress_bar(desc=f"checking {source.name}", unit="row") as bar:
        for line, value, original in records:
            bar.update()
            try:
                if isinstance(value, Bad):
                    raise value
                good.append((line, reader._row(line, value), original))
            except Bad as exc:
                bad.append((line, exc.stream_id, str(exc), original))
    good = reader._complete_header(good, bad)
    good = reader._check_versions(good, bad)
    problems = problems_frame([(line, sid, reason) for line, sid, reason, _ in bad])
    if bad and on_error == "refuse":
        raise ImportRefusedError(str(source), problems)
    frame = reader._frame([row for _, row, _ in good])
    rejects_path = None
    tmp = None
    if bad:
        rejects_path = (
            Path(rejects)
            if rejects is not None
            else source.with_name(source.name + ".rejects" + suffix)
        )
        tmp = rejects_path.with_name(f".{rejects_path.name}.{uuid.uuid4().hex}.tmp")
        header = getattr(records, "header", None)
        _write_rejects(tmp, sorted(bad, key=lambda b: b[0]), suffix, header, delimiter)
    try:
        positions = (
            reader.store.append_frame(frame)
            if frame.height
            else range(reader.store.head_position + 1, reader.store.head_position + 1)
        )
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    if tmp is not None and rejects_path is not None:
        os.replace(tmp, rejects_path)
    return ImportReport(
        str(source),
        reader.store,
        positions,
        problems,
        None if rejects_path is None else str(rejects_path),
    )


def _write_rejects(
    tmp: Path, bad: list[Rejected], suffix: str,
    header: list[str] | None, delimiter: str,
) -> None:  # fmt: skip
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        if suffix == ".csv":
            writer = csv.writer(f, delimiter=delimiter)
            writer.writerow(["rejected_line", "rejected_reason", *(header or [])])
            for line, _, reason, original in bad:
                writer.writerow([line, reason, *(original or [])])
        else:
            for line, _, reason, original in bad:
                try:
                    record = json.loads(original) if isinstance(original, str) else original
                except ValueError:
                    record = original
                f.write(
                    json.dumps({"rejected_line": line, "rejected_reason": reason, "record": record})
                )
                f.write("\n")
        f.flush()
        os.fsync(f.fileno())
