"""The in-memory event store: the reference backend, and the fast one for teaching and tests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from itertools import islice

import polars as pl

from .._schema import Schema
from ..events import RecordedEvent
from ._frames import HEADER_SCHEMA, events_from_frame, frame_from_events
from .base import READ_CHUNK, Clock, StoreBase, _check_int, _check_stream_id

__all__ = ["InMemoryEventStore"]

#: Consecutive small commits are merged into segments of up to this many events, so that a
#: store fed one command at a time does not end up as thousands of tiny frames.
_MERGE_BELOW = 65_536


@dataclass(slots=True)
class _Segment:
    """A run of consecutive positions, held as objects, as one event frame, or both.

    The frame holds the header and the union of the fields of its event types, in position
    order, so the store's frame is the segments' frames stacked: no sort.
    """

    first: int
    last: int
    events: list[RecordedEvent] | None = None
    frame: pl.DataFrame | None = None


class InMemoryEventStore(StoreBase):
    """An event store held in memory.

    Events appended one command at a time are kept as objects (fast to append and to read
    back by stream); frames appended in bulk stay columnar. :meth:`scan` turns both into
    typed frames lazily, so analysis over millions of events costs no Python loop.

    Parameters
    ----------
    clock
        Returns the ``recorded_at`` of new events (default: now, UTC). Tests and
        simulations pass a fake clock.

    Examples
    --------
    >>> import esnotebook as es
    >>> store = es.InMemoryEventStore()
    >>> _ = store.append("order-1", [es.NewEvent("OrderPlaced", {"customer": "c-1"})],
    ...                  expected_version=0)
    >>> store.stream_version("order-1"), len(store)
    (1, 1)
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self._versions = {}
        self._segments: list[_Segment] = []
        self._tail: list[RecordedEvent] = []  # committed objects not yet in a segment
        self._tail_numbers: list[int] = []  # their stream numbers
        self._by_stream: dict[str, list[RecordedEvent]] = {}
        self._frame_streams: dict[str, tuple[_Segment, ...]] = {}

    def _writing(self) -> AbstractContextManager[None]:
        return self._mutex  # type: ignore[return-value]

    # ------------------------------------------------------------------ commits
    def _commit_events(
        self, events: list[RecordedEvent], schemas: dict[str, Schema], stream_number: int
    ) -> None:
        self._tail.extend(events)
        self._tail_numbers.extend([stream_number] * len(events))
        self._by_stream.setdefault(events[0].stream_id, []).extend(events)

    def _commit_frame(
        self, frame: pl.DataFrame, first: int, last: int, schemas: dict[str, Schema]
    ) -> None:
        self._seal()
        streams = frame.get_column("stream_id").unique().to_list()
        segment = _Segment(first, last, frame=frame)
        self._segments.append(segment)
        index = self._frame_streams
        known = {s: index[s] for s in streams if s in index}
        # Bulk imports bring mostly new streams: one shared tuple for all of them is cheap.
        index.update(dict.fromkeys(streams, (segment,)))
        for s, before in known.items():
            index[s] = (*before, segment)

    def _seal(self) -> None:
        """Move the object tail into a segment with an event frame (built once, here).

        Small segments merge like a binary counter: the new one absorbs the one before it
        while that one is no longer than it (and both are object segments under
        ``_MERGE_BELOW`` events). Segment sizes then halve towards the head, so an event is
        copied at most log2(_MERGE_BELOW) = 16 times over its life, a store fed one event at a
        time holds at most 17 segments per 65,536 events, and the newest events sit in
        small ones (what a consumer reads next). Every frame is one chunk. Merges make new
        segments: a reader holding the old ones keeps reading them unchanged.

        The tail is detached only once its frame is built: if building it fails, every
        event stays readable from the tail.
        """
        tail = self._tail
        if not tail:
            return
        union = self._field_union()
        names = dict.fromkeys(f for t in dict.fromkeys(e.event_type for e in tail) for f in self._schemas[t])
        new = _Segment(tail[0].position, tail[-1].position, events=tail,
                       frame=frame_from_events(tail, {f: union[f] for f in names}, self._tail_numbers))  # fmt: skip
        self._tail, self._tail_numbers = [], []
        segments = self._segments
        while segments and _absorbs(new, segments[-1]):
            prev = segments.pop()
            assert prev.frame is not None and new.frame is not None
            frame = pl.concat(_aligned([prev.frame, new.frame], _union_schema(prev.frame, new.frame)), rechunk=True)
            new = _Segment(prev.first, new.last, events=[*prev.events, *new.events], frame=frame)  # type: ignore[misc]
        segments.append(new)

    # ------------------------------------------------------------------ reads
    def _events_frame(self, start: int = 0, end: int | None = None) -> pl.LazyFrame | None:
        with self._mutex:
            self._seal()
            if not self._segments:
                return None
            target = {**HEADER_SCHEMA, **self._field_union()}
            parts = [s.frame for s in self._segments
                     if s.frame is not None and s.last > start and (end is None or s.first <= end)]  # fmt: skip
        if not parts:
            return pl.LazyFrame(schema=target)
        return pl.concat(_aligned(parts, target), how="vertical", rechunk=False).lazy()

    def read_stream(
        self, stream_id: str, *, from_version: int = 1, to_version: int | None = None
    ) -> list[RecordedEvent]:
        hi = self._check_range(stream_id, from_version, to_version)
        with self._mutex:
            objects = self._by_stream.get(stream_id, [])
            count = len(objects)  # the list grows in place: this read sees these many
            segments = list(self._frame_streams.get(stream_id, ()))
        out: list[RecordedEvent] = []
        if segments:
            pred = (pl.col("stream_id") == stream_id) & pl.col("version").is_between(from_version, hi)
            for seg in segments:
                assert seg.frame is not None
                out.extend(events_from_frame(seg.frame.filter(pred), self._schemas))
        if count:
            first = objects[0].version
            if objects[count - 1].version - first == count - 1:
                # Versions without gaps (no append_frame in between): the wanted ones are a slice.
                lo = max(from_version - first, 0)
                out.extend(objects[lo : min(max(hi - first + 1, 0), count)])
            else:
                out.extend(e for e in islice(objects, count) if from_version <= e.version <= hi)
        out = [self._complete(e) for e in out]
        out.sort(key=lambda e: e.version)
        return out

    def _check_range(self, stream_id: str, from_version: int, to_version: int | None) -> int:
        _check_stream_id(stream_id)
        _check_int("from_version", from_version, 1)
        if to_version is not None:
            _check_int("to_version", to_version, 0)
            return to_version
        return 2**62

    def _iter_frames(self, types: list[str] | None, start: int, end: int) -> Iterator[RecordedEvent]:
        wanted = set(types or ())
        everything = types is None
        with self._mutex:
            # Sealing replaces segments, never changes one: these stay as they are now.
            segments = [(seg, seg.last) for seg in self._segments]
            tail = list(self._tail)
        for seg, last in segments:
            if last <= start or seg.first > end:
                continue
            if seg.events is not None:
                for e in islice(seg.events, max(start + 1 - seg.first, 0), min(end, last) + 1 - seg.first):
                    if everything or e.event_type in wanted:
                        yield self._complete(e)
            else:
                yield from self._frame_events(seg, types, max(start, seg.first - 1), min(end, last))
        for e in tail:
            if start < e.position <= end and (everything or e.event_type in wanted):
                yield self._complete(e)

    def _frame_events(
        self, seg: _Segment, types: Sequence[str] | None, start: int, end: int
    ) -> Iterator[RecordedEvent]:
        assert seg.frame is not None
        kinds = None if types is None else pl.col("event_type").is_in(list(types))
        lo = start
        while lo < end:
            hi = min(lo + READ_CHUNK, end)
            # Positions run from seg.first without gaps: the chunk is a slice of the frame.
            part = seg.frame.slice(lo + 1 - seg.first, hi - lo)
            if kinds is not None:
                part = part.filter(kinds)
            yield from events_from_frame(part, self._schemas)
            lo = hi


def _absorbs(new: _Segment, prev: _Segment) -> bool:
    """Whether sealing merges ``prev`` into the ``new`` segment after it (see ``_seal``)."""
    if prev.events is None or new.events is None:
        return False
    return len(prev.events) <= len(new.events) and len(prev.events) + len(new.events) <= _MERGE_BELOW


def _union_schema(*frames: pl.DataFrame) -> dict[str, pl.DataType]:
    out: dict[str, pl.DataType] = {}
    for f in frames:
        for name, dtype in f.schema.items():
            if name not in out or isinstance(out[name], pl.Null):
                out[name] = dtype
    return out


def _aligned(parts: list[pl.DataFrame], target: dict[str, pl.DataType]) -> list[pl.DataFrame]:
    """``parts`` with exactly the columns of ``target``, in its order and types."""
    return [
        p if p.schema == target else p.select(
            pl.col(c).cast(dt) if c in p.columns else pl.lit(None, dt).alias(c) for c, dt in target.items()
        )
        for p in parts
    ]  # fmt: skip
