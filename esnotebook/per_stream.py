"""Per-stream reductions of an event batch as array operations, keyed by stream number.

A read model with one row per stream (per order, per account) aggregates every event of a
batch into its stream's row. A hash group-by on the string ``stream_id`` spends most of its
time hashing and comparing strings; the store also keeps a dense integer per stream
(``stream_number``, see :meth:`~esnotebook.InMemoryEventStore.scan`), and with it each
aggregate is one unbuffered ``numpy.add.at`` / ``maximum.at`` into an array indexed by
stream: on the 2-core development machine about 20 ms per aggregate over 10 M events,
against about 100 ms for the same aggregate in a polars group-by with ~2 M groups.

Examples
--------
>>> import numpy as np
>>> g = StreamGroups(np.array([7, 3, 7, 7]))
>>> g.streams.tolist(), g.count().tolist()
([3, 7], [1, 3])
>>> g.sum(np.array([1, 10, 2, 4])).tolist()
[10, 7]
>>> g.first_row(np.array([False, True, True, False])).tolist()
[1, 2]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

__all__ = ["StreamGroups", "stream_numbers"]

_NONE = -1


def stream_numbers(events: pl.DataFrame) -> np.ndarray:
    """Each row's stream number: the ``stream_number`` column the store gives, or else a
    dense number made from ``stream_id`` (slower: it hashes the strings)."""
    if "stream_number" in events.columns and not events.get_column("stream_number").has_nulls():
        return events.get_column("stream_number").to_numpy()
    return events.get_column("stream_id").rank("dense").to_numpy().astype(np.int64)


class StreamGroups:
    """The rows of a batch grouped by their stream number.

    Every reduction returns one value per stream present in the batch, in the order of
    :attr:`streams` (ascending stream number). ``values`` is one array per row, or its
    chunks in row order (a polars column's chunks, without copying them into one array).
    ``where`` selects the rows that take part; a stream without such rows gets the
    reduction's empty value.

    Parameters
    ----------
    numbers
        The stream number of each row (non-negative integers).
    """

    def __init__(self, numbers: np.ndarray) -> None:
        numbers = np.asarray(numbers, dtype=np.int64)
        self.rows = len(numbers)
        lo = int(numbers.min()) if self.rows else 0
        hi = int(numbers.max()) if self.rows else -1
        if hi - lo <= 4 * self.rows:
            # The numbers of a batch lie close together (streams are numbered as they are
            # created): index a dense array by them directly.
            self._index, self._size = numbers - lo, hi - lo + 1
            labels = np.arange(lo, hi + 1, dtype=np.int64)
        else:
            # A few streams far apart: index by their rank instead.
            labels, self._index = np.unique(numbers, return_inverse=True)
            self._size = len(labels)
        counts = np.bincount(self._index, minlength=self._size)
        self._present = np.flatnonzero(counts)
        self._counts = counts[self._present]
        #: The stream numbers present in the batch, ascending.
        self.streams: np.ndarray = labels[self._present]

    def __len__(self) -> int:
        return len(self._present)

    def count(self, where: np.ndarray | None = None) -> np.ndarray:
        """Rows per stream (those where ``where`` is true)."""
        if where is None:
            return self._counts.copy()
        return self._reduce(np.add, where.astype(np.int64), None, 0)

    def at(self, rows: np.ndarray) -> np.ndarray:
        """The group (index into :attr:`streams`) of each of ``rows`` (row numbers)."""
        return np.searchsorted(self._present, self._index[rows])

    def count_at(self, rows: np.ndarray) -> np.ndarray:
        """Per stream, how many of ``rows`` (row numbers) are its: cheaper than a mask
        over every row when the rows are few."""
        return np.bincount(self._index[rows], minlength=self._size)[self._present]

    def place(self, rows: np.ndarray) -> np.ndarray:
        """Per stream, which of ``rows`` (row numbers, at most one per stream, ascending) is
        its, ``-1`` where none is."""
        full = np.full(self._size, _NONE, dtype=np.int64)
        full[self._index[rows]] = rows
        return full[self._present]

    def sum(self, values: np.ndarray | Sequence[np.ndarray], where: np.ndarray | None = None) -> np.ndarray:
        """The sum of ``values`` per stream (0 for a stream without selected rows)."""
        return self._reduce(np.add, values, where, 0)

    def max(self, values: np.ndarray | Sequence[np.ndarray], where: np.ndarray | None = None) -> np.ndarray:
        """The largest of ``values`` per stream (the dtype's minimum where none)."""
        return self._reduce(np.maximum, values, where, _lowest(_dtype(values)))

    def min(self, values: np.ndarray | Sequence[np.ndarray], where: np.ndarray | None = None) -> np.ndarray:
        """The smallest of ``values`` per stream (the dtype's maximum where none)."""
        return self._reduce(np.minimum, values, where, _highest(_dtype(values)))

    def rows_of(self, selected: np.ndarray) -> np.ndarray:
        """A row mask from a stream mask: the rows whose stream is selected (``selected``
        has one entry per stream, in the order of :attr:`streams`)."""
        full = np.zeros(self._size, dtype=bool)
        full[self._present[selected]] = True
        return full[self._index]

    def first_row(self, where: np.ndarray | None = None) -> np.ndarray:
        """The index of each stream's first selected row, ``-1`` where it has none."""
        rows = np.arange(self.rows, dtype=np.int64)
        first = self._reduce(np.minimum, rows, where, self.rows)
        first[first == self.rows] = _NONE
        return first

    def _reduce(
        self, ufunc: np.ufunc, values: np.ndarray | Sequence[np.ndarray], where: np.ndarray | None, empty: object
    ) -> np.ndarray:
        # ``values`` may come in chunks (the chunks of a polars column, in row order): each is
        # reduced as it is, which spares copying a long column into one array.
        parts = [values] if isinstance(values, np.ndarray) else list(values)
        if sum(len(p) for p in parts) != self.rows:
            raise ValueError(f"values must have one entry per row ({self.rows}; got {sum(len(p) for p in parts)})")
        out = np.full(self._size, empty, dtype=parts[0].dtype if parts else np.int64)
        at = 0
        for part in parts:
            index = self._index[at : at + len(part)]
            if where is not None:
                # The reduction's identity where a row does not take part: one pass over
                # every row is cheaper than gathering the selected rows and their indices.
                part = np.where(where[at : at + len(part)], part, empty)
            ufunc.at(out, index, part)
            at += len(part)
        return out[self._present]


def _dtype(values: np.ndarray | Sequence[np.ndarray]) -> np.dtype:
    return values.dtype if isinstance(values, np.ndarray) else (values[0].dtype if len(values) else np.dtype(np.int64))


def _lowest(dtype: np.dtype) -> object:
    return np.iinfo(dtype).min if np.issubdtype(dtype, np.integer) else -np.inf


def _highest(dtype: np.dtype) -> object:
    return np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else np.inf
