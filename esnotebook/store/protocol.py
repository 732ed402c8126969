"""The :class:`EventStore` protocol: what every event-store backend offers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import polars as pl

from ..events import NewEvent, RecordedEvent

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EventStore"]


@runtime_checkable
class EventStore(Protocol):
    """What every event store offers. See :class:`InMemoryEventStore` for the semantics."""

    def append(
        self, stream_id: str, events: Iterable[NewEvent], *, expected_version: int | None = None
    ) -> list[RecordedEvent]: ...

    def append_frame(self, frame: pl.DataFrame) -> range: ...

    def read_stream(
        self, stream_id: str, *, from_version: int = 1, to_version: int | None = None
    ) -> list[RecordedEvent]: ...

    def read_all(
        self,
        *,
        from_position: int = 0,
        to_position: int | None = None,
        event_types: Sequence[str] | None = None,
    ) -> Iterator[RecordedEvent]: ...

    def stream_version(self, stream_id: str) -> int: ...

    def streams(self) -> list[str]: ...

    @property
    def head_position(self) -> int: ...

    def __len__(self) -> int: ...

    def scan(
        self,
        *,
        event_types: Sequence[str] | None = None,
        from_position: int = 0,
        to_position: int | None = None,
        with_metadata: bool = False,
        with_stream_number: bool = False,
    ) -> pl.LazyFrame: ...

    def to_polars(self, **kwargs: Any) -> pl.DataFrame: ...

    def to_pandas(self, **kwargs: Any) -> pd.DataFrame: ...
