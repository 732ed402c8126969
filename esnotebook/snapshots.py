"""Snapshots: an aggregate's state saved at a version, so loading skips the events before it.

A snapshot is a cache. Deleting snapshots never loses anything (the events are the truth);
a snapshot that does not fit - another state-schema version, a version the stream does
not reach, an event id that does not match the stream - is ignored and the aggregate is
replayed in full, so a snapshot can make a load faster but never make it wrong.

Two backends satisfy one :class:`SnapshotStore` protocol: :class:`InMemorySnapshotStore`
and :class:`ParquetSnapshotStore`, which keeps one small Parquet file per aggregate in the
event store's folder (``<store>/snapshots/<aggregate type>/<hash of the id>.parquet``),
replaced atomically on every write.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import polars as pl

from . import _atomic
from ._schema import UTC_DATETIME
from .errors import StoreCorruptedError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["InMemorySnapshotStore", "ParquetSnapshotStore", "Snapshot", "SnapshotStore"]

_SCHEMA: dict[str, pl.DataType] = {
    "aggregate_type": pl.String(),
    "aggregate_id": pl.String(),
    "version": pl.Int64(),
    "schema_version": pl.Int64(),
    "last_event_id": pl.String(),
    "taken_at": UTC_DATETIME,
    "state": pl.String(),
}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An aggregate's state at one version.

    ``state`` is JSON text (what :meth:`Aggregate.get_state` returned), so a snapshot can
    never share mutable objects with a live aggregate. ``last_event_id`` is the id of the
    event at ``version``: a load checks it against the stream before trusting the state.
    """

    aggregate_type: str
    aggregate_id: str
    version: int
    schema_version: int
    last_event_id: str
    taken_at: datetime
    state: str

    def state_dict(self) -> dict[str, Any]:
        """The state, decoded."""
        return json.loads(self.state)

    def _row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _SCHEMA}


def _check_keep(keep: object) -> int:
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"'keep' must be an int >= 1 (got {keep!r})")
    return keep


def _kept(held: list[Snapshot], snapshot: Snapshot, keep: int) -> list[Snapshot]:
    """``held`` with ``snapshot`` added (replacing one at its version): the newest ``keep``."""
    kept = sorted([s for s in held if s.version != snapshot.version] + [snapshot], key=lambda s: s.version)
    return kept[-keep:]


def _frame(snapshots: list[Snapshot]) -> pl.DataFrame:
    return pl.DataFrame([s._row() for s in snapshots], schema=_SCHEMA, orient="row")


def _pick(
    candidates: list[Snapshot], max_version: int | None, schema_version: int | None
) -> Snapshot | None:
    best = None
    for s in candidates:
        if max_version is not None and s.version > max_version:
            continue
        if schema_version is not None and s.schema_version != schema_version:
            continue
        if best is None or s.version > best.version:
            best = s
    return best


@runtime_checkable
class SnapshotStore(Protocol):
    """Where snapshots are kept. Both backends keep only the latest ``keep`` per aggregate."""

    keep: int

    def save(self, snapshot: Snapshot) -> None: ...

    def latest(
        self,
        aggregate_type: str,
        aggregate_id: str,
        *,
        max_version: int | None = None,
        schema_version: int | None = None,
    ) -> Snapshot | None: ...

    def delete(self, aggregate_type: str | None = None, aggregate_id: str | None = None) -> int: ...

    def to_polars(self) -> pl.DataFrame: ...


class _Display:
    def to_polars(self) -> pl.DataFrame:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_pandas(self) -> pd.DataFrame:
        """Every snapshot as a pandas DataFrame (state as JSON text)."""
        return self.to_polars().to_pandas()

    def _repr_html_(self) -> str:
        frame = self.to_polars()
        counts = frame.group_by("aggregate_type").len().sort("aggregate_type").rows()
        rows = "".join(
            f"<tr><td>{html.escape(t)}</td><td>{n}</td></tr>" for t, n in counts[:20]
        )
        return (
            f"<b>{html.escape(type(self).__name__)}</b> ({frame.height} snapshots, "
            f"keep={self.keep})<table><tr><th>aggregate type</th><th>snapshots</th></tr>"  # type: ignore[attr-defined]
            f"{rows}</table>"
        )


