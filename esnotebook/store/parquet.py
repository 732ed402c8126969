"""The Parquet event store: a folder of immutable Parquet files that any Arrow tool can read.

Layout (version 4; docs/parquet-layout.md has the details and recipes for DuckDB, polars,
pyarrow)::

    store/
      esnotebook-store.json              marks the folder as a store (format, version, store_id)
      LOCK                               held by the one writer process (flock)
      HEAD                               the committed head, written after each commit
      events/
        000000000001-000000000010.<crc>.parquet
                                         one commit: positions first-last, in position
                                         order, the header (with each event's stream
                                         number) then the union of the payload fields of
                                         its event types; <crc> is the CRC32C of its bytes
      _tmp/                              commits being written; never read; the next writer
                                         removes what a crashed one left

A commit is written into ``_tmp/``, flushed and fsynced, then published into ``events/`` in one
atomic step that never replaces a file (``_commit.py``; the folder is fsynced), so a crash at
any instant leaves either the whole commit or none of it. Files are in position order and
each is sorted, so the canonical event frame is one ``scan_parquet`` over the files: no sort.
Each file's key-value metadata (``esnotebook.fields``) lists, per event type in it, that
type's fields, so an event's ``data`` holds exactly its type's fields.

``compact()`` merges runs of files into bigger ones the same way; a file whose range lies
inside another's is superseded and ignored until the writer removes it (after checking the
file that covers it). Readers never take the lock; when a compaction in another process
removes files under a read, the read lists the folder again and retries.

Nothing committed goes missing unnoticed: a file is checked against its CRC32C the first time
this process lists it (:func:`._files.validate_file`; :meth:`ParquetEventStore.verify`
checks every file again), carries the store's id, and ``HEAD`` holds a lower bound of the
head (it is written after the commit's rename), so newest files deleted behind the store's
back are a :class:`StoreCorruptedError`, not a silent rollback that hands positions out again.
"""

from __future__ import annotations

import bisect
import functools
import json
import os
import shutil
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal, TypeVar

import polars as pl

from .. import _schema
from .._atomic import fsync_path, write_json
from .._schema import Schema
from ..errors import (
    CommitUnconfirmedError,
    EventDataError,
    EventStoreError,
    StoreChangedError,
    StoreCorruptedError,
    StoreIOError,
    StoreLockedError,
)
from ..events import RecordedEvent
from ._cache import StreamCache
from ._commit import commit_file, publish
from ._files import (
    FIELDS_KEY, STORE_ID_KEY, file_checksum, file_name, file_name_match, resolve, validate_file,
    widest,
)  # fmt: skip
from ._files import File as _File
from ._frames import HEADER_SCHEMA, events_from_frame, frame_from_events
from ._lock import WriterLock
from .base import Clock, StoreBase, _check_int, _check_stream_id, _field_union

__all__ = ["ParquetEventStore"]

MARKER = "esnotebook-store.json"
FORMAT = "esnotebook-parquet"
FORMAT_VERSION = 4
#: Layout 2 lacked the ``stream_number`` column; its stores open, and their numbers are
#: filled in on read (and written into any file that compaction rewrites). Files of layouts
#: 2 and 3 have no checksum in their names: they open unchecked.
READABLE_VERSIONS = (2, 3, 4)
#: The file beside the marker that records the committed head (20 digits, then its CRC32).
HEAD = "HEAD"
_CAST = pl.ScanCastOptions(integer_cast=["upcast", "allow-float"], missing_struct_fields="insert")

