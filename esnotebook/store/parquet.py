"""The Parquet event store: a folder of immutable Parquet files that any Arrow tool can read.

Layout (version 3; docs/parquet-layout.md has the details and recipes for DuckDB, polars,
pyarrow)::

    store/
      esnotebook-store.json              marks the folder as a store (format and version)
      LOCK                               held by the one writer process (flock)
      events/
        000000000001-000000000010.parquet  one commit: positions first-last, in position
                                           order, the header (with each event's stream
                                           number) then the union of the payload fields of
                                           its event types
      _tmp/                              commits being written; never read; the next writer
                                         removes what a crashed one left

A commit is written into ``_tmp/``, flushed and fsynced, then renamed into ``events/`` in one
atomic step (and the folder fsynced), so a crash at any instant leaves either the whole
commit or none of it. Files are in position order and each is sorted, so the canonical event
frame is one ``scan_parquet`` over the files: no sort. Each file's key-value metadata
(``esnotebook.fields``) lists, per event type in it, that type's fields, so an event's
``data`` holds exactly its type's fields.

``compact()`` merges runs of files into bigger ones the same way; a file whose range lies
inside another's is superseded and ignored until the writer removes it. Readers never take
the lock; when a compaction in another process removes files under a read, the read lists
the folder again and retries.
"""

from __future__ import annotations

import bisect
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import polars as pl

from .. import _schema
from .._atomic import fsync_path
from .._schema import Schema
from ..errors import EventStoreError, StoreCorruptedError, StoreLockedError
from ..events import RecordedEvent
from ._cache import StreamCache
from ._files import FIELDS_KEY, file_name_match, resolve, validate_file, widest
from ._files import File as _File
from ._frames import HEADER_SCHEMA, events_from_frame, frame_from_events
from ._lock import WriterLock
from .base import Clock, StoreBase, _check_int, _check_stream_id, _field_union

__all__ = ["ParquetEventStore"]

MARKER = "esnotebook-store.json"
FORMAT = "esnotebook-parquet"
FORMAT_VERSION = 3
#: Layout 2 lacked the ``stream_number`` column; its stores open, and their numbers are
#: filled in on read (and written into any file that compaction rewrites).
READABLE_VERSIONS = (2, 3)
_CAST = pl.ScanCastOptions(integer_cast=["upcast", "allow-float"], missing_struct_fields="insert")

#: How long a read disturbed by a concurrent compaction (files replaced under it) retries.
_RETRY_SECONDS = 30.0
#: Well above the coarse clock tick (1-10 ms) that stamps directory modification times.
_MTIME_TICK_NS = 50_000_000
#: Events this process wrote or read, kept by stream so that loading an aggregate right
#: after saving it costs no file I/O (least recently used streams go first).
_CACHE_EVENTS = 100_000

T = TypeVar("T")

Compression = Literal["lz4", "zstd", "snappy", "uncompressed"]


