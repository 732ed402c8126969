"""The dead-letter queue of a projection runner: events it could not apply, as a dataframe.

An event whose handler (or one-event fold) still raises after the runner's attempts is
*failed*: a row with the error and its traceback. With ``on_error="park"`` the later events
of that stream are *parked* behind it, unapplied, to keep the stream's order; they are
retried with it by :meth:`ProjectionRunner.retry_dead_letters`.
"""

from __future__ import annotations

import html
import traceback as tb
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import polars as pl

from ._schema import UTC_DATETIME

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEAD_LETTER_SCHEMA", "DeadLetterQueue"]

DEAD_LETTER_SCHEMA: dict[str, pl.DataType] = {
    "projection": pl.String(),
    "position": pl.Int64(),
    "stream_id": pl.String(),
    "event_type": pl.String(),
    "status": pl.String(),
    "error_type": pl.String(),
    "message": pl.String(),
    "traceback": pl.String(),
    "attempts": pl.Int64(),
    "first_failure": UTC_DATETIME,
    "last_failure": UTC_DATETIME,
}

Status = Literal["failed", "parked"]


class DeadLetterQueue:
    """Dead letters of one projection, one row per event, in position order.

    Columns: ``projection, position, stream_id, event_type, status`` (``failed`` or
    ``parked``), ``error_type, message, traceback, attempts, first_failure, last_failure``.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> dlq = DeadLetterQueue("OrderSummary")
    >>> now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> dlq.fail(7, "order-1", "ItemAdded", ValueError("bad sku"), attempts=3, first=now, last=now)
    >>> dlq.to_polars().select("position", "error_type", "attempts").row(0)
    (7, 'ValueError', 3)
    """

    def __init__(self, projection: str, frame: pl.DataFrame | None = None) -> None:
        self.projection = projection
        self._rows: dict[int, dict[str, object]] = {}
        if frame is not None:
            for row in frame.iter_rows(named=True):
                self._rows[row["position"]] = row

    # ------------------------------------------------------------------ changes
    def fail(
        self,
        position: int,
        stream_id: str,
        event_type: str,
        error: BaseException,
        *,
        attempts: int,
        first: datetime,
        last: datetime,
    ) -> None:
        """Record (or update) a failed event; a retried one keeps its first failure time."""
        old = self._rows.get(position)
        if old is not None and old["status"] == "failed":
            first = old["first_failure"]  # type: ignore[assignment]
            attempts += old["attempts"]  # type: ignore[operator]
        self._rows[position] = {
            "projection": self.projection, "position": position, "stream_id": stream_id,
            "event_type": event_type, "status": "failed", "error_type": type(error).__name__,
            "message": str(error),
            "traceback": "".join(tb.format_exception(type(error), error, error.__traceback__)),
            "attempts": attempts, "first_failure": first, "last_failure": last,
        }  # fmt: skip

    def park(self, position: int, stream_id: str, event_type: str, *, at: datetime) -> None:
        """Record an event held back because an earlier event of its stream failed."""
        if position in self._rows:
            return
        self._rows[position] = {
            "projection": self.projection, "position": position, "stream_id": stream_id,
            "event_type": event_type, "status": "parked", "error_type": None,
            "message": "parked behind an earlier failed event of this stream",
            "traceback": None, "attempts": 0, "first_failure": at, "last_failure": at,
        }  # fmt: skip

    def remove(self, position: int) -> None:
        """Forget a dead letter (it has been applied)."""
        self._rows.pop(position, None)

    def drop_after(self, checkpoint: int) -> None:
        """Forget dead letters past ``checkpoint``: those events will be read again."""
        for p in [p for p in self._rows if p > checkpoint]:
            del self._rows[p]

    def clear(self) -> None:
        self._rows.clear()

    def copy(self) -> DeadLetterQueue:
        other = DeadLetterQueue(self.projection)
        other._rows = dict(self._rows)
        return other

    # ------------------------------------------------------------------ reads
    @property
    def positions(self) -> list[int]:
        """Positions of the dead letters, ascending."""
        return sorted(self._rows)

    @property
    def blocked_streams(self) -> set[str]:
        """Streams with a dead letter (their later events park when parking is on)."""
        return {r["stream_id"] for r in self._rows.values()}  # type: ignore[misc]

    def status_of(self, position: int) -> Status | None:
        row = self._rows.get(position)
        return None if row is None else row["status"]  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self._rows)

    def to_polars(self) -> pl.DataFrame:
        """The dead letters as a polars frame, by position."""
        rows = [self._rows[p] for p in sorted(self._rows)]
        return pl.DataFrame(rows, schema=DEAD_LETTER_SCHEMA, orient="row") if rows else pl.DataFrame(
            schema=DEAD_LETTER_SCHEMA
        )

    def to_pandas(self) -> pd.DataFrame:
        return self.to_polars().to_pandas()

    def __repr__(self) -> str:
        failed = sum(r["status"] == "failed" for r in self._rows.values())
        return f"DeadLetterQueue({self.projection!r}, failed={failed}, parked={len(self) - failed})"

    def _repr_html_(self) -> str:
        head = f"<b>DeadLetterQueue</b> {html.escape(self.projection)}: {len(self)} event(s)"
        if not self._rows:
            return head
        cols = ["position", "stream_id", "event_type", "status", "error_type", "message", "attempts"]
        shown = self.to_polars().select(cols).head(10)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_short(v))}</td>" for v in row) + "</tr>"
            for row in shown.iter_rows()
        )
        more = f"<br><i>... {len(self) - 10} more</i>" if len(self) > 10 else ""
        header = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        return f"{head}<table><tr>{header}</tr>{body}</table>{more}"


def _short(value: object, limit: int = 80) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
