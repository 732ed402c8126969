""":class:`OrderSummaryFrame`: the order summary as polars expressions (the vectorised form)."""

from __future__ import annotations

import polars as pl

from ..projections import Engine, ProjectionError, VectorisedProjection, check_engine
from ._arrays import order_deltas, with_row_numbers
from .orders import (
    _CODE_STATUS,
    _KIND_STATUS,
    _KINDS,
    OPEN,
    ORDER_EVENTS,
    ORDER_FIELDS,
    ORDER_SUMMARY_SCHEMA,
    PRICE,
    _is,
)  # fmt: skip

__all__ = ["OrderSummaryFrame"]


class OrderSummaryFrame(VectorisedProjection):
    """:class:`OrderSummary` as polars expressions (the vectorised form); same frame.

    Every aggregation is a plain sum, min or max over per-event columns (polars' fast
    path), and none depends on row order (the latest event is found by its position).

    Examples
    --------
    >>> import esnotebook as es
    >>> store = es.InMemoryEventStore()
    >>> _ = store.append("order-1", [
    ...     es.NewEvent("OrderPlaced", {"order_id": "1", "customer": "ada"}),
    ...     es.NewEvent("ItemAdded", {"order_id": "1", "sku": "tea", "quantity": 2, "price": 350}),
    ... ])
    >>> OrderSummaryFrame().rebuild(store.scan()).select("order_id", "item_count", "total").row(0)
    ('1', 2, 700)
    """

    name = "OrderSummary"
    key = "order_id"
    order_by = "first_position"
    keyed_by_stream = True
    partition_key = "order_id"
    schema = ORDER_SUMMARY_SCHEMA
    hidden = ("open_prices",)
    event_types = ORDER_EVENTS
    fields = ORDER_FIELDS

    def run(self, state: pl.DataFrame, events: pl.LazyFrame | pl.DataFrame, *, engine: Engine = "auto") -> pl.DataFrame:
        """Fold ``events`` into ``state`` (see :meth:`VectorisedProjection.run`).

        With the in-memory engine, the batch's per-order numbers are array reductions keyed
        by the store's stream number (:mod:`esnotebook.per_stream`), several times faster
        than the group-by on ``order_id`` of :meth:`fold`; the streaming engine runs
        :meth:`fold`, whose memory polars bounds. Both give the same frame.
        """
        if engine == "streaming" or type(self).fold is not OrderSummaryFrame.fold:
            # A subclass that changes the fold gets its fold.
            return super().run(state, events, engine=engine)
        check_engine(engine)
        lf = self.conform(events)
        # The store's stream numbers when the events carry them, else stream ids to number.
        key = "stream_number" if "stream_number" in lf.collect_schema().names() else "stream_id"
        ev, delta, groups, item_event = order_deltas(with_row_numbers(self._order_events(lf, key)).collect())
        # Item lines are needed only by orders with a removal or still open; an order without
        # a status change in this batch may be open in the state, so it is a candidate too.
        status = delta.get_column("new_status")
        candidates = (delta.get_column("has_removal") | status.is_in(OPEN) | status.is_null()).to_numpy()
        items = ev.filter(pl.Series(groups.rows_of(candidates) & item_event))
        new = self._merge(state.lazy(), delta.lazy(), items.lazy()).collect()
        return self._finish(new)

    def fold(self, state: pl.LazyFrame, events: pl.LazyFrame) -> pl.LazyFrame:
        # One pass over every event, one group-by of plain sums, mins and maxes (polars' fast
        # path). The event type becomes an Enum once, so the type tests compare small ints.
        ev = self._order_events(events).with_columns(
            pl.col("event_type").cast(_KINDS, strict=False),
        ).with_columns(
            # The latest status-changing event wins: max(position * 8 + code) finds it in any order.
            (pl.col("position") * 8 + pl.lit(_KIND_STATUS).gather(pl.col("event_type").to_physical()))
            .alias("status_code"),
        )  # fmt: skip
        added, removed, placed = _is("ItemAdded"), _is("ItemRemoved"), _is("OrderPlaced")
        delta = ev.group_by("order_id").agg(
            pl.when(placed).then(pl.col("customer")).max().alias("new_customer"),
            pl.when(placed).then(pl.col("recorded_at")).min().alias("new_placed_at"),
            pl.when(placed).then(pl.col("position")).min().alias("new_first_position"),
            pl.col("status_code").max().mod(8).alias("new_status"),
            pl.when(added).then(pl.col("quantity")).when(removed).then(-pl.col("quantity")).sum().alias("d_items"),
            pl.when(added).then(pl.col("quantity") * pl.col("price")).sum().alias("d_added"),
            pl.when(_is("PaymentReceived")).then(pl.col("amount")).sum().alias("d_paid"),
            _is("PaymentFailed").sum().cast(pl.Int64).alias("d_failed"),
            removed.any().alias("has_removal"),
            pl.col("recorded_at").max().alias("new_updated_at"),
            pl.col("position").max().alias("new_position"),
        ).with_columns(
            pl.col("new_status").replace_strict(_CODE_STATUS, default=None, return_dtype=pl.String)
        )  # fmt: skip
        return self._merge(state, delta, ev.filter(_is("ItemAdded", "ItemRemoved")))

    @staticmethod
    def _order_events(events: pl.LazyFrame, *keys: str) -> pl.LazyFrame:
        """The columns the fold reads (and ``keys``)."""
        return events.select(
            *keys, "order_id", "position", "recorded_at", "customer", "sku", "quantity", "price", "amount",
            "event_type",
        )  # fmt: skip

    def _merge(self, state: pl.LazyFrame, delta: pl.LazyFrame, items: pl.LazyFrame) -> pl.LazyFrame:
        """The new state: ``delta`` (a batch's numbers per order) merged into ``state``.

        ``items`` holds the batch's item events of (at least) the orders that need their
        lines: those with a removal, and those still open.
        """
        empty = self._empty(state)
        if empty:
            nulls = (pl.lit(None, dt).alias(c) for c, dt in self.schema.items() if c != "order_id")
            delta = delta.with_columns(nulls)
        else:
            delta = delta.join(state, on="order_id", how="left")
        status = pl.coalesce("new_status", "status")
        updated = delta.select(
            "order_id",
            pl.coalesce("customer", "new_customer").alias("customer"),
            status.alias("status"),
            (pl.col("item_count").fill_null(0) + pl.col("d_items")).alias("item_count"),
            (pl.col("total").fill_null(0) + pl.col("d_added")).alias("total"),
            (pl.col("amount_paid").fill_null(0) + pl.col("d_paid")).alias("amount_paid"),
            (pl.col("failed_payments").fill_null(0) + pl.col("d_failed")).alias("failed_payments"),
            pl.coalesce("placed_at", "new_placed_at").alias("placed_at"),
            pl.max_horizontal("updated_at", "new_updated_at").alias("updated_at"),
            pl.coalesce("first_position", "new_first_position").alias("first_position"),
            pl.col("new_position").alias("last_position"),
            "open_prices",
            # Only these orders need their item lines: one that removed items (valued at the
            # SKU's latest added price) or one still open (it keeps its latest prices).
            (pl.col("has_removal") | status.is_in(OPEN).fill_null(False)).alias("needs_lines"),
        ).cache()  # three branches below read it: group the events once
        plain = (
            updated.filter(~pl.col("needs_lines"))
            .with_columns(pl.lit(None, pl.List(PRICE)).alias("open_prices"))
            .select(list(self.schema))
        )
        special = updated.filter(pl.col("needs_lines"))
        merged = pl.concat([plain, self._with_lines(state, items, special, empty)])
        if empty:
            return merged
        untouched = state.join(delta.select("order_id"), on="order_id", how="anti")
        return pl.concat([untouched, merged], how="vertical_relaxed")

    def _with_lines(
        self, state: pl.LazyFrame, items: pl.LazyFrame, special: pl.LazyFrame, empty: bool
    ) -> pl.LazyFrame:
        """The orders that need their item lines, with removals valued and open prices kept.

        They are few in a rebuild (orders with a removal, orders still open), so their item
        events are picked out with a semi join on that small key set.
        """
        removed = _is("ItemRemoved")
        items = (
            items.join(special.select("order_id"), on="order_id", how="semi", maintain_order="left")
            .select(
                "order_id", "sku", "position", removed.alias("is_removal"), "quantity",
                pl.when(~removed).then(pl.col("price")).alias("price"),
            )
        )
        if not empty:
            # Prices known before this batch, for the open orders this batch touches.
            prior = (
                state.select("order_id", "open_prices")
                .filter(pl.col("open_prices").is_not_null())
                .join(special.select("order_id"), on="order_id", how="semi")
                .explode("open_prices")
                .unnest("open_prices")
                .drop_nulls("sku")
                .select(
                    "order_id", "sku", pl.lit(0, pl.Int64).alias("position"),
                    pl.lit(False).alias("is_removal"), pl.lit(0, pl.Int64).alias("quantity"), "price",
                )
            )
            items = pl.concat([prior, items])
        # A removal is valued at its SKU's latest added price before it: the item events are
        # in position order (the prior prices first), so a forward fill per order and SKU
        # finds it without a sort.
        lines = items.with_columns(pl.col("price").forward_fill().over("order_id", "sku").alias("latest_price"))
        removed_value = (
            lines.filter(pl.col("is_removal"))
            .group_by("order_id")
            .agg((pl.col("quantity") * pl.col("latest_price")).sum().alias("d_removed"))
        )
        # Only orders still open keep their prices (few in a rebuild).
        still_open = special.filter(pl.col("status").is_in(OPEN)).select("order_id")
        open_prices = (
            lines.filter(~pl.col("is_removal"))
            .join(still_open, on="order_id", how="semi", maintain_order="left")
            .group_by("order_id", "sku", maintain_order=True)
            .agg(pl.col("price").last())
            .group_by("order_id", maintain_order=True)
            .agg(pl.struct("sku", "price").sort_by("sku").alias("new_open_prices"))
        )
        return (
            special.join(removed_value, on="order_id", how="left", maintain_order="left")
            .join(open_prices, on="order_id", how="left", maintain_order="left")
            .with_columns(
                (pl.col("total") - pl.col("d_removed").fill_null(0)).alias("total"),
                pl.when(pl.col("status").is_in(OPEN))
                .then(pl.col("new_open_prices").fill_null(pl.lit([], pl.List(PRICE))))
                .alias("open_prices"),
            )
            .select(list(self.schema))
        )

    @staticmethod
    def _empty(state: pl.LazyFrame) -> bool:
        # A rebuild starts from an empty state: skipping the merge with it saves a hash pass
        # over every event.
        return state.limit(1).collect().height == 0

    def validate(self, state: pl.DataFrame) -> None:
        orphans = state.filter(pl.col("customer").is_null())["order_id"]
        if orphans.len():
            raise ProjectionError(
                f"events for {orphans.len()} order(s) that were never placed (expected an "
                f"OrderPlaced first): {orphans.head(5).to_list()}"
            )