class InMemorySnapshotStore(_Display):
    """Snapshots held in memory.

    Parameters
    ----------
    keep
        How many snapshots to keep per aggregate (the newest; default 2).

    Examples
    --------
    >>> from esnotebook.snapshots import InMemorySnapshotStore
    >>> snapshots = InMemorySnapshotStore(keep=1)
    >>> len(snapshots.to_polars())
    0
    """

    def __init__(self, *, keep: int = 2) -> None:
        self.keep = _check_keep(keep)
        self._by_aggregate: dict[tuple[str, str], list[Snapshot]] = {}
        self._lock = threading.Lock()

    def save(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` (replacing one at the same version), dropping the oldest beyond ``keep``."""
        key = (snapshot.aggregate_type, snapshot.aggregate_id)
        with self._lock:
            self._by_aggregate[key] = _kept(self._by_aggregate.get(key, []), snapshot, self.keep)

    def latest(
        self,
        aggregate_type: str,
        aggregate_id: str,
        *,
        max_version: int | None = None,
        schema_version: int | None = None,
    ) -> Snapshot | None:
        """The newest snapshot at or below ``max_version`` with this ``schema_version``."""
        return _pick(self._by_aggregate.get((aggregate_type, aggregate_id), []), max_version, schema_version)

    def delete(self, aggregate_type: str | None = None, aggregate_id: str | None = None) -> int:
        """Delete the snapshots of one aggregate, one type, or all; return how many."""
        with self._lock:
            doomed = [
                k for k in self._by_aggregate
                if (aggregate_type is None or k[0] == aggregate_type)
                and (aggregate_id is None or k[1] == aggregate_id)
            ]  # fmt: skip
            return sum(len(self._by_aggregate.pop(k)) for k in doomed)

    def to_polars(self) -> pl.DataFrame:
        """Every snapshot, one row each (state as JSON text)."""
        return _frame([s for group in self._by_aggregate.values() for s in group])


class ParquetSnapshotStore(_Display):
    """Snapshots as Parquet files in a folder, one file per aggregate, replaced atomically.

    Parameters
    ----------
    where
        A :class:`~esnotebook.ParquetEventStore` (snapshots go to ``<its folder>/snapshots``)
        or a folder path.
    keep
        How many snapshots to keep per aggregate (the newest; default 2).
    durable
        fsync each write (default: the event store's setting, else ``True``).

    Notes
    -----
    Any process may write snapshots: each file is replaced whole, so two writers racing on
    one aggregate can at worst lose one snapshot, never corrupt one.

    A file is named by 32 hex digits of the SHA-256 of the aggregate id, so any id gives a
    short legal name; the type and id are kept inside, and a file holding another
    aggregate's rows (a hash collision) is a cache miss. Folders written before this
    naming (files named by the quoted id) still load, and the next save of an aggregate
    moves it to its new name.

    :meth:`save` raises what the write raised (``OSError`` on a full disk, ...);
    :meth:`esnotebook.Repository.save` turns that into a warning, since the events are
    stored by then and a snapshot is only a cache.

    Examples
    --------
    >>> import esnotebook as es, tempfile
    >>> from esnotebook.snapshots import ParquetSnapshotStore
    >>> store = es.ParquetEventStore(tempfile.mkdtemp() + "/shop")
    >>> ParquetSnapshotStore(store).path.name
    'snapshots'
    """

    def __init__(self, where: Any, *, keep: int = 2, durable: bool | None = None) -> None:
        self.keep = _check_keep(keep)
        store_path = getattr(where, "path", None)
        if store_path is not None and not isinstance(where, (str, os.PathLike)):
            self.path = Path(store_path) / "snapshots"
            self.durable = getattr(where, "durable", True) if durable is None else durable
        elif isinstance(where, (str, os.PathLike)):
            self.path = Path(where)
            self.durable = True if durable is None else durable
        else:
            raise TypeError(
                "ParquetSnapshotStore needs a ParquetEventStore or a folder path "
                f"(got {type(where).__name__})"
            )
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"{self.path} is a file; snapshots need a folder")

    def _file(self, aggregate_type: str, aggregate_id: str) -> Path:
        # A fixed-length name: an id of any length fits, temporary name included.
        digest = hashlib.sha256(aggregate_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return self.path / _quote(aggregate_type) / f"{digest}.parquet"

    def _legacy_file(self, aggregate_type: str, aggregate_id: str) -> Path | None:
        """Where snapshots were kept before :meth:`_file` (the quoted id), if that name is legal."""
        name = f"{_quote(aggregate_id)}.parquet"
        return self.path / _quote(aggregate_type) / name if len(name) <= 255 else None

    def _held(self, aggregate_type: str, aggregate_id: str) -> tuple[list[Snapshot], Path | None]:
        """The aggregate's snapshots, and the legacy file they came from (if they did)."""
        legacy = None
        found = self._read(self._file(aggregate_type, aggregate_id))
        if not found:
            legacy = self._legacy_file(aggregate_type, aggregate_id)
            found = self._read(legacy) if legacy is not None else []
        mine = [s for s in found if s.aggregate_type == aggregate_type and s.aggregate_id == aggregate_id]
        return mine, legacy if mine else None

    def _read(self, file: Path) -> list[Snapshot]:
        if not file.is_file():
            # A stat: a failed read_parquet costs ten times a short load, and every load of
            # an aggregate without a snapshot yet tries two names.
            return []
        try:
            frame = pl.read_parquet(file)
        except FileNotFoundError:
            return []
        except Exception as exc:  # noqa: BLE001 - any failure to read means damage
            raise StoreCorruptedError(
                f"{file}: damaged snapshot file ({exc}); delete it - snapshots are only a cache"
            ) from None
        missing = [c for c in _SCHEMA if c not in frame.columns]
        if missing:
            raise StoreCorruptedError(f"{file}: not a snapshot file (missing columns {missing})")
        return [Snapshot(**row) for row in frame.select(list(_SCHEMA)).iter_rows(named=True)]

    def save(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` (replacing one at the same version), dropping the oldest beyond ``keep``."""
        held, legacy = self._held(snapshot.aggregate_type, snapshot.aggregate_id)
        file = self._file(snapshot.aggregate_type, snapshot.aggregate_id)
        frame = _frame(_kept(held, snapshot, self.keep))
        _atomic.write_parquet(file, frame, durable=self.durable, compression="uncompressed")
        if legacy is not None:
            legacy.unlink(missing_ok=True)

    def latest(
        self,
        aggregate_type: str,
        aggregate_id: str,
        *,
        max_version: int | None = None,
        schema_version: int | None = None,
    ) -> Snapshot | None:
        """The newest snapshot at or below ``max_version`` with this ``schema_version``."""
        return _pick(self._held(aggregate_type, aggregate_id)[0], max_version, schema_version)

    def _files(self, aggregate_type: str | None, aggregate_id: str | None) -> Iterator[Path]:
        if not self.path.is_dir():
            return
        types = (
            [aggregate_type] if aggregate_type is not None
            else sorted(urllib.parse.unquote(p.name) for p in self.path.iterdir() if p.is_dir())
        )  # fmt: skip
        for t in types:
            if aggregate_id is not None:
                names = [self._file(t, aggregate_id), self._legacy_file(t, aggregate_id)]
                yield from (f for f in names if f is not None and f.exists())
            elif (folder := self.path / _quote(t)).is_dir():
                yield from sorted(folder.glob("*.parquet"))

    def delete(self, aggregate_type: str | None = None, aggregate_id: str | None = None) -> int:
        """Delete the snapshots of one aggregate, one type, or all; return how many."""
        count = 0
        for file in list(self._files(aggregate_type, aggregate_id)):
            try:
                count += len(self._read(file))
            except StoreCorruptedError:
                pass  # a damaged file is deleted all the same: it held nothing usable
            file.unlink(missing_ok=True)
        return count

    def to_polars(self) -> pl.DataFrame:
        """Every snapshot, one row each (state as JSON text)."""
        return _frame([s for f in self._files(None, None) for s in self._read(f)])


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="") or "%00"


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
