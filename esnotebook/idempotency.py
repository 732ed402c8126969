"""Durable idempotency keys: a retried command with a key already processed changes nothing.

:class:`DurableIdempotency` is command-bus middleware. The first command with a given
``idempotency_key`` is carried out and its outcome recorded (status, the positions of the
events it stored, the error of a rejection); every later command with that key gets the
first outcome back with ``status="duplicate"`` and stores nothing.

Where the keys live
    On a :class:`~esnotebook.ParquetEventStore`, in ``<store.path>/idempotency/`` beside the
    events: each outcome is a small Parquet file written atomically (temporary name, fsync,
    rename) and merged into one file now and then. The bus also stamps the key into the
    metadata of every event a command stores, so the events are the truth and a key file is
    an index of them. Each key file records a ``head``: every event up to that position that
    carries a key has its key in the files. On opening, and before a key not seen yet is
    carried out, keys are taken in from the metadata of the events after the highest
    ``head`` (a crash between an append and its key file, another process's commands). On
    the in-memory store, keys live in memory.

When something fails
    Once a command's events are stored, nothing after that makes it run twice:

    - a key file that cannot be written (a full disk) is a ``RuntimeWarning``, not an
      error: the command is done, its key stays in memory and goes into the next key file
      written, and a restart recovers it from the events (a lost *rejection* is decided
      afresh after a restart: it stored nothing);
    - a command that raised (an append whose outcome is unknown, say an I/O error after the
      commit) is looked for in the store by its key: if its events are there, the key is
      recorded, the exception gets a note saying the command was carried out, and a retry
      answers ``"duplicate"``; if the store cannot be read, the next command with that key
      checks again before it runs.

Retention
    ``retention`` (a :class:`~datetime.timedelta`) forgets keys older than that, and
    ``max_keys`` keeps only the newest that many; both apply when keys are loaded and when
    the files are merged. A retry that arrives after its key was forgotten is carried out
    again, so keep keys at least as long as a sender may retry. Default: keep every key.

The switch
    ``mode="off"`` lets every command through, keys or not: a teaching switch, to show the
    duplicate side effects at-least-once delivery causes without keys.
    :func:`duplicate_side_effects` counts them.

>>> import esnotebook as es
>>> from esnotebook.examples import AddStock, order_domain_bus
>>> store = es.InMemoryEventStore()
>>> bus = order_domain_bus(store, middleware=[DurableIdempotency(store)])
>>> bus.dispatch(AddStock("sku-1", 5, idempotency_key="delivery-17")).status
'ok'
>>> bus.dispatch(AddStock("sku-1", 5, idempotency_key="delivery-17")).status
'duplicate'
>>> len(store)
1
"""

from __future__ import annotations

import dataclasses
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from . import _atomic
from ._schema import UTC_DATETIME
from .commands import Command, CommandResult
from .errors import DomainException, StoreCorruptedError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DurableIdempotency", "KeyRecord", "duplicate_side_effects"]

KEY_SCHEMA: dict[str, pl.DataType] = {
    "idempotency_key": pl.String(),
    "command_type": pl.String(),
    "command_id": pl.String(),
    "status": pl.String(),
    "first_position": pl.Int64(),
    "last_position": pl.Int64(),
    "error": pl.String(),
    "head": pl.Int64(),
    "recorded_at": UTC_DATETIME,
}
#: Merge the per-command key files into one when there are more than this many.
MERGE_AFTER = 256


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """The recorded outcome of the first command with a key."""

    idempotency_key: str
    command_type: str
    command_id: str
    status: str
    first_position: int | None
    last_position: int | None
    error: str | None
    head: int
    recorded_at: datetime


