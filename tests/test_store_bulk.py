"""Bulk import (``append_frame``): the vectorised numbering of streams, and that one bulk
import gives the same store as the equivalent loop of single appends."""

from __future__ import annotations

from datetime import datetime, timezone

import hypothesis.strategies as st
import numpy as np
import polars as pl
from hypothesis import given, settings
from polars.testing import assert_frame_equal

from esnotebook.events import NewEvent
from esnotebook.store import InMemoryEventStore
from esnotebook.store._intake import _number_streams

STREAM_LISTS = st.lists(st.sampled_from(["a", "b", "c", "order-1", "order-22", ""]), min_size=1, max_size=60)


def naive_numbering(streams: list[str]):
    seen: dict[str, int] = {}
    within = []
    for s in streams:
        seen[s] = seen.get(s, 0) + 1
        within.append(seen[s])
    return within, list(seen), list(seen.values())


@given(STREAM_LISTS)
def test_rows_are_numbered_per_stream_in_frame_order(streams):
    within, run_of_row, names, counts = _number_streams(pl.Series(streams, dtype=pl.String))
    want_within, want_names, want_counts = naive_numbering(streams)
    assert within.tolist() == want_within
    assert names.to_list() == want_names and counts.tolist() == want_counts
    assert [want_names[r] for r in run_of_row] == streams


@given(STREAM_LISTS)
@settings(max_examples=40)
def test_numbering_stays_exact_when_every_hash_collides(streams):
    """A 64-bit hash collision must never merge two streams: the strings decide."""
    original = pl.Series.hash
    try:
        pl.Series.hash = lambda self, seed=0, *a: pl.Series(np.zeros(self.len(), dtype=np.uint64))
        within, _, names, counts = _number_streams(pl.Series(streams, dtype=pl.String))
    finally:
        pl.Series.hash = original
    want_within, want_names, want_counts = naive_numbering(streams)
    assert within.tolist() == want_within and names.to_list() == want_names
    assert counts.tolist() == want_counts


ROWS = st.lists(
    st.tuples(st.sampled_from(["s1", "s2", "s3"]), st.sampled_from(["A", "B"]), st.integers(-9, 9)),
    min_size=1, max_size=25,
)  # fmt: skip


@given(ROWS, ROWS)
@settings(max_examples=60, deadline=None)
def test_append_frame_equals_the_loop_of_single_appends(before, rows):
    clock = lambda: datetime(2026, 1, 1, tzinfo=timezone.utc)  # noqa: E731
    bulk, loop = InMemoryEventStore(clock=clock), InMemoryEventStore(clock=clock)
    first = [NewEvent(t, {"x": x}) for _, t, x in before]
    for store in (bulk, loop):
        for (s, _, _), e in zip(before, first):
            store.append(s, [e])
    ids = [str(NewEvent("A", {}).event_id) for _ in rows]
    bulk.append_frame(pl.DataFrame({
        "stream_id": [s for s, _, _ in rows], "event_type": [t for _, t, _ in rows],
        "event_id": ids, "x": [x for _, _, x in rows],
    }))  # fmt: skip
    for (s, t, x), eid in zip(rows, ids):
        loop.append(s, [NewEvent(t, {"x": x}, event_id=eid)])
    skip = ["event_id", "correlation_id"]
    assert_frame_equal(bulk.to_polars().drop(skip).head(len(before)), loop.to_polars().drop(skip).head(len(before)))
    assert_frame_equal(bulk.to_polars().drop(skip), loop.to_polars().drop(skip))
    assert bulk.streams() == loop.streams()
    for s in loop.streams():
        assert bulk.read_stream(s) == loop.read_stream(s)
