"""What an import hands back (:class:`ImportReport`) and what a refused import raises
(:class:`ImportRefusedError`).

Both carry the same *problems frame*, one row per bad input row: ``line`` (1-based line of
the file, or the stored event's notification id), ``stream_id`` (when it could be read) and
``reason``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from ..errors import EventDataError

if TYPE_CHECKING:
    import pandas as pd

    from ..store.base import EventStore

__all__ = ["ImportRefusedError", "ImportReport", "problems_frame"]

PROBLEM_SCHEMA: dict[str, pl.DataType] = {
    "line": pl.Int64(),
    "stream_id": pl.String(),
    "reason": pl.String(),
}

#: Problems quoted in an exception message; the rest are in ``.problems``.
_QUOTED = 10


def problems_frame(rows: list[tuple[int, str | None, str]]) -> pl.DataFrame:
    """The problems frame of ``(line, stream_id, reason)`` tuples, in line order."""
    return pl.DataFrame(rows, schema=PROBLEM_SCHEMA, orient="row").sort("line")


def describe(problems: pl.DataFrame, limit: int = _QUOTED) -> str:
    lines = [f"  line {line}: {reason}" for line, _, reason in problems.head(limit).iter_rows()]
    if problems.height > limit:
        lines.append(f"  ... and {problems.height - limit} more (see .problems)")
    return "\n".join(lines)


class ImportRefusedError(EventDataError):
    """An import found bad rows and, as asked (``on_error="refuse"``), imported nothing.

    ``problems`` is a polars DataFrame with one row per bad row: ``line``, ``stream_id``
    and ``reason``.
    """

    def __init__(self, source: str, problems: pl.DataFrame) -> None:
        self.source = source
        self.problems = problems
        super().__init__(
            f"{source}: {problems.height} bad row(s); nothing was imported "
            "(pass on_error='reject' to import the good rows and write the bad ones to a "
            f"rejects file):\n{describe(problems)}"
        )


@dataclass(frozen=True, slots=True)
class ImportReport:
    """The outcome of an import: what went in, what was rejected and where it went.

    Attributes
    ----------
    source
        What was read (a file path or a database description).
    store
        The store the events went into.
    positions
        The store positions the imported events were given (``range``).
    problems
        One row per rejected input row: ``line``, ``stream_id``, ``reason``.
    rejects_path
        The file the rejected rows were written to, or ``None`` when nothing was rejected.

    Examples
    --------
    >>> import esnotebook.importers as imp, polars as pl
    >>> report = imp.ImportReport("x.jsonl", None, range(1, 4), imp.problems_frame([]), None)
    >>> report.imported, report.rejected
    (3, 0)
    """

    source: str
    store: EventStore | None
    positions: range
    problems: pl.DataFrame
    rejects_path: str | None

    @property
    def imported(self) -> int:
        """How many events were imported."""
        return len(self.positions)

    @property
    def rejected(self) -> int:
        """How many input rows were rejected."""
        return self.problems.height

    def to_polars(self) -> pl.DataFrame:
        """The problems frame (empty when every row was imported)."""
        return self.problems

    def to_pandas(self) -> pd.DataFrame:
        """The problems frame as pandas."""
        return self.problems.to_pandas()

    def __repr__(self) -> str:
        span = f"{self.positions.start}..{self.positions.stop - 1}" if self.positions else "none"
        return (
            f"ImportReport(source={self.source!r}, imported={self.imported}, "
            f"positions={span}, rejected={self.rejected}, rejects_path={self.rejects_path!r})"
        )

    def _repr_html_(self) -> str:
        rows: list[tuple[str, Any]] = [
            ("source", self.source),
            ("imported", self.imported),
            (
                "positions",
                f"{self.positions.start}..{self.positions.stop - 1}" if self.positions else "none",
            ),
            ("rejected", self.rejected),
        ]
        if self.rejects_path:
            rows.append(("rejects file", self.rejects_path))
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        shown = "".join(
            f"<tr><td>{line}</td><td>{html.escape(str(sid or ''))}</td><td style='text-align:left'>"
            f"{html.escape(reason)}</td></tr>"
            for line, sid, reason in self.problems.head(_QUOTED).iter_rows()
        )
        more = ""
        if self.problems.height:
            more = (
                "<table><tr><th>line</th><th>stream</th><th>reason</th></tr>" + shown + "</table>"
            )
            if self.problems.height > _QUOTED:
                more += f"<i>{self.problems.height - _QUOTED} more in .problems</i>"
        return f"<b>ImportReport</b><table>{body}</table>{more}"
