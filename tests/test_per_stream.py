"""Per-stream array reductions (esnotebook.per_stream) against a polars group-by."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esnotebook.per_stream import StreamGroups, stream_numbers

# Dense numbers (the usual batch) and a few far apart (old streams): both layouts.
NUMBERS = st.one_of(
    st.lists(st.integers(0, 20), min_size=1, max_size=60),
    st.lists(st.sampled_from([3, 10**9, 7 * 10**12]), min_size=1, max_size=20),
)


@settings(max_examples=150, deadline=None)
@given(NUMBERS, st.data())
def test_reductions_equal_a_group_by(numbers, data):
    n = len(numbers)
    values = np.array(data.draw(st.lists(st.integers(-10**9, 10**9), min_size=n, max_size=n)), dtype=np.int64)
    where = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    frame = pl.DataFrame({"s": numbers, "v": values, "w": where, "row": np.arange(n)})
    expected = frame.group_by("s").agg(
        pl.len().alias("count"),
        pl.col("w").sum().alias("count_w"),
        pl.col("v").sum().alias("sum"),
        pl.col("v").filter("w").sum().alias("sum_w"),
        pl.col("v").max().alias("max"),
        pl.col("v").filter("w").max().alias("max_w"),
        pl.col("v").min().alias("min"),
        pl.col("row").min().alias("first"),
        pl.col("row").filter("w").min().alias("first_w"),
    ).sort("s")  # fmt: skip
    g = StreamGroups(np.array(numbers))
    assert len(g) == expected.height
    assert g.streams.tolist() == expected["s"].to_list()
    assert g.count().tolist() == expected["count"].to_list()
    assert g.count(where).tolist() == expected["count_w"].to_list()
    assert g.sum(values).tolist() == expected["sum"].to_list()
    assert g.sum(values, where).tolist() == expected["sum_w"].to_list()
    assert g.max(values).tolist() == expected["max"].to_list()
    lowest = np.iinfo(np.int64).min
    assert g.max(values, where).tolist() == expected["max_w"].fill_null(lowest).to_list()
    assert g.min(values).tolist() == expected["min"].to_list()
    assert g.first_row().tolist() == expected["first"].to_list()
    assert g.first_row(where).tolist() == expected["first_w"].fill_null(-1).to_list()
    # Values in chunks (a polars column's chunks) reduce as the whole array does.
    cut = data.draw(st.integers(0, n))
    chunks = [values[:cut], values[cut:]]
    assert g.sum(chunks).tolist() == g.sum(values).tolist()
    assert g.max(chunks, where).tolist() == g.max(values, where).tolist()
    # The row-number forms agree with the mask forms.
    rows = np.flatnonzero(where)
    assert g.count_at(rows).tolist() == g.count(where).tolist()
    assert g.streams[g.at(rows)].tolist() == [numbers[r] for r in rows]
    firsts = g.first_row(where)
    assert g.place(firsts[firsts >= 0]).tolist() == firsts.tolist()
    # rows_of maps a stream mask back to the rows of those streams.
    pick = np.array(data.draw(st.lists(st.booleans(), min_size=len(g), max_size=len(g))), dtype=bool)
    chosen = set(g.streams[pick].tolist())
    assert g.rows_of(pick).tolist() == [s in chosen for s in numbers]


def test_an_empty_batch_has_no_streams():
    g = StreamGroups(np.array([], dtype=np.int64))
    assert len(g) == 0 and g.sum(np.array([], dtype=np.int64)).tolist() == []


def test_values_must_have_one_entry_per_row():
    with pytest.raises(ValueError, match=r"one entry per row \(3; got 2\)"):
        StreamGroups(np.array([1, 1, 2])).sum(np.array([1, 2]))
    with pytest.raises(ValueError, match=r"one entry per row \(3; got 4\)"):
        StreamGroups(np.array([1, 1, 2])).sum([np.array([1, 2]), np.array([3, 4])])


def test_stream_numbers_come_from_the_store_or_from_stream_ids():
    """The store's column when every row has it; otherwise a dense number per stream id."""
    given_ = pl.DataFrame({"stream_id": ["a", "b", "a"], "stream_number": [5, 9, 5]})
    assert stream_numbers(given_).tolist() == [5, 9, 5]
    made = stream_numbers(pl.DataFrame({"stream_id": ["b", "a", "b"]}))
    assert made[0] == made[2] != made[1]
    partial = pl.DataFrame({"stream_id": ["b", "a"], "stream_number": [None, 4]})
    assert len(set(stream_numbers(partial).tolist())) == 2
