"""The Parquet event store: a folder of immutable Parquet files that any Arrow tool can read.

Layout (docs/parquet-layout.md has the details and recipes for DuckDB, polars, pyarrow)::

    store/
      esnotebook-store.json        marks the folder as a store (format and version)
      LOCK                         held by the one writer process (flock)
      events/
        000000000001-000000000010/ one commit: the positions it holds, first-last
          OrderPlaced.parquet      one file per event type, with that type's typed columns
          ItemAdded.parquet
      _tmp/                        commits being written; never read; the next writer
                                   removes what a crashed one left

A commit is written into ``_tmp/``, every file fsynced, then the whole folder is renamed into
``events/`` in one atomic step, so a crash at any instant leaves either the whole commit
or none of it. ``compact()`` merges commit folders into bigger ones the same way; a
folder whose range lies inside another's is superseded and ignored until the writer
removes it. Readers never take the lock; when a compaction in another process removes files
under a read, the read lists the folder again and retries.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import polars as pl

from .. import _schema
from .._schema import Schema
from ..errors import EventStoreError, StoreCorruptedError, StoreLockedError
from ..events import RecordedEvent, check_event_type
from ._frames import HEADER_SCHEMA, frames_by_type, type_frame_schema
from .base import Clock, StoreBase

__all__ = ["ParquetEventStore"]

MARKER = "esnotebook-store.json"
FORMAT = "esnotebook-parquet"
FORMAT_VERSION = 1
_SEGMENT_NAME = re.compile(r"(\d{12})-(\d{12})\Z")
_CAST = pl.ScanCastOptions(integer_cast=["upcast", "allow-float"], missing_struct_fields="insert")

#: How long a read disturbed by a concurrent compaction (files replaced under it) retries.
_RETRY_SECONDS = 30.0
#: Well above the coarse clock tick (1-10 ms) that stamps directory modification times.
_MTIME_TICK_NS = 50_000_000

T = TypeVar("T")

Compression = Literal["lz4", "zstd", "snappy", "uncompressed"]


@dataclass(frozen=True, slots=True)
class _Segment:
    """One committed folder of ``events/``: positions ``first..last``, a file per type."""

    first: int
    last: int
    path: Path
    files: dict[str, Path]
    fields: dict[str, Schema]

    @property
    def name(self) -> str:
        return self.path.name


def _segment_name(first: int, last: int) -> str:
    return f"{first:012d}-{last:012d}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        self._lock_fd: int | None = None
        self._segments: list[_Segment] = []
        self._known: dict[str, _Segment] = {}  # validated segment folders, by name
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
            if fmt != FORMAT or version != FORMAT_VERSION:
                raise EventStoreError(
                    f"{p}: store format {fmt!r} version {version!r} is not supported "
                    f"(expected {FORMAT!r} version {FORMAT_VERSION})"
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
        return self._lock_fd is not None

    def _try_lock(self, timeout: float) -> int | None:
        fd = os.open(self.path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return None
                time.sleep(0.01)

    def _acquire(self) -> None:
        if self._lock_fd is not None:
            return
        fd = self._try_lock(self.lock_timeout)
        if fd is None:
            try:
                holder = (self.path / "LOCK").read_text().strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise StoreLockedError(
                f"{self.path} is locked by another writer (pid {holder}); only one process may "
                f"write at a time. Close the store there, or pass lock_timeout=... to wait "
                f"(waited {self.lock_timeout:g} s)"
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        self._tidy()
        self._listing_stamp = None  # another writer may have committed before we got the lock

    def close(self) -> None:
        """Let go of the write lock (if held). Reading still works afterwards."""
        fd, self._lock_fd = self._lock_fd, None
        self._listing_stamp = None  # from now on other writers may change the folder
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

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
        """With the lock held: delete unfinished commits and superseded folders."""
        self._tmp_dir.mkdir(exist_ok=True)
        for entry in os.scandir(self._tmp_dir):
            shutil.rmtree(entry.path, ignore_errors=True)
        names = self._segment_names()
        live = {name for name, _, _ in _resolve(names, self._events_dir)}
        for name, _, _ in names:
            if name not in live:
                shutil.rmtree(self._events_dir / name, ignore_errors=True)
                self._known.pop(name, None)

    # ------------------------------------------------------------------ the listing
    def _segment_names(self) -> list[tuple[str, int, int]]:
        found = []
        for entry in os.scandir(self._events_dir):
            m = _SEGMENT_NAME.match(entry.name)
            if m is None or not entry.is_dir():
                raise StoreCorruptedError(
                    f"{entry.path}: unexpected entry in the events folder (expected folders "
                    "named <first position>-<last position>, 12 digits each)"
                )
            found.append((entry.name, int(m.group(1)), int(m.group(2))))
        return found

    def _refresh(self) -> None:
        """Bring the view of committed folders up to date (cheap when nothing changed)."""
        with self._mutex:
            stamp = os.stat(self._events_dir).st_mtime_ns
            if stamp == self._listing_stamp:
                return
            listed_at = time.time_ns()
            deadline = time.monotonic() + _RETRY_SECONDS
            listing = _resolve(self._segment_names(), self._events_dir)
            known = dict(self._known)  # a folder's name fixes its content: validate once
            pause = 0.001
            while True:
                try:
                    segments = []
                    for name, first, last in listing:
                        seg = known.get(name)
                        if seg is None:
                            seg = known[name] = self._validate(name, first, last)
                        segments.append(seg)
                    break
                except (FileNotFoundError, StoreCorruptedError):
                    # A compaction in another process may have replaced folders while we
                    # looked: what vanished or looked half-deleted was superseded. Damage
                    # is reported only when a fresh listing shows the same folders.
                    time.sleep(pause)
                    pause = min(pause * 2, 0.05)
                    fresh = _resolve(self._segment_names(), self._events_dir)
                    if fresh == listing or time.monotonic() > deadline:
                        raise
                    listing = fresh
            old_head = self._head
            self._install(segments)
            # Directory mtimes come from the kernel's coarse clock: a change within the same
            # tick as our listing keeps the mtime. Trust the stamp only when it is older
            # than any tick; otherwise list again next time.
            self._listing_stamp = stamp if listed_at - stamp > _MTIME_TICK_NS else None
            if self._versions is not None and self._head > old_head:
                try:
                    self._update_versions(old_head)
                except FileNotFoundError:
                    self._versions = None  # compacted under us; rebuilt on next use

    def _install(self, segments: list[_Segment]) -> None:
        self._segments = segments
        self._known = {s.name: s for s in segments}
        self._head = segments[-1].last if segments else 0
        schemas: dict[str, Schema] = {}
        for seg in segments:
            for event_type, fields in seg.fields.items():
                stored = schemas.setdefault(event_type, {})
                for name, dtype in fields.items():
                    where = f"{seg.files[event_type]}: field {name!r}"
                    try:
                        stored[name] = _schema.extend(stored[name], dtype, where) if name in stored else dtype
                    except EventStoreError as exc:
                        raise StoreCorruptedError(str(exc)) from None
        self._schemas = {}
        self._exact = {}
        self._accept_schemas(schemas)

    def _update_versions(self, old_head: int) -> None:
        assert self._versions is not None
        files = [f for seg in self._segments if seg.last > old_head for f in seg.files.values()]
        new = (
            pl.concat([pl.scan_parquet(f).select("stream_id", "version", "position") for f in files])
            .filter(pl.col("position") > old_head)
            .group_by("stream_id")
            .agg(pl.col("version").max(), pl.col("position").min())
            .sort("position")
            .collect()
        )
        self._versions.update(zip(new["stream_id"].to_list(), new["version"].to_list()))

    def _validate(self, name: str, first: int, last: int) -> _Segment:
        """Check a committed folder before trusting it; :class:`StoreCorruptedError` if bad."""
        import pyarrow.parquet as pq

        path = self._events_dir / name
        files: dict[str, Path] = {}
        fields: dict[str, Schema] = {}
        rows = 0
        per_file: dict[Path, int] = {}
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            file = Path(entry.path)
            event_type = entry.name.removesuffix(".parquet")
            try:
                if not entry.name.endswith(".parquet"):
                    raise ValueError("unexpected file (expected <EventType>.parquet)")
                check_event_type(event_type)
                meta = pq.read_metadata(file)
                schema = pl.read_parquet_schema(file)
            except Exception as exc:  # noqa: BLE001 - any failure to read means damage
                raise StoreCorruptedError(f"{file}: damaged or foreign file ({exc})") from None
            missing = [c for c in HEADER_SCHEMA if c not in schema]
            if missing:
                raise StoreCorruptedError(f"{file}: not an event file (missing columns {missing})")
            lo, hi = _column_range(meta, "position")
            if meta.num_rows and (lo is None or lo < first or hi > last):
                raise StoreCorruptedError(
                    f"{file}: positions {lo}..{hi} lie outside its folder's range {first}..{last}"
                )
            files[event_type] = file
            per_file[file] = meta.num_rows
            fields[event_type] = {n: d for n, d in schema.items() if n not in HEADER_SCHEMA}
            rows += meta.num_rows
        if rows != last - first + 1:
            counts = ", ".join(f"{f.name} {c}" for f, c in per_file.items())
            raise StoreCorruptedError(
                f"{path}: holds {rows} events, but its name promises {last - first + 1} "
                f"(positions {first}..{last}); rows per file: {counts}"
            )
        return _Segment(first, last, path, files, fields)

    # ------------------------------------------------------------------ commits
    def _commit_events(self, events: list[RecordedEvent], schemas: dict[str, Schema]) -> None:
        frames = frames_by_type(events, {**self._schemas, **schemas})
        self._write_segment(frames, events[0].position, events[-1].position)

    def _commit_frames(
        self, frames: dict[str, pl.DataFrame], first: int, last: int, schemas: dict[str, Schema]
    ) -> None:
        self._write_segment(frames, first, last)

    def _write_segment(self, frames: dict[str, pl.DataFrame], first: int, last: int) -> _Segment:
        name = _segment_name(first, last)
        tmp = self._tmp_dir / f"{name}.{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        try:
            for event_type, frame in frames.items():
                file = tmp / f"{event_type}.parquet"
                frame.write_parquet(file, compression=self.compression, statistics=True)
                if self.durable:
                    _fsync(file)
            if self.durable:
                self._sync_dir(tmp)
            final = self._events_dir / name
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if self.durable:
            self._sync_dir(self._events_dir)
        segment = _Segment(
            first, last, final,
            {t: final / f"{t}.parquet" for t in frames},
            {t: {n: d for n, d in f.schema.items() if n not in HEADER_SCHEMA} for t, f in frames.items()},
        )  # fmt: skip
        # Superseded folders (compaction) are dropped from the view; new ones are appended.
        keep = [s for s in self._segments if not (s.first >= first and s.last <= last)]
        self._segments = sorted([*keep, segment], key=lambda s: s.first)
        self._known = {s.name: s for s in self._segments}
        self._listing_stamp = os.stat(self._events_dir).st_mtime_ns
        return segment

    def _sync_dir(self, path: Path) -> None:
        if self.durable:
            _fsync(path)

    # ------------------------------------------------------------------ reads
    def _type_frame(self, event_type: str) -> pl.LazyFrame | None:
        schema = self._schemas.get(event_type)
        files = [str(s.files[event_type]) for s in self._segments if event_type in s.files]
        if schema is None or not files:
            return None
        return pl.scan_parquet(
            files,
            schema=type_frame_schema(schema),
            missing_columns="insert",
            cast_options=_CAST,
        )

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
                    # Folders whose files are gone are checked again: superseded ones drop
                    # out of the listing, a damaged one raises StoreCorruptedError.
                    self._known = {
                        name: seg for name, seg in self._known.items()
                        if all(f.exists() for f in seg.files.values())
                    }  # fmt: skip
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
                self._refresh()

    def files(self) -> list[Path]:
        """Every committed Parquet file, in position order of their folders."""
        self._refresh()
        return [f for s in self._segments for f in s.files.values()]

    def size_on_disk(self) -> int:
        """Bytes used by the committed event files."""
        return sum(f.stat().st_size for f in self.files())

    def compact(self, *, max_events: int = 4_000_000) -> int:
        """Merge runs of small commit folders into folders of up to ``max_events`` events.

        Positions, versions and every event stay exactly as they were; readers stay
        correct throughout (a merged folder supersedes the ones it covers, which are then
        removed), and a crash at any point leaves the store as it was or as compacted.
        Returns the number of folders after compaction.
        """
        with self._writing():
            groups: list[list[_Segment]] = []
            for seg in self._segments:
                size = seg.last - seg.first + 1
                if groups and groups[-1][-1].last - groups[-1][0].first + 1 + size <= max_events:
                    groups[-1].append(seg)
                else:
                    groups.append([seg])
            for group in groups:
                if len(group) < 2:
                    continue
                frames = {}
                types = dict.fromkeys(t for seg in group for t in seg.files)
                for t in types:
                    files = [str(seg.files[t]) for seg in group if t in seg.files]
                    frames[t] = pl.scan_parquet(
                        files, schema=type_frame_schema(self._schemas[t]),
                        missing_columns="insert", cast_options=_CAST,
                    ).collect()  # fmt: skip
                self._write_segment(frames, group[0].first, group[-1].last)
                for seg in group:
                    shutil.rmtree(seg.path, ignore_errors=True)
                self._listing_stamp = os.stat(self._events_dir).st_mtime_ns
            return len(self._segments)

    def _summary(self) -> dict[str, Any]:
        summary = super()._summary()
        summary["path"] = str(self.path)
        summary["folders"] = len(self._segments)
        return summary


def _resolve(names: list[tuple[str, int, int]], where: Path) -> list[tuple[str, int, int]]:
    """The live folders: drop those inside a wider one; refuse gaps and partial overlaps."""
    live: list[tuple[str, int, int]] = []
    covered = 0
    for name, first, last in sorted(names, key=lambda x: (x[1], -x[2])):
        if last <= covered:
            continue  # superseded by a compacted folder
        if first != covered + 1:
            if first > covered + 1:
                raise StoreCorruptedError(
                    f"{where}: positions {covered + 1}..{first - 1} are missing (next folder is {name})"
                )
            raise StoreCorruptedError(f"{where / name}: overlaps positions already held by another folder")
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
