"""A bounded cache of whole streams' events, least recently used first out.

The Parquet store keeps the events a process committed (and the streams it read whole) so
that loading an aggregate right after saving it reads no file. An entry always holds a
stream from version 1 without gaps; the store extends it, or drops it when it cannot.
"""

from __future__ import annotations

from collections import OrderedDict

from ..events import RecordedEvent

__all__ = ["StreamCache"]


class StreamCache:
    """Stream id -> its events from version 1, at most ``limit`` events in all.

    Not thread-safe on its own: the store calls it under its mutex.

    Examples
    --------
    >>> cache = StreamCache(limit=10)
    >>> cache.get("order-1") is None
    True
    """

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        self._streams: OrderedDict[str, list[RecordedEvent]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def get(self, stream_id: str) -> list[RecordedEvent] | None:
        held = self._streams.get(stream_id)
        if held is not None:
            self._streams.move_to_end(stream_id)
        return held

    def put(self, stream_id: str, events: list[RecordedEvent]) -> None:
        """Hold ``events`` (the whole stream, from version 1) for ``stream_id``."""
        self.drop(stream_id)
        self._streams[stream_id] = events
        self._size += len(events)
        self._trim()

    def extend(self, stream_id: str, events: list[RecordedEvent]) -> None:
        """Add the events that follow a held stream; drop the stream if they do not."""
        held = self._streams.get(stream_id)
        if events and events[0].version == 1:
            self.put(stream_id, list(events))
        elif held is not None and events and held[-1].version == events[0].version - 1:
            held.extend(events)
            self._size += len(events)
            self._streams.move_to_end(stream_id)
            self._trim()
        else:
            self.drop(stream_id)

    def drop(self, stream_id: str) -> None:
        held = self._streams.pop(stream_id, None)
        if held is not None:
            self._size -= len(held)

    def _trim(self) -> None:
        while self._size > self.limit and len(self._streams) > 1:
            _, dropped = self._streams.popitem(last=False)
            self._size -= len(dropped)