class ParquetEventStore(StoreBase):
    """An event store in a folder of Parquet files, one writer process at a time.

    Opens the store at ``path``, or creates it when ``path`` does not exist or is an empty
    folder. Reading never blocks and sees only committed appends, in this process or any
    other. The first write takes the store's lock and keeps it until :meth:`close` (or
    the end of a ``with`` block); another process that tries to write meanwhile gets
    :class:`StoreLockedError`, after waiting up to ``lock_timeout`` seconds.

    Parameters
    ----------
    path
        The store's folder.
    lock_timeout
        Seconds a write waits for another writer to let go of the lock (default 0: fail
        at once).
    compression
        Parquet compression of new files (default ``"lz4"``: fast to write and to read).
    durable
        fsync every commit before acknowledging it (default). ``False`` is faster and
        still atomic, but an acknowledged append may be lost if the machine (not just the
        process) crashes; fine for scratch stores and simulations.
    clock
        Returns the ``recorded_at`` of new events (default: now, UTC).

    Examples
    --------
    >>> import esnotebook as es, tempfile
    >>> with es.ParquetEventStore(tempfile.mkdtemp() + "/shop") as store:
    ...     _ = store.append("order-1", [es.NewEvent("OrderPlaced", {"customer": "c-1"})])
    ...     len(store)
    1
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lock_timeout: float = 0.0,
        compression: Compression = "lz4",
        durable: bool = True,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(clock=clock)
        self.path = Path(path)
        self.lock_timeout = float(lock_timeout)
        self.compression = compression
        self.durable = durable
        self._events_dir = self.path / "events"
        self._tmp_dir = self.path / "_tmp"
        self._lock = WriterLock(self.path)
        self._files: list[_File] = []
        self._firsts: list[int] = []  # first position of each live file, for bisect
        self._known: dict[str, _File] = {}  # validated files, by name
        # stream -> one position per commit holding its events (an int when just one);
        # a position finds its file by bisect, whatever compaction did since.
        self._anchors: dict[str, int | list[int]] | None = None
        self._cache = StreamCache(limit=_CACHE_EVENTS)
        self._listing_stamp: int | None = None
        self._open_folder()
        # Leftovers of crashed writers are removed by the next writer when it takes the
        # lock, not here: a reader taking the lock, even briefly, could make a real writer
        # fail with StoreLockedError. Readers ignore leftovers anyway.
        self._refresh()

    # ------------------------------------------------------------------ opening
    def _open_folder(self) -> None:
        p = self.path
        if p.exists() and not p.is_dir():
            raise EventStoreError(
                f"{p} is a file; a ParquetEventStore needs a folder (an existing store, an "
                "empty folder, or a path that does not exist yet)"
            )
        marker = p / MARKER
        if p.is_dir() and marker.exists():
            try:
                info = json.loads(marker.read_text())
                fmt, version = info["format"], info["version"]
            except (ValueError, KeyError, TypeError) as exc:
                raise StoreCorruptedError(f"{marker}: unreadable store marker ({exc})") from None
            if fmt != FORMAT or version not in READABLE_VERSIONS:
                raise EventStoreError(
                    f"{p}: store format {fmt!r} version {version!r} is not supported "
                    f"(expected {FORMAT!r} version {' or '.join(map(str, READABLE_VERSIONS))})"
                )
            if not self._events_dir.is_dir():
                raise StoreCorruptedError(f"{self._events_dir}: the events folder is missing")
            return
        if p.is_dir():
            foreign = sorted(e.name for e in os.scandir(p))
            if foreign:
                shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                raise EventStoreError(
                    f"{p} is not an esnotebook store: it has no {MARKER} but holds {len(foreign)} "
                    f"entries ({shown}); expected an existing store, an empty folder or a new path"
                )
        p.mkdir(parents=True, exist_ok=True)
        self._events_dir.mkdir(exist_ok=True)
        self._tmp_dir.mkdir(exist_ok=True)
        tmp = p / f".{MARKER}.{uuid.uuid4().hex}"
        tmp.write_text(json.dumps({"format": FORMAT, "version": FORMAT_VERSION}) + "\n")
        os.replace(tmp, marker)
        self._sync_dir(p)

    # ------------------------------------------------------------------ the writer's lock
    @property
    def is_writer(self) -> bool:
        """Whether this object holds the store's write lock."""
        return self._lock.held

    def _acquire(self) -> None:
        if self._lock.held:
            return
        if not self._lock.take(self.lock_timeout):
            raise StoreLockedError(
                f"{self.path} is locked by another writer (pid {self._lock.holder()}); only one "
                f"process may write at a time. Close the store there, or pass lock_timeout=... "
                f"to wait (waited {self.lock_timeout:g} s)"
            )
        self._tidy()
        self._listing_stamp = None  # another writer may have committed before we got the lock

    def close(self) -> None:
        """Let go of the write lock (if held). Reading still works afterwards."""
        self._listing_stamp = None  # from now on other writers may change the folder
        self._lock.release()

    def __enter__(self) -> ParquetEventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    @contextmanager
    def _writing(self) -> Iterator[None]:
        with self._mutex:
            self._acquire()
            self._refresh()
            yield

    def _tidy(self) -> None:
        """With the lock held: delete unfinished commits and superseded files."""
        self._tmp_dir.mkdir(exist_ok=True)
        for entry in os.scandir(self._tmp_dir):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)
        names = self._file_names()
        live = {name for name, _, _ in resolve(names, self._events_dir)}
        for name, _, _ in names:
            if name not in live:
                (self._events_dir / name).unlink(missing_ok=True)
                self._known.pop(name, None)

    # ------------------------------------------------------------------ the listing
    def _file_names(self) -> list[tuple[str, int, int]]:
        found = []
        for entry in os.scandir(self._events_dir):
            m = file_name_match(entry.name)
            if m is None or not entry.is_file():
                raise StoreCorruptedError(
                    f"{entry.path}: unexpected entry in the events folder (expected files "
                    "named <first position>-<last position>.parquet, 12 digits each)"
                )
            found.append((entry.name, int(m.group(1)), int(m.group(2))))
        return found

    def _refresh(self) -> None:
        """Bring the view of committed files up to date (cheap when nothing changed)."""
        with self._mutex:
            stamp = os.stat(self._events_dir).st_mtime_ns
            if stamp == self._listing_stamp:
                return
            listed_at = time.time_ns()
            deadline = time.monotonic() + _RETRY_SECONDS
            listing = resolve(self._file_names(), self._events_dir)
            known = dict(self._known)  # a file's name fixes its content: validate once
            pause = 0.001
            while True:
                try:
                    files = []
                    for name, first, last in listing:
                        f = known.get(name)
                        if f is None:
                            f = known[name] = self._validate(name, first, last)
                        files.append(f)
                    break
                except (FileNotFoundError, StoreCorruptedError):
                    # A compaction in another process may have replaced files while we
                    # looked: what vanished or looked half-written was superseded. Damage
                    # is reported only when a fresh listing shows the same files.
                    time.sleep(pause)
                    pause = min(pause * 2, 0.05)
                    fresh = resolve(self._file_names(), self._events_dir)
                    if fresh == listing or time.monotonic() > deadline:
                        raise
                    listing = fresh
            old_head = self._head
            self._install(files)
            # Directory mtimes come from the kernel's coarse clock: a change within the same
            # tick as our listing keeps the mtime. Trust the stamp only when it is older
            # than any tick; otherwise list again next time.
            self._listing_stamp = stamp if listed_at - stamp > _MTIME_TICK_NS else None
            if self._versions is not None and self._head > old_head:
                try:
                    self._update_index(old_head)
                except FileNotFoundError:
                    self._versions = self._anchors = None  # compacted under us; rebuilt on use

    def _install(self, files: list[_File]) -> None:
        self._files = files
        self._firsts = [f.first for f in files]
        self._known = {f.name: f for f in files}
        self._head = files[-1].last if files else 0
        schemas: dict[str, Schema] = {}
        owner: dict[str, tuple[str, pl.DataType]] = {}  # field -> (a type, its column type)
        for f in files:
            for event_type, fields in f.fields.items():
                stored = schemas.setdefault(event_type, {})
                for name, dtype in fields.items():
                    where = f"{f.path}: field {name!r} of {event_type}"
                    try:
                        stored[name] = _schema.extend(stored[name], dtype, where) if name in stored else dtype
                    except EventStoreError as exc:
                        raise StoreCorruptedError(str(exc)) from None
                    if isinstance(dtype, pl.Null):
                        continue
                    seen = owner.setdefault(name, (event_type, dtype))
                    if seen[1] != dtype and widest(seen[1], dtype) is None:
                        raise StoreCorruptedError(
                            f"{f.path}: field {name!r} is {dtype} for {event_type} but {seen[1]} "
                            f"for {seen[0]}; a field keeps one column type across event types"
                        )
        self._schemas = {}
        self._exact = {}
        self._fields = None
        self._accept_schemas(schemas)

    def _validate(self, name: str, first: int, last: int) -> _File:
        return validate_file(self._events_dir / name, first, last)

    # ------------------------------------------------------------------ the stream index
    def _load_versions(self) -> dict[str, int]:
        """Stream -> version (in order of creation), and the stream -> files index with it."""
        versions, anchors = self._index_of(self._files, 0)
        self._anchors = anchors
        return versions

    def _index_of(
        self, files: list[_File], after: int
    ) -> tuple[dict[str, int], dict[str, int | list[int]]]:
        """Versions and commit anchors of the streams with events at positions > ``after``."""
        if not files:
            return {}, {}
        firsts = pl.Series([f.first for f in files], dtype=pl.Int64)
        per_file = (
            pl.scan_parquet(
                [str(f.path) for f in files],
                schema={"position": pl.Int64(), "stream_id": pl.String(), "version": pl.Int64()},
                missing_columns="raise", extra_columns="ignore",
            )  # fmt: skip
            .filter(pl.col("position") > after)
            .with_columns(file=pl.lit(firsts).search_sorted(pl.col("position"), side="right"))
            .group_by("stream_id", "file")
            .agg(pl.col("version").max(), pl.col("position").min())
        )
        frame = (
            per_file.group_by("stream_id")
            .agg(pl.col("version").max(), pl.col("position").sort(), first=pl.col("position").min())
            .sort("first")
            .collect()
        )
        names = frame["stream_id"].to_list()
        anchors = [a[0] if len(a) == 1 else a for a in frame["position"].to_list()]
        return dict(zip(names, frame["version"].to_list())), dict(zip(names, anchors))

    def _update_index(self, old_head: int) -> None:
        assert self._versions is not None
        new = [f for f in self._files if f.last > old_head]
        versions, anchors = self._index_of(new, old_head)
        self._versions.update(versions)
        self._note_anchors(anchors)

    def _note_anchors(self, anchors: dict[str, int | list[int]]) -> None:
        index = self._anchors
        if index is None:
            return
        known = {s: index[s] for s in anchors if s in index}
        index.update(anchors)  # mostly new streams (bulk imports): one C-level update
        for stream, before in known.items():
            index[stream] = [*_as_list(before), *_as_list(anchors[stream])]

    def _stream_files(self, stream_id: str) -> list[str]:
        """The live files that hold events of ``stream_id``, in position order."""
        self._version_index()
        assert self._anchors is not None
        at = self._anchors.get(stream_id)
        if at is None:
            return []
        picked = dict.fromkeys(bisect.bisect_right(self._firsts, p) - 1 for p in _as_list(at))
        return [str(self._files[i].path) for i in picked]

    # ------------------------------------------------------------------ commits
    def _commit_events(
        self, events: list[RecordedEvent], schemas: dict[str, Schema], stream_number: int
    ) -> None:
        all_schemas = {**self._schemas, **schemas}
        types = dict.fromkeys(e.event_type for e in events)
        union = _field_union(all_schemas)
        names = dict.fromkeys(f for t in types for f in all_schemas[t])
        frame = frame_from_events(events, {f: union[f] for f in names}, [stream_number] * len(events))
        self._write_file(frame, events[0].position, events[-1].position, {t: list(all_schemas[t]) for t in types})
        first = events[0]
        self._note_anchors({first.stream_id: first.position})
        with self._mutex:
            self._cache.extend(first.stream_id, events)

    def _commit_frame(
        self, frame: pl.DataFrame, first: int, last: int, schemas: dict[str, Schema]
    ) -> None:
        all_schemas = {**self._schemas, **schemas}
        types = frame.get_column("event_type").unique(maintain_order=True).to_list()
        self._write_file(frame, first, last, {t: list(all_schemas[t]) for t in types})
        if self._anchors is not None or self._cache:
            # Any position inside the new file finds it: its first one serves every stream.
            names = frame.get_column("stream_id").unique().to_list()
            self._note_anchors(dict.fromkeys(names, first))
            with self._mutex:
                for stream in names:
                    self._cache.drop(stream)

    def _write_file(self, frame: pl.DataFrame, first: int, last: int, fields: dict[str, list[str]]) -> _File:
        name = f"{first:012d}-{last:012d}.parquet"
        tmp = self._tmp_dir / f"{name}.{uuid.uuid4().hex}"
        final = self._events_dir / name
        try:
            frame.write_parquet(
                tmp, compression=self.compression, statistics=True,
                metadata={FIELDS_KEY: json.dumps(fields, separators=(",", ":"))},
            )  # fmt: skip
            if self.durable:
                fsync_path(tmp)
            os.rename(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._sync_dir(self._events_dir)
        schema = frame.schema
        written = _File(first, last, final, {t: {n: schema[n] for n in names} for t, names in fields.items()})
        # Superseded files (compaction) are dropped from the view; new ones are appended.
        keep = [f for f in self._files if not (f.first >= first and f.last <= last)]
        self._files = sorted([*keep, written], key=lambda f: f.first)
        self._firsts = [f.first for f in self._files]
        self._known = {f.name: f for f in self._files}
        self._listing_stamp = os.stat(self._events_dir).st_mtime_ns
        return written

    def _sync_dir(self, path: Path) -> None:
        if self.durable:
            fsync_path(path)

    # ------------------------------------------------------------------ reads
    def _events_frame(self) -> pl.LazyFrame | None:
        if not self._files:
            return None
        return pl.scan_parquet(
            [str(f.path) for f in self._files],
            schema={**HEADER_SCHEMA, **self._field_union()},
            missing_columns="insert",
            cast_options=_CAST,
        )

    def _with_stream_numbers(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        if all(f.numbered for f in self._files):
            return lf
        return self._number_rows(lf)

    def _number_rows(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        """Fill the stream numbers that layout-2 files lack, from the stream index."""
        with self._mutex:
            numbers = dict(self._stream_numbers())
        known = pl.col("stream_id").replace_strict(
            list(numbers), list(numbers.values()), return_dtype=pl.Int64
        )
        return lf.with_columns(pl.coalesce("stream_number", known).alias("stream_number"))

    def read_stream(
        self, stream_id: str, *, from_version: int = 1, to_version: int | None = None
    ) -> list[RecordedEvent]:
        """The events of one stream with ``from_version <= version <= to_version``.

        Opens only the files that hold the stream (an index kept with the stream
        versions); events this process committed or read lately come from memory.
        """
        _check_stream_id(stream_id)
        _check_int("from_version", from_version, 1)
        if to_version is not None:
            _check_int("to_version", to_version, 0)
        self._refresh()
        with self._mutex:
            current = self._version_index().get(stream_id, 0)
            held = self._cache.get(stream_id)
        top = current if to_version is None else min(to_version, current)
        if from_version > top:
            return []
        if held is None or held[-1].version > current:
            events = self._read_stream_files(stream_id, 1 if to_version is None else from_version, top)
            if to_version is None and events and events[0].version == 1:
                with self._mutex:
                    self._cache.put(stream_id, list(events))
                events = events[from_version - 1 :]
        else:
            if held[-1].version < current:
                # Appended by another process since: read just the tail.
                tail = self._read_stream_files(stream_id, held[-1].version + 1, current)
                held = [*held, *tail]
                with self._mutex:
                    self._cache.put(stream_id, held)
            events = held[from_version - 1 : top]
        return [self._complete(e) for e in events]

    def _read_stream_files(self, stream_id: str, lo: int, hi: int) -> list[RecordedEvent]:
        pred = (pl.col("stream_id") == stream_id) & pl.col("version").is_between(lo, hi)

        def read() -> list[RecordedEvent]:
            files = self._stream_files(stream_id)
            if not files:
                return []
            frame = (
                pl.scan_parquet(
                    files, schema={**HEADER_SCHEMA, **self._field_union()},
                    missing_columns="insert", cast_options=_CAST,
                )  # fmt: skip
                .filter(pred)
                .collect()
            )
            return events_from_frame(frame, self._schemas)

        return self._retrying(read)

    def _retrying(self, read: Callable[[], T]) -> T:
        """Run ``read``; if a file vanished under it (a compaction), look again and rerun.

        Each retry means a compaction elsewhere made progress, so reads keep trying for
        ``_RETRY_SECONDS`` rather than a fixed count.
        """
        deadline = time.monotonic() + _RETRY_SECONDS
        pause = 0.001
        while True:
            try:
                return read()
            except FileNotFoundError:
                if time.monotonic() > deadline:
                    raise
                with self._mutex:
                    self._listing_stamp = None
                    # Files that are gone are checked again: superseded ones drop out of
                    # the listing, a missing live one raises StoreCorruptedError.
                    self._known = {name: f for name, f in self._known.items() if f.path.exists()}
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
                self._refresh()

    def files(self) -> list[Path]:
        """Every committed Parquet file, in position order."""
        self._refresh()
        return [f.path for f in self._files]

    def size_on_disk(self) -> int:
        """Bytes used by the committed event files."""
        return sum(f.stat().st_size for f in self.files())

    def compact(self, *, max_events: int = 4_000_000) -> int:
        """Merge runs of small commit files into files of up to ``max_events`` events.

        Positions, versions and every event stay exactly as they were; readers stay
        correct throughout (a merged file supersedes the ones it covers, which are then
        removed), and a crash at any point leaves the store as it was or as compacted.
        Returns the number of files after compaction.
        """
        _check_int("max_events", max_events, 1)
        with self._writing():
            groups: list[list[_File]] = []
            for f in self._files:
                size = f.last - f.first + 1
                if groups and groups[-1][-1].last - groups[-1][0].first + 1 + size <= max_events:
                    groups[-1].append(f)
                else:
                    groups.append([f])
            union = self._field_union()
            for group in groups:
                if len(group) < 2:
                    continue
                fields: dict[str, dict[str, None]] = {}
                for f in group:
                    for t, names in f.fields.items():
                        fields.setdefault(t, {}).update(dict.fromkeys(names))
                columns = dict.fromkeys(n for names in fields.values() for n in names)
                frame = pl.scan_parquet(
                    [str(f.path) for f in group],
                    schema={**HEADER_SCHEMA, **{n: union[n] for n in columns}},
                    missing_columns="insert", cast_options=_CAST,
                )  # fmt: skip
                if not all(f.numbered for f in group):
                    frame = self._number_rows(frame)
                frame = frame.collect()
                self._write_file(frame, group[0].first, group[-1].last, {t: list(n) for t, n in fields.items()})
                for f in group:
                    f.path.unlink(missing_ok=True)
                self._listing_stamp = os.stat(self._events_dir).st_mtime_ns
            return len(self._files)

    def _summary(self) -> dict[str, Any]:
        summary = super()._summary()
        summary["path"] = str(self.path)
        summary["files"] = len(self._files)
        return summary


def _as_list(at: int | list[int]) -> list[int]:
    return at if isinstance(at, list) else [at]