#: How long a read disturbed by a concurrent compaction (files replaced under it) retries.
_RETRY_SECONDS = 30.0
#: Well above the coarse clock tick (1-10 ms) that stamps directory modification times.
_MTIME_TICK_NS = 50_000_000
#: The tick of file systems that stamp whole seconds (ext4 with small inodes, NAS and FUSE
#: mounts) or two (FAT): a folder whose mtime is a whole second is trusted only after this.
_COARSE_TICK_NS = 2_000_000_000
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

    An I/O error during a write raises :class:`StoreIOError` (nothing stored; a retry is
    safe) or :class:`CommitUnconfirmedError` (the commit IS stored, its durability not
    confirmed; retry only with ``expected_version``). After either (a full disk with nothing
    stored excepted), or after its ``LOCK`` was deleted or its folder re-created, the object
    refuses to write and lets go of the lock: open the store again.

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
        if not marker.exists():
            self._create()
        info = _read_marker(p)
        try:
            fmt, version, store_id = info["format"], info["version"], info.get("store_id")
            if not isinstance(store_id, str | None):
                raise TypeError(f"store_id must be a string (got {store_id!r})")
        except (KeyError, TypeError) as exc:
            raise StoreCorruptedError(f"{marker}: unreadable store marker ({exc})") from None
        if fmt != FORMAT or version not in READABLE_VERSIONS:
            raise EventStoreError(
                f"{p}: store format {fmt!r} version {version!r} is not supported "
                f"(expected {FORMAT!r} version {' or '.join(map(str, READABLE_VERSIONS))})"
            )
        if not self._events_dir.is_dir():
            raise StoreCorruptedError(f"{self._events_dir}: the events folder is missing")
        #: The id the store got when it was created (``None`` for stores made before ids).
        self.store_id: str | None = store_id
        self._lock = WriterLock(p)
        self._stopped: EventStoreError | None = None  # the error that stopped this writer

    def _create(self) -> None:
        """Create the store, or finish creating one that a crash interrupted.

        The marker is published last, without replacing one, so a crash at any point leaves
        no folder, an empty one, or a half-created one (an empty ``events/``, ``_tmp/`` and
        an older version's marker temporaries), which this finishes.
        """
        p = self.path
        if p.is_dir():
            entries = list(os.scandir(p))
            foreign = sorted(e.name for e in entries if not _half_created(e))
            if foreign:
                shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                raise EventStoreError(
                    f"{p} is not an esnotebook store: it has no {MARKER} but holds {len(foreign)} "
                    f"entries ({shown}); expected an existing store, an empty folder or a new path"
                )
            for e in entries:
                if e.name.startswith(f".{MARKER}."):
                    Path(e.path).unlink(missing_ok=True)
        p.mkdir(parents=True, exist_ok=True)
        self._events_dir.mkdir(exist_ok=True)
        self._tmp_dir.mkdir(exist_ok=True)
        info = {"format": FORMAT, "version": FORMAT_VERSION, "store_id": uuid.uuid4().hex}
        tmp = self._tmp_dir / f"{MARKER}.{uuid.uuid4().hex}"
        tmp.write_text(json.dumps(info) + "\n")
        try:
            self._fsync(tmp)
            publish(tmp, p / MARKER)
        except OSError:
            if not (p / MARKER).exists():
                raise  # not another process creating the same store at the same time
        finally:
            tmp.unlink(missing_ok=True)
        self._fsync(p)

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
                f"{self.path} is locked by another writer ({self._lock.holder()}); only one "
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
            if self._stopped is not None:
                text = (
                    f"{self.path}: this store object stopped writing after an error, and wrote "
                    f"nothing now; open the store again to write. The error: {self._stopped}"
                )
                if isinstance(self._stopped, StoreLockedError):
                    raise StoreLockedError(text)
                raise StoreIOError(text, errno=getattr(self._stopped, "errno", None))
            try:
                self._acquire()
                self._lock.check()
                self._refresh()
                yield
            except (StoreIOError, CommitUnconfirmedError, StoreLockedError) as exc:
                # Past the lock (or its check) these say the disk failed or another writer is
                # at work: this object's view of the store can no longer be trusted.
                if self._lock.held and not (isinstance(exc, StoreIOError) and exc.disk_full):
                    self._stopped = exc
                    self.close()  # let a store opened again take the lock
                raise

    def _tidy(self) -> None:
        """With the lock held: delete unfinished commits and superseded files, and mark an
        older store as layout 4 before this writer adds files of layout 4 to it.

        A file is superseded when its range lies inside another's. That other file is
        validated (checksum, footer, store id) first: a stray or damaged file that merely
        has a wide name is a :class:`StoreCorruptedError`, and nothing is deleted.
        """
        self._tmp_dir.mkdir(exist_ok=True)
        for entry in os.scandir(self._tmp_dir):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)
        self._upgrade_marker()
        names = self._file_names()
        live = resolve(names, self._events_dir)
        superseded = sorted(set(names) - set(live))
        for name, first, last in live:
            if name not in self._known and any(first <= a and b <= last for _, a, b in superseded):
                self._known[name] = self._validate(name, first, last)
        for name, _, _ in superseded:
            (self._events_dir / name).unlink(missing_ok=True)
            self._known.pop(name, None)

    def _upgrade_marker(self) -> None:
        """Give the marker layout version 4 and a store id, if it lacks either: an older
        esnotebook then refuses the store instead of misreading its new files."""
        marker = self.path / MARKER
        info = _read_marker(self.path)
        if info.get("version") != FORMAT_VERSION or not info.get("store_id"):
            info.update(version=FORMAT_VERSION, store_id=info.get("store_id") or uuid.uuid4().hex)
            write_json(marker, info, durable=self.durable)
        self.store_id = info["store_id"]

    # ------------------------------------------------------------------ the listing
    def _file_names(self) -> list[tuple[str, int, int]]:
        found = []
        for entry in os.scandir(self._events_dir):
            m = file_name_match(entry.name)
            if m is None or not entry.is_file():
                raise StoreCorruptedError(
                    f"{entry.path}: unexpected entry in the events folder (expected files "
                    "named <first position>-<last position>.<crc32c>.parquet, 12 digits each, "
                    "8 hex digits of CRC32C; files of older layouts have no CRC)"
                )
            found.append((entry.name, int(m.group(1)), int(m.group(2))))
        return sorted(found)

    def _recorded_head(self) -> int:
        """The head in ``HEAD``: a lower bound of the committed head (0 if not recorded)."""
        path = self.path / HEAD
        try:
            text = path.read_text()
        except FileNotFoundError:
            return 0  # a store of an older layout
        head, _, crc = text.partition(" ")
        if not head.isdigit() or crc.strip() != f"{zlib.crc32(head.encode()):08x}":
            raise StoreCorruptedError(
                f"{path}: unreadable head record (expected '<position> <its CRC32>', found "
                f"{text[:40]!r}); delete it to open the store without checking for missing "
                "newest files"
            )
        return int(head)

    def _record_head(self, head: int) -> None:
        """Write ``head`` into ``HEAD``, after its commit is visible (so never ahead of it).

        Overwritten in place, at a fixed width (a rename over it would make ext4 flush it,
        milliseconds per commit); its CRC32 tells a torn read, which the listing retries.
        No fsync: after a machine crash the record may be older, which a lower bound allows.
        """
        digits = f"{head:020d}"
        try:
            fd = os.open(self.path / HEAD, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.pwrite(fd, f"{digits} {zlib.crc32(digits.encode()):08x}\n".encode(), 0)
            finally:
                os.close(fd)
        except OSError:
            # The commit is visible already: an error now would invite a second append of
            # it. The record left behind is older, so still a lower bound; the next commit
            # writes it again.
            pass

    def _check_head(self, live: list[tuple[str, int, int]], recorded: int) -> None:
        head = live[-1][2] if live else 0
        if head < recorded:
            raise StoreCorruptedError(
                f"{self._events_dir}: positions {head + 1}..{recorded} are missing: the store "
                f"recorded {recorded} committed events (in {HEAD}, or seen by this store object), "
                f"but its newest file ends at position {head}"
            )

    def _refresh(self) -> None:
        """Bring the view of committed files up to date (cheap when nothing changed)."""
        with self._mutex:
            stamp = os.stat(self._events_dir).st_mtime_ns
            if stamp == self._listing_stamp:
                return
            listed_at = time.time_ns()
            files = self._listed_files()
            if [f.name for f in files] != [f.name for f in self._files]:
                old_head = self._head
                self._install(files)
                if self._versions is not None and self._head > old_head:
                    try:
                        self._update_index(old_head)
                    except FileNotFoundError:
                        self._versions = self._anchors = None  # compacted under us; rebuilt on use
            # A commit within the same tick of the folder's clock as our listing keeps its
            # mtime: trust the stamp only once it is older than any tick. Folders stamped in
            # whole seconds are on a file system whose tick may be 1 or 2 s.
            tick = _COARSE_TICK_NS if stamp % 1_000_000_000 == 0 else _MTIME_TICK_NS
            self._listing_stamp = stamp if listed_at - stamp > tick else None

    def _listed_files(self) -> list[_File]:
        """The live files as listed now, each validated once, none missing.

        A compaction in another process may replace files while we look: what vanished or
        looked half-written was superseded. Damage is reported only when a fresh listing
        shows the same files.
        """
        deadline = time.monotonic() + _RETRY_SECONDS
        pause = 0.001
        seen = None
        while True:
            # HEAD before the listing: it is written after its commit's rename, so a listing
            # made after reading it shows that commit.
            recorded = max(self._recorded_head(), self._head)
            names = self._file_names()
            try:
                live = resolve(names, self._events_dir)
                self._check_head(live, recorded)
                # A file's name fixes its content: validate once. The CRC32C runs without
                # the GIL, so the files are checked side by side.
                new = [entry for entry in live if entry[0] not in self._known]
                if len(new) > 1:
                    with ThreadPoolExecutor(min(len(new), os.cpu_count() or 1)) as pool:
                        checked = list(pool.map(lambda entry: self._validate(*entry), new))
                else:
                    checked = [self._validate(*entry) for entry in new]
                self._known.update((f.name, f) for f in checked)
                return [self._known[name] for name, _, _ in live]
            except (FileNotFoundError, StoreCorruptedError):
                if names == seen or time.monotonic() > deadline:
                    raise
                seen = names
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

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
        m = file_name_match(name)
        assert m is not None
        checksum = None if m.group(3) is None else int(m.group(3), 16)
        f = validate_file(self._events_dir / name, first, last, checksum)
        if f.store_id is not None and f.store_id != self.store_id:
            # The marker may have been given an id since this object read it.
            self.store_id = self.store_id or _read_marker(self.path).get("store_id")
            if f.store_id != self.store_id:
                raise StoreCorruptedError(
                    f"{f.path}: belongs to another store (its store id is {f.store_id!r}, this "
                    f"store's is {self.store_id!r}); it was copied in from elsewhere"
                )
        return f

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
        tmp = self._tmp_dir / f"{first:012d}-{last:012d}.{uuid.uuid4().hex}"
        metadata = {FIELDS_KEY: json.dumps(fields, separators=(",", ":"))}
        if self.store_id is not None:
            metadata[STORE_ID_KEY] = self.store_id
        checksum = 0

        def write(path: Path) -> Path:
            nonlocal checksum
            frame.write_parquet(path, compression=self.compression, statistics=True, metadata=metadata)
            checksum = file_checksum(path)
            return self._events_dir / file_name(first, last, checksum)

        final = commit_file(
            write, tmp, durable=self.durable, check=self._lock.check, store=self.path,
            positions=range(first, last + 1),
        )  # fmt: skip
        if last > self._head:
            self._record_head(last)
        schema = frame.schema
        written = _File(
            first, last, final, {t: {n: schema[n] for n in names} for t, names in fields.items()},
            checksum=checksum, store_id=self.store_id,
        )  # fmt: skip
        # Superseded files (compaction) are dropped from the view; new ones are appended.
        keep = [f for f in self._files if not (f.first >= first and f.last <= last)]
        self._files = sorted([*keep, written], key=lambda f: f.first)
        self._firsts = [f.first for f in self._files]
        self._known = {f.name: f for f in self._files}
        self._listing_stamp = os.stat(self._events_dir).st_mtime_ns
        return written

    def _fsync(self, path: Path) -> None:
        if self.durable:
            fsync_path(path)

    # ------------------------------------------------------------------ reads
    def _events_frame(self, start: int = 0, end: int | None = None) -> pl.LazyFrame | None:
        if not self._files:
            return None
        from polars.io.plugins import register_io_source

        schema = {**HEADER_SCHEMA, **self._field_union()}
        files = [f for f in self._files if f.last > start and (end is None or f.first <= end)]
        if not files:
            return pl.LazyFrame(schema=schema)
        # A plain function of the paths (no store inside), so the plan pickles (dask).
        source = functools.partial(_scan_files, [str(f.path) for f in files], schema)
        return register_io_source(source, schema=schema, explain_name="esnotebook files")

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

    def verify(self) -> pl.DataFrame:
        """Check every committed file in full, and that none is missing.

        Reads each file's bytes against the CRC32C its name records, checks its footer and
        that it belongs to this store, and checks the files against the head the store
        recorded. Files of layouts 2 and 3 have no checksum: they are checked without one
        and reported with ``checked`` false. Unlike ordinary reads, which check a file the
        first time this process lists it, this looks at every file again.

        Returns
        -------
        polars.DataFrame
            One row per file, in position order: ``file``, ``first``, ``last`` (its
            positions) and ``checked`` (whether a checksum covered it).

        Raises
        ------
        StoreCorruptedError
            Naming every damaged, foreign or missing file and its positions.

        Examples
        --------
        >>> import esnotebook as es, tempfile
        >>> store = es.ParquetEventStore(tempfile.mkdtemp() + "/shop")
        >>> _ = store.append("order-1", [es.NewEvent("OrderPlaced", {"customer": "c-1"})])
        >>> store.verify().select("first", "last", "checked").row(0)
        (1, 1, True)
        """

        def check() -> list[_File]:
            with self._mutex:
                recorded = max(self._recorded_head(), self._head)
                live = resolve(self._file_names(), self._events_dir)
                self._check_head(live, recorded)
                files, damaged = [], []
                for name, first, last in live:
                    try:
                        files.append(self._validate(name, first, last))
                    except StoreCorruptedError as exc:
                        damaged.append(str(exc))
                if damaged:
                    raise StoreCorruptedError(
                        f"{len(damaged)} of {len(live)} files are damaged: " + "; ".join(damaged)
                    )
                return files

        files = self._retrying(check)
        return pl.DataFrame(
            {
                "file": [f.name for f in files], "first": [f.first for f in files],
                "last": [f.last for f in files], "checked": [f.checksum is not None for f in files],
            },
            schema={"file": pl.String, "first": pl.Int64, "last": pl.Int64, "checked": pl.Boolean},
        )  # fmt: skip

    def size_on_disk(self) -> int:
        """Bytes used by the committed event files."""
        return sum(f.stat().st_size for f in self.files())

    def compact(self, *, max_events: int = 4_000_000) -> int:
        """Merge runs of small commit files into files of up to ``max_events`` events.

        Positions, versions and every event stay exactly as they were; readers stay
        correct throughout (a merged file supersedes the ones it covers, which are then
        removed), and a crash at any point leaves the store as it was or as compacted.
        A run whose merged columns would be too wide for a Parquet reader to reopen (see
        :func:`esnotebook._schema.check_width`) is left as it is. Returns the number of
        files after compaction.
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
                schema = {**HEADER_SCHEMA, **{n: union[n] for n in columns}}
                try:
                    _schema.check_width(schema, f"compacting positions {group[0].first}..{group[-1].last}")
                except EventDataError:
                    continue  # each file reopens; their merge would not
                frame = pl.scan_parquet(
                    [str(f.path) for f in group], schema=schema, missing_columns="insert",
                    cast_options=_CAST,
                )  # fmt: skip
                if not all(f.numbered for f in group):
                    frame = self._number_rows(frame)
                frame = frame.collect()
                self._write_file(frame, group[0].first, group[-1].last, {t: list(n) for t, n in fields.items()})
                for f in group:
                    # Superseded now: readers ignore it, and the next writer's tidy-up removes
                    # what an error leaves here; the compaction itself is committed.
                    with suppress(OSError):
                        f.path.unlink(missing_ok=True)
                self._listing_stamp = os.stat(self._events_dir).st_mtime_ns
            return len(self._files)

    def _summary(self) -> dict[str, Any]:
        summary = super()._summary()
        summary["path"] = str(self.path)
        summary["files"] = len(self._files)
        return summary


def _half_created(entry: os.DirEntry[str]) -> bool:
    """Whether ``entry`` of a folder without a marker is what a crashed creation leaves."""
    if entry.name == "events":
        return entry.is_dir(follow_symlinks=False) and not any(os.scandir(entry.path))
    if entry.name == "_tmp":
        return entry.is_dir(follow_symlinks=False)
    return entry.name.startswith(f".{MARKER}.") and entry.is_file(follow_symlinks=False)


def _as_list(at: int | list[int]) -> list[int]:
    return at if isinstance(at, list) else [at]


def _read_marker(path: Path) -> dict[str, Any]:
    marker = path / MARKER
    try:
        info = json.loads(marker.read_text())
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise StoreCorruptedError(f"{marker}: unreadable store marker ({exc})") from None
    return info


def _scan_files(
    paths: list[str], schema: Schema, with_columns: list[str] | None, predicate: pl.Expr | None,
    n_rows: int | None, batch_size: int | None,
) -> Iterator[pl.DataFrame]:
    """The scan behind :meth:`ParquetEventStore.scan` (a polars IO source), over the files
    it was planned on; :class:`StoreChangedError` if a compaction has removed one since."""
    lf = pl.scan_parquet(paths, schema=schema, missing_columns="insert", cast_options=_CAST)
    if predicate is not None:
        lf = lf.filter(predicate)
    if with_columns is not None:
        lf = lf.select(with_columns)
    if n_rows is not None:
        lf = lf.head(n_rows)
    try:
        yield from lf.collect_batches(chunk_size=batch_size)
    except FileNotFoundError as exc:
        raise StoreChangedError(
            f"a compaction replaced the files this scan was planned on ({exc}); the store is "
            "intact: call scan() again and collect that (to_polars() and read_all() retry "
            "by themselves)"
        ) from None
