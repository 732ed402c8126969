"""The per-order numbers of a batch of order events, computed as array reductions.

:class:`~esnotebook.OrderSummaryFrame` folds a batch into its state in two steps: a
*delta* per order (what the batch adds), then a merge with the state. This module computes
the delta with :class:`~esnotebook.per_stream.StreamGroups` (one array reduction per
column, keyed by stream number) instead of a polars group-by on the order id; the merge is
shared with the lazy path. Both give the same delta for every batch in which each order's
events are in that order's own stream (as the ``Order`` aggregate writes them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from ._schema import UTC_DATETIME
from .per_stream import StreamGroups, stream_numbers
from .projections import ProjectionError

__all__ = ["order_deltas"]


def order_deltas(
    ev: pl.DataFrame, *, kinds: Sequence[str], status_after: Mapping[str, str], status_codes: Mapping[str, int]
) -> tuple[pl.DataFrame, pl.DataFrame, StreamGroups]:
    """The batch's order events, their delta frame and their stream groups.

    ``ev`` holds a batch of events; those not of ``kinds`` are dropped. The delta has one
    row per order in the batch, in stream-number order, with the columns of the lazy
    path's group-by.
    """
    # Comparing the type strings is cheaper than casting them to an Enum first.
    is_ = {name: pl.col("event_type") == name for name in kinds}
    if ev.select(pl.any_horizontal(*is_.values()).not_().any()).item():
        ev = ev.filter(pl.any_horizontal(*is_.values()))
    groups = StreamGroups(stream_numbers(ev))
    added, removed = is_["ItemAdded"], is_["ItemRemoved"]
    status: pl.Expr = pl.lit(-1, pl.Int64)
    for name, number in status_codes.items():
        status = pl.when(is_[name]).then(pl.lit(number, pl.Int64)).otherwise(status)
    # One parallel polars pass turns the batch into plain integer columns without nulls
    # (numpy views, no copies); each reduction below is then one ufunc.at over them.
    zero = pl.lit(0, pl.Int64)
    rows = ev.select(
        pl.when(added).then(pl.col("quantity")).when(removed).then(-pl.col("quantity")).otherwise(zero).alias("items"),
        pl.when(added).then(pl.col("quantity") * pl.col("price")).otherwise(zero).alias("added"),
        pl.when(is_["PaymentReceived"]).then(pl.col("amount")).otherwise(zero).alias("paid"),
        is_["PaymentFailed"].cast(pl.Int64).alias("failed"),
        removed.cast(pl.Int64).alias("removed"),
        is_["OrderPlaced"].alias("placed"),
        # The latest status-changing event wins: the largest position * 8 + its status code.
        pl.when(status >= 0).then(pl.col("position") * 8 + status).otherwise(pl.lit(-1, pl.Int64)).alias("status"),
        pl.col("position"),
        pl.col("recorded_at").dt.epoch("us").alias("recorded_us"),
    )  # fmt: skip
    col = {name: rows.get_column(name).to_numpy() for name in rows.columns}
    placed = col["placed"]

    placed_count = groups.count(placed)
    if (placed_count > 1).any():
        row = groups.first_row(placed)[np.flatnonzero(placed_count > 1)[0]]
        raise ProjectionError(
            f"order {ev['order_id'][int(row)]!r} was placed more than once in one batch "
            f"(expected one OrderPlaced per order; the first at position {col['position'][row]})"
        )
    latest = groups.max(col["status"])
    has_status = latest >= 0
    placed_row = groups.first_row(placed)
    # An order's id comes from its OrderPlaced, or (placed in an earlier batch) its first event.
    id_row = placed_row if (placed_row >= 0).all() else np.where(placed_row >= 0, placed_row, groups.first_row())
    code_status = {status_codes[t]: s for t, s in status_after.items()}

    def at_rows(column: str, rows: np.ndarray) -> pl.Series:
        values = ev.get_column(column).gather(np.maximum(rows, 0))
        return values.set(pl.Series(rows < 0), None) if (rows < 0).any() else values

    status_name = pl.Series(np.where(has_status, latest % 8, 0)).replace_strict(
        code_status, default=None, return_dtype=pl.String
    )
    delta = pl.DataFrame({
        "order_id": at_rows("order_id", id_row),
        "new_customer": at_rows("customer", placed_row),
        "new_placed_at": at_rows("recorded_at", placed_row),
        "new_first_position": at_rows("position", placed_row),
        "new_status": status_name,
        "d_items": groups.sum(col["items"]),
        "d_added": groups.sum(col["added"]),
        "d_paid": groups.sum(col["paid"]),
        "d_failed": groups.sum(col["failed"]),
        "has_removal": groups.sum(col["removed"]) > 0,
        "new_updated_at": pl.Series(groups.max(col["recorded_us"])).cast(UTC_DATETIME),
        "new_position": groups.max(col["position"]),
    })  # fmt: skip
    return ev, delta, groups
