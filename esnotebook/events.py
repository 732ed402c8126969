"""The event model: what a caller appends (:class:`NewEvent`) and what a store returns
(:class:`RecordedEvent`).

Payloads are JSON-compatible dicts: ``str``, ``int``, ``float``, ``bool``, ``None``,
timezone-aware ``datetime``, and lists and nested dicts of those. The store checks each
field against the types already stored for the event type and stores it as a typed column.
"""

from __future__ import annotations

import os
import re
import reprlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from .errors import EventDataError

__all__ = ["CANONICAL_COLUMNS", "NewEvent", "RecordedEvent", "new_id"]

#: The leading columns of every event frame, in order; payload fields follow them.
CANONICAL_COLUMNS: tuple[str, ...] = (
    "position",
    "stream_id",
    "version",
    "event_type",
    "event_id",
    "recorded_at",
    "correlation_id",
    "causation_id",
)

#: Names a payload field may not take: they would collide with the frame's own columns.
#: Names no payload field may take: the canonical columns and what stores keep beside them.
RESERVED_FIELDS: frozenset[str] = frozenset(CANONICAL_COLUMNS) | {"metadata", "stream_number"}

_EVENT_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")


def new_id() -> str:
    """A new random UUID (version 4) as a string.

    Drawn from a pool filled by :func:`new_ids` (one ``os.urandom`` call per 1024 ids):
    ``str(uuid.uuid4())`` would cost more than everything else an in-memory append does.
    """
    try:
        return _ID_POOL.pop()
    except IndexError:
        _ID_POOL.extend(new_ids(1024).astype("U36").tolist())
        return _ID_POOL.pop()


_ID_POOL: list[str] = []
# A forked child must not hand out the ids its parent will also hand out.
os.register_at_fork(after_in_child=_ID_POOL.clear)


# Two hex digits per byte value, as one little-endian uint16 ("ab" -> 0x6261).
_HEX_PAIRS = np.array(
    [int.from_bytes(f"{i:02x}".encode(), "little") for i in range(256)], dtype=np.uint16
)
# (hex digit span, target column) of the five groups of "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx".
_GROUPS = ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24))


def _uuid_bytes(n: int) -> np.ndarray:
    """``n`` random version-4 UUIDs as text, one row of 36 ASCII bytes each."""
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    digits = _HEX_PAIRS[raw].view(np.uint8).reshape(n, 32)
    out = np.empty((n, 36), dtype=np.uint8)
    out[:, [8, 13, 18, 23]] = ord("-")
    for lo, hi, at in _GROUPS:
        out[:, at : at + hi - lo] = digits[:, lo:hi]
    return out


def new_ids(n: int) -> np.ndarray:
    """``n`` random version-4 UUID strings at once, as a numpy array of ``S36``.

    Vectorised: bulk imports need millions of ids in a fraction of a second.
    """
    return _uuid_bytes(n).view("S36").ravel()


def new_id_series(n: int, name: str = "event_id") -> pl.Series:
    """``n`` random version-4 UUID strings as a polars String series (no per-id Python).

    The 36-byte rows become an Arrow string array as they are, offsets every 36 bytes.
    """
    import pyarrow as pa

    text = _uuid_bytes(n)
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int64)
    array = pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(text)])
    return pl.Series(name, array)


def check_text(text: str, where: str) -> str:
    """``text`` if it is valid Unicode, else :class:`EventDataError` naming ``where``.

    A Python ``str`` may hold lone surrogates (``"\\udc80"``, e.g. from
    ``os.fsdecode``); no Parquet or Arrow column can store them.
    """
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            raise EventDataError(
                f"{where} must be valid Unicode text (got {reprlib.repr(text)}, with a lone "
                f"surrogate {text[exc.start]!r} at index {exc.start})"
            ) from None
    return text


_CHECKED_TYPES: set[str] = set()


def check_event_type(event_type: object) -> str:
    if event_type in _CHECKED_TYPES and type(event_type) is str:
        return event_type  # type: ignore[return-value]
    if not isinstance(event_type, str) or not _EVENT_TYPE.match(event_type):
        raise EventDataError(
            "event type must be a name of letters, digits, '_', '.' or '-' starting with a "
            f"letter or '_' (got {event_type!r})"
        )
    if len(_CHECKED_TYPES) < 10_000:  # bounded: names are few, but callers could be odd
        _CHECKED_TYPES.add(event_type)
    return event_type


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: its type and payload, and optionally its ids.

    Parameters
    ----------
    type
        The event type, e.g. ``"OrderPlaced"``.
    data
        The payload, a JSON-compatible dict (see the module docstring).
    metadata
        Free-form JSON-compatible context (user, tenant, ...); stored, not typed.
    event_id
        A UUID string; a new one is made when omitted.
    correlation_id
        The root of the causal chain this event belongs to. When omitted the event starts
        a chain of its own: its correlation id is its own event id.
    causation_id
        The id of the event or command that directly caused this one, if any.

    Examples
    --------
    >>> e = NewEvent("OrderPlaced", {"order_id": "o-1", "customer": "c-7"})
    >>> e.correlation_id == e.event_id
    True
    """

    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] | None = field(default=None, kw_only=True)
    event_id: str | None = field(default=None, kw_only=True)
    correlation_id: str | None = field(default=None, kw_only=True)
    causation_id: str | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        check_event_type(self.type)
        if not isinstance(self.data, dict):
            raise EventDataError(
                f"{self.type}: data must be a dict (got {type(self.data).__name__})"
            )
        if self.metadata is not None and not isinstance(self.metadata, dict):
            raise EventDataError(
                f"{self.type}: metadata must be a dict or None "
                f"(got {type(self.metadata).__name__})"
            )
        if self.event_id is None:
            object.__setattr__(self, "event_id", new_id())
        else:
            object.__setattr__(self, "event_id", _check_uuid("event_id", self.event_id))
        if self.correlation_id is None:
            object.__setattr__(self, "correlation_id", self.event_id)
        elif not isinstance(self.correlation_id, str) or not self.correlation_id:
            raise EventDataError(
                f"correlation_id must be a non-empty string (got {self.correlation_id!r})"
            )
        else:
            check_text(self.correlation_id, "correlation_id")
        if self.causation_id is not None:
            if not isinstance(self.causation_id, str) or not self.causation_id:
                raise EventDataError(
                    f"causation_id must be a non-empty string or None (got {self.causation_id!r})"
                )
            check_text(self.causation_id, "causation_id")


def _check_uuid(name: str, value: object) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        return str(uuid.UUID(value))  # type: ignore[arg-type]
    except (TypeError, ValueError, AttributeError):
        raise EventDataError(f"{name} must be a UUID string (got {value!r})") from None


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as the store recorded it. Immutable.

    ``position`` is global (from 1, no gaps), ``version`` is per stream (from 1, no gaps),
    ``recorded_at`` is a timezone-aware UTC datetime. ``data`` holds every field the store
    knows for this event type; a field this event did not carry is ``None``.
    """

    position: int
    stream_id: str
    version: int
    event_type: str
    event_id: str
    recorded_at: datetime
    correlation_id: str
    causation_id: str | None
    data: dict[str, Any]
    metadata: dict[str, Any]

    @property
    def type(self) -> str:
        """Alias of :attr:`event_type`, matching :attr:`NewEvent.type`."""
        return self.event_type