class DurableIdempotency:
    """Middleware recording processed idempotency keys durably beside the events.

    Parameters
    ----------
    store
        The event store the bus writes to. A store with a ``path`` (the Parquet store) keeps
        keys in ``<path>/idempotency/``; any other keeps them in memory.
    mode
        ``"on"`` (default) or ``"off"`` (every command goes through; for teaching).
    retention
        Forget keys recorded longer ago than this (default: never).
    max_keys
        Keep at most this many keys, the newest (default: no limit).
    clock
        A callable returning the current UTC datetime (for ``recorded_at`` and retention).

    Notes
    -----
    A command that raised (a transient fault, a bug) and stored nothing is not recorded,
    so it can be retried; one that raised after its events were stored is recorded (see
    "When something fails" in the module docs). Rejected commands are recorded: a retry
    gets the same rejection back. A key file that cannot be written is a ``RuntimeWarning``.
    """

    def __init__(
        self,
        store: Any,
        *,
        mode: Literal["on", "off"] = "on",
        retention: timedelta | None = None,
        max_keys: int | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if mode not in ("on", "off"):
            raise ValueError(f"'mode' must be 'on' or 'off' (got {mode!r})")
        if retention is not None and (not isinstance(retention, timedelta) or retention <= timedelta(0)):
            raise ValueError(f"'retention' must be a positive timedelta or None (got {retention!r})")
        if max_keys is not None and (isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1):
            raise ValueError(f"'max_keys' must be an int >= 1 or None (got {max_keys!r})")
        self.store = store
        self.mode = mode
        self.retention = retention
        self.max_keys = max_keys
        self._clock = clock or _utc_now
        # key -> the KeyRecord's fields as a plain tuple (cheaper to make on every command).
        self._records: dict[str, tuple[Any, ...]] = {}
        self._results: dict[str, CommandResult] = {}
        base = getattr(store, "path", None)
        self.path: Path | None = Path(base) / "idempotency" if base is not None else None
        self._files = 0
        # Every event at or below ``_seen`` that carries a key has it in ``_records``;
        # ``_unsaved`` are the records that no key file holds yet.
        self._seen = 0
        self._unsaved: list[tuple[Any, ...]] = []
        if self.path is not None:
            self._load()

    # ------------------------------------------------------------------ middleware
    def __call__(self, command: Command, next: Callable[[Command], CommandResult]) -> CommandResult:
        key = command.idempotency_key
        if self.mode == "off":
            return next(command)
        if key is None:
            result = next(command)
            self._passed(result.events)  # they carry no key: nothing to take in
            return result
        first = self._records.get(key)
        if first is None:
            # Its events may be stored already: a failed key file, another process.
            self._persist(self._take_in(self.store.head_position))
            first = self._records.get(key)
        if first is not None:
            if first[1] != command.command_type:
                raise ValueError(
                    f"idempotency key {key!r} was first used by {first[1]}, now by "
                    f"{command.command_type}; a key names one logical request"
                )
            return self._duplicate(command, KeyRecord(*first))
        try:
            result = next(command)
        except Exception as exc:
            self._note_outcome(key, exc)
            raise
        self._record(key, result)
        return result

    def _note_outcome(self, key: str, exc: Exception) -> None:
        """After a command raised: record its key if its events were stored all the same."""
        try:
            self._persist(self._take_in(self.store.head_position))
        except Exception as check:  # noqa: BLE001 - the command's own error is the one to raise
            exc.add_note(
                f"idempotency key {key!r}: whether the command stored its events could not be "
                f"checked ({type(check).__name__}: {check}); the next command with this key "
                "checks before it runs"
            )
            return
        first = self._records.get(key)
        if first is not None:
            exc.add_note(
                f"idempotency key {key!r}: the command was carried out all the same (its events "
                f"are stored at positions {first[4]}..{first[5]}); a retry with this key "
                "answers 'duplicate'"
            )

    def _duplicate(self, command: Command, first: KeyRecord) -> CommandResult:
        cached = self._results.get(first.idempotency_key)
        if cached is not None:
            return dataclasses.replace(cached, status="duplicate")
        events: tuple[Any, ...] = ()
        if first.first_position is not None:
            events = tuple(
                self.store.read_all(from_position=first.first_position - 1, to_position=first.last_position)
            )
        error = DomainException(first.error) if first.error is not None else None
        return CommandResult(command, "duplicate", events, error=error)

    def _record(self, key: str, result: CommandResult) -> None:
        events = result.events
        command = result.command
        self._passed(events)  # what lies between is taken in before the next new key
        record = (
            key, type(command).__name__, command.command_id, result.status,
            events[0].position if events else None, events[-1].position if events else None,
            None if result.error is None else str(result.error), self._seen, self._clock(),
        )  # fmt: skip
        self._records[key] = record
        self._results[key] = result
        self._persist([record])

    def _passed(self, events: tuple[Any, ...]) -> None:
        """Move ``_seen`` past ``events``, whose keys are known, if nothing lies between."""
        if events and events[0].position - 1 <= self._seen:
            self._seen = max(self._seen, events[-1].position)

    # ------------------------------------------------------------------ persistence
    def _persist(self, records: list[tuple[Any, ...]]) -> None:
        """Write ``records``, with any a failed write left, into a new key file.

        A failure is a warning: the commands are done, and their keys stay in memory.
        """
        if self.path is None or not records:
            return
        self._unsaved += records
        try:
            name = f"keys-{uuid.uuid4().hex}.parquet"
            _atomic.write_parquet(self.path / name, _frame(self._unsaved))
            self._unsaved = []
            self._files += 1
            if self._files > MERGE_AFTER:
                self.compact()
        except Exception as exc:  # noqa: BLE001 - the commands are done; see the message
            warnings.warn(
                f"idempotency keys: a write to {self.path} failed ({type(exc).__name__}: {exc}); "
                "the commands are done, keys not in a file yet are kept in memory and written "
                "with the next key file, and after a restart recovered from the events' metadata",
                RuntimeWarning, stacklevel=2,
            )  # fmt: skip

    def _load(self) -> None:
        assert self.path is not None
        self.path.mkdir(parents=True, exist_ok=True)
        files = sorted(self.path.glob("keys-*.parquet"))
        self._files = len(files)
        frames = []
        for f in files:
            try:
                frames.append(pl.read_parquet(f))
            except (OSError, pl.exceptions.PolarsError) as exc:
                raise StoreCorruptedError(f"{f}: unreadable idempotency key file ({exc})") from None
        frame = pl.concat(frames) if frames else pl.DataFrame(schema=KEY_SCHEMA)
        # Taken before retention: a forgotten key is not recovered again.
        self._seen = int(frame["head"].max() or 0) if frame.height else 0
        frame = self._retained(frame.sort("recorded_at").unique("idempotency_key", keep="first", maintain_order=True))
        for row in frame.iter_rows():
            self._records[row[0]] = row
        self._persist(self._take_in(self.store.head_position))

    def _take_in(self, head: int) -> list[tuple[Any, ...]]:
        """Record the keys stamped on the events after ``_seen`` up to ``head`` that no
        record holds (a crash before the key file, a full disk, another process); return the
        new records. ``_seen`` becomes ``head``."""
        if head <= self._seen:
            return []
        lf = self.store.scan(from_position=self._seen, to_position=head, with_metadata=True).select(
            "position", "causation_id", "metadata",
        )
        tail = (
            lf.with_columns(
                pl.col("metadata").str.json_path_match("$.idempotency_key").alias("key"),
                pl.col("metadata").str.json_path_match("$.command_type").alias("command_type"),
            )
            .filter(pl.col("key").is_not_null())
            .group_by("key", maintain_order=True)
            .agg(pl.col("command_type").first(), pl.col("causation_id").first(),
                 pl.col("position").min().alias("first"), pl.col("position").max().alias("last"))
            .collect()
        )  # fmt: skip
        now = self._clock()
        out = []
        for key, ctype, cid, first, last in tail.iter_rows():
            if key not in self._records:
                rec = (key, ctype or "?", cid or "", "ok", first, last, None, head, now)
                self._records[key] = rec
                out.append(rec)
        self._seen = head
        return out

    def _retained(self, frame: pl.DataFrame) -> pl.DataFrame:
        if self.retention is not None:
            frame = frame.filter(pl.col("recorded_at") >= self._clock() - self.retention)
        if self.max_keys is not None and frame.height > self.max_keys:
            frame = frame.tail(self.max_keys)
        return frame

    def compact(self) -> int:
        """Merge the key files into one, dropping keys past retention; return keys kept."""
        frame = self._retained(_frame(list(self._records.values())).sort("recorded_at"))
        keep = set(frame["idempotency_key"].to_list())
        self._records = {k: r for k, r in self._records.items() if k in keep}
        self._results = {k: r for k, r in self._results.items() if k in keep}
        if self.path is not None:
            old = list(self.path.glob("keys-*.parquet"))
            # A "keys-0" name sorts first; the merged file is complete before the old go.
            target = self.path / f"keys-0{uuid.uuid4().hex}.parquet"
            _atomic.write_parquet(target, frame)
            self._unsaved = []
            for f in old:
                if f != target:
                    f.unlink(missing_ok=True)
            self._files = 1
        return frame.height

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def to_polars(self) -> pl.DataFrame:
        """One row per remembered key: ``idempotency_key, command_type, command_id, status,
        first_position, last_position, error, head, recorded_at``."""
        return _frame(list(self._records.values()))

    def to_pandas(self) -> pd.DataFrame:
        """:meth:`to_polars` as pandas."""
        return self.to_polars().to_pandas()

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "memory"
        return f"DurableIdempotency({len(self)} keys, mode={self.mode!r}, in {where})"

    def _repr_html_(self) -> str:
        import html

        where = html.escape(str(self.path)) if self.path is not None else "memory"
        return f"<b>DurableIdempotency</b>: {len(self)} key(s), mode {html.escape(self.mode)}, kept in {where}"


def _frame(records: list[tuple[Any, ...]]) -> pl.DataFrame:
    return pl.DataFrame(records, schema=KEY_SCHEMA, orient="row")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def duplicate_side_effects(store: Any) -> pl.DataFrame:
    """Idempotency keys whose command was carried out more than once, and how often.

    Reads the keys the command bus stamps into event metadata. One append is one run of
    consecutive positions with the same key and the same ``recorded_at`` (a store stamps
    one clock reading on all events of an append); a key with two or more appends is a
    duplicated side effect.

    Returns
    -------
    polars.DataFrame
        ``idempotency_key, command_type, appends, events, duplicates`` (``appends - 1``),
        only the keys with ``appends > 1``, sorted by key.

    Examples
    --------
    >>> import esnotebook as es
    >>> duplicate_side_effects(es.InMemoryEventStore()).height
    0
    """
    lf = store.scan(with_metadata=True).select("position", "recorded_at", "metadata")
    return (
        lf.with_columns(
            pl.col("metadata").str.json_path_match("$.idempotency_key").alias("idempotency_key"),
            pl.col("metadata").str.json_path_match("$.command_type").alias("command_type"),
        )
        .filter(pl.col("idempotency_key").is_not_null())
        .sort("idempotency_key", "position")
        .with_columns(
            (
                (pl.col("idempotency_key") != pl.col("idempotency_key").shift(1))
                | (pl.col("position") != pl.col("position").shift(1) + 1)
                | (pl.col("recorded_at") != pl.col("recorded_at").shift(1))
            ).fill_null(True).alias("_start")
        )
        .group_by("idempotency_key")
        .agg(
            pl.col("command_type").first(),
            pl.col("_start").sum().cast(pl.Int64).alias("appends"),
            pl.len().cast(pl.Int64).alias("events"),
        )
        .filter(pl.col("appends") > 1)
        .with_columns((pl.col("appends") - 1).alias("duplicates"))
        .sort("idempotency_key")
        .collect()
    )
