"""The per-order numbers of a batch of order events, computed as array reductions.

:class:`~esnotebook.OrderSummaryFrame` folds a batch into its state in two steps: a
*delta* per order (what the batch adds), then a merge with the state. This module computes
the delta with :class:`~esnotebook.per_stream.StreamGroups` (one array reduction per
column, keyed by stream number) instead of a polars group-by on the order id; the merge is
shared with the lazy path. Both give the same delta for every batch in which each order's
events are in that order's own stream (as the ``Order`` aggregate writes them).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from .._schema import UTC_DATETIME
from ..per_stream import StreamGroups, stream_numbers
from ..projections import ProjectionError
from .orders import _CODE_STATUS, _KIND_STATUS, ORDER_EVENTS

__all__ = ["order_deltas", "with_row_numbers"]

#: Each order event type's code in the ``_kind`` column; other types get ``len(ORDER_EVENTS)``.
_CODE = {name: i for i, name in enumerate(ORDER_EVENTS)}
_OTHER = len(ORDER_EVENTS)


def with_row_numbers(events: pl.LazyFrame) -> pl.LazyFrame:
    """``events`` with the integer columns :func:`order_deltas` reduces, computed while the
    events are read (in parallel, on data still in cache):

    ``_kind`` (:data:`_CODE`), ``_items``
    (units added or removed), ``_added`` (value added), ``_paid``, ``_status`` (``position
    * 8`` + the status code of a status-changing event, else -1) and ``_recorded_us``.
    """
    # Each type string is compared once, into a small code (cheaper than a cast to Enum).
    code: pl.Expr = pl.lit(_OTHER, pl.UInt8)
    for name, i in _CODE.items():
        code = pl.when(pl.col("event_type") == name).then(pl.lit(i, pl.UInt8)).otherwise(code)
    k = pl.col("_kind")
    added, removed = k == _CODE["ItemAdded"], k == _CODE["ItemRemoved"]
    status = pl.lit(_KIND_STATUS.fill_null(-1)).gather(k)
    zero = pl.lit(0, pl.Int64)
    # A missing number counts as 0, as in the lazy fold's sums (which skip nulls).
    return events.with_columns(code.alias("_kind")).with_columns(
        pl.when(added).then(pl.col("quantity")).when(removed).then(-pl.col("quantity")).otherwise(zero)
        .fill_null(0).alias("_items"),
        pl.when(added).then(pl.col("quantity") * pl.col("price")).otherwise(zero).fill_null(0).alias("_added"),
        pl.when(k == _CODE["PaymentReceived"]).then(pl.col("amount")).otherwise(zero).fill_null(0).alias("_paid"),
        # The latest status-changing event wins: the largest position * 8 + its status code.
        pl.when(status >= 0).then(pl.col("position") * 8 + status).otherwise(pl.lit(-1, pl.Int64)).alias("_status"),
        pl.col("recorded_at").dt.epoch("us").alias("_recorded_us"),
    )  # fmt: skip


def order_deltas(ev: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, StreamGroups, np.ndarray]:
    """The batch's order events, their delta frame, their stream groups, and which rows are
    item events (added or removed).

    ``ev`` holds a batch of events with the columns of :func:`with_row_numbers`; those not
    of ``ORDER_EVENTS`` are dropped. The delta has one row per order in the batch, in
    stream-number order, with the columns of the lazy path's group-by.
    """
    known = ev.get_column("_kind") < _OTHER
    if not known.all():
        ev = ev.filter(known)
    groups = StreamGroups(stream_numbers(ev))
    kind = ev.get_column("_kind").to_numpy()
    # The integer columns as numpy views of their chunks, reduced chunk by chunk: joining
    # them into one array each would copy every column (most of the time of a fold).
    col = {
        name.lstrip("_"): [chunk.to_numpy() for chunk in ev.get_column(name).get_chunks()]
        for name in ("_items", "_added", "_paid", "_status", "position", "_recorded_us")
    }

    # OrderPlaced rows are few: work on their row numbers only.
    placed_rows = np.flatnonzero(kind == _CODE["OrderPlaced"])
    placed_count = groups.count_at(placed_rows)
    if (placed_count > 1).any():
        row = placed_rows[np.isin(groups.at(placed_rows), np.flatnonzero(placed_count > 1))][0]
        raise ProjectionError(
            f"order {ev['order_id'][int(row)]!r} was placed more than once in one batch "
            f"(expected one OrderPlaced per order; the first at position {ev['position'][int(row)]})"
        )
    latest = groups.max(col["status"])
    has_status = latest >= 0
    placed_row = groups.place(placed_rows)
    # An order's id comes from its OrderPlaced, or (placed in an earlier batch) its first event.
    id_row = placed_row if (placed_row >= 0).all() else np.where(placed_row >= 0, placed_row, groups.first_row())

    def at_rows(columns: list[str], rows: np.ndarray) -> list[pl.Expr]:
        """The values of ``columns`` at ``rows`` (null where a row is -1)."""
        picked = pl.col(columns).gather(np.maximum(rows, 0))
        return [pl.when(pl.lit(pl.Series(rows >= 0))).then(picked)] if (rows < 0).any() else [picked]

    status_name = pl.Series(np.where(has_status, latest % 8, 0)).replace_strict(
        _CODE_STATUS, default=None, return_dtype=pl.String
    )
    # One parallel pass picks every value the delta takes from a single row.
    order_id, customer, placed_at, first_position = ev.select(
        *at_rows(["order_id"], id_row), *at_rows(["customer", "recorded_at", "position"], placed_row)
    ).get_columns()
    delta = pl.DataFrame({
        "order_id": order_id,
        "new_customer": customer,
        "new_placed_at": placed_at,
        "new_first_position": first_position,
        "new_status": status_name,
        "d_items": groups.sum(col["items"]),
        "d_added": groups.sum(col["added"]),
        "d_paid": groups.sum(col["paid"]),
        "d_failed": groups.count_at(np.flatnonzero(kind == _CODE["PaymentFailed"])),
        "has_removal": groups.count_at(np.flatnonzero(kind == _CODE["ItemRemoved"])) > 0,
        "new_updated_at": pl.Series(groups.max(col["recorded_us"])).cast(UTC_DATETIME),
        "new_position": groups.max(col["position"]),
    })  # fmt: skip
    item_event = (kind == _CODE["ItemAdded"]) | (kind == _CODE["ItemRemoved"])
    return ev, delta, groups, item_event

