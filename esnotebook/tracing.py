"""Causal tracing: the chain of events that one request set off, across all aggregates.

Every event carries ``correlation_id`` (the root of its chain) and ``causation_id`` (its
direct cause: an event id, or the id of the command that stored it). Commands are not
stored, so the command bus writes a command's own cause into the metadata of the events it
stores (``command_causation_id``); :func:`trace` follows event → command → event links
with it. Broken links are reported in a ``problem`` column, never dropped:

``"missing cause"``
    the cause id is neither an event in the store nor a command the bus recorded storing
    this event (nor the chain's root);
``"cause in another chain"``
    the cause exists but belongs to a different correlation id;
``"cause recorded later"``
    the cause's position is after the effect's;
``"cycle"``
    following causes leads back to the event itself.

>>> import esnotebook as es
>>> from esnotebook.examples import AddItem, PlaceOrder, order_domain_bus
>>> store = es.InMemoryEventStore()
>>> bus = order_domain_bus(store)
>>> placed = bus.dispatch(PlaceOrder("o-1", "c-1")).events[0]
>>> _ = bus.dispatch(AddItem("o-1", "sku-1", 1, 100).caused_by(placed))
>>> trace(store, placed.correlation_id).to_polars().select("event_type", "via_command", "depth").rows()
[('OrderPlaced', 'PlaceOrder', 0), ('ItemAdded', 'AddItem', 1)]
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from .events import RecordedEvent

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Trace", "trace"]

TRACE_SCHEMA: dict[str, pl.DataType] = {
    "position": pl.Int64(),
    "stream_id": pl.String(),
    "event_type": pl.String(),
    "event_id": pl.String(),
    "caused_by": pl.String(),
    "caused_by_position": pl.Int64(),
    "via_command": pl.String(),
    "depth": pl.Int64(),
    "recorded_at": pl.Datetime("us", "UTC"),
    "problem": pl.String(),
}


@dataclass(frozen=True, slots=True)
class Trace:
    """The causal chain of one correlation id (see :func:`trace`).

    Attributes
    ----------
    correlation_id
        The chain traced.
    frame
        One row per event, in position order: ``position, stream_id, event_type, event_id,
        caused_by`` (the causing event's id), ``caused_by_position, via_command`` (the
        command that stored it), ``depth`` (0 for the root's events), ``recorded_at,
        problem`` (null when the link is sound).
    """

    correlation_id: str
    frame: pl.DataFrame

    @property
    def problems(self) -> pl.DataFrame:
        """The rows whose causal link is broken."""
        return self.frame.filter(pl.col("problem").is_not_null())

    @property
    def ok(self) -> bool:
        """Whether every link of the chain is sound."""
        return self.problems.height == 0

    @property
    def streams(self) -> list[str]:
        """The streams the chain touches, in order of first appearance."""
        return list(dict.fromkeys(self.frame["stream_id"].to_list()))

    def __len__(self) -> int:
        return self.frame.height

    def to_polars(self) -> pl.DataFrame:
        """:attr:`frame`."""
        return self.frame

    def to_pandas(self) -> pd.DataFrame:
        """:attr:`frame` as pandas."""
        return self.frame.to_pandas()

    def plot(self, *, ax: Any = None) -> Any:
        """The swimlane timeline (:func:`esnotebook.plot.trace_swimlane`)."""
        from .plot import trace_swimlane

        return trace_swimlane(self, ax=ax)

    def __repr__(self) -> str:
        return (
            f"Trace({self.correlation_id!r}: {len(self)} events in {len(self.streams)} streams, "
            f"{self.problems.height} problems)"
        )

    def _repr_html_(self) -> str:
        e = html.escape
        head = (
            f"<b>trace {e(self.correlation_id)}</b>: {len(self)} events across {len(self.streams)} streams"
            + ("" if self.ok else f", <b>{self.problems.height} broken link(s)</b>")
        )
        rows = []
        for r in self.frame.head(40).iter_rows(named=True):
            indent = "&nbsp;&nbsp;" * min(r["depth"] or 0, 12)
            via = f" <i>via {e(r['via_command'])}</i>" if r["via_command"] else ""
            problem = f" <b>[{e(r['problem'])}]</b>" if r["problem"] else ""
            rows.append(
                f"<tr><td>{r['position']}</td><td>{e(r['stream_id'])}</td>"
                f"<td>{indent}{e(r['event_type'])}{via}{problem}</td></tr>"
            )
        more = f"<br>... {len(self) - 40} more" if len(self) > 40 else ""
        return f"{head}<table><tr><th>position</th><th>stream</th><th>event</th></tr>{''.join(rows)}</table>{more}"


def trace(store: Any, correlation_id: str | RecordedEvent) -> Trace:
    """The causal chain of ``correlation_id`` across all streams of ``store``.

    Parameters
    ----------
    store
        Any event store.
    correlation_id
        The chain's id, or an event of the chain (its ``correlation_id`` is used).

    Returns
    -------
    Trace
        ``.to_polars()``: position, stream, type, caused by, depth, recorded at, problem.

    Examples
    --------
    >>> import esnotebook as es
    >>> store = es.InMemoryEventStore()
    >>> e = store.append("order-1", [es.NewEvent("OrderPlaced", {"order_id": "o-1"})])[0]
    >>> trace(store, e).frame.select("event_type", "depth", "problem").row(0)
    ('OrderPlaced', 0, None)
    """
    if isinstance(correlation_id, RecordedEvent):
        correlation_id = correlation_id.correlation_id
    if not isinstance(correlation_id, str) or not correlation_id:
        raise ValueError(f"'correlation_id' must be a non-empty str or an event (got {correlation_id!r})")
    meta = pl.col("metadata")
    chain = (
        store.scan(with_metadata=True)
        .filter(pl.col("correlation_id") == correlation_id)
        .select(
            "position", "stream_id", "event_type", "event_id", "causation_id", "recorded_at",
            meta.str.json_path_match("$.command_type").alias("via_command"),
            meta.str.json_path_match("$.command_causation_id").alias("command_cause"),
        )
        .sort("position")
        .collect()
    )  # fmt: skip
    events = {eid: pos for eid, pos in zip(chain["event_id"].to_list(), chain["position"].to_list())}
    rows = chain.to_dicts()
    # Causes that are not events of this chain: look them up in the whole store once.
    wanted: set[str] = set()
    for r in rows:
        for c in (r["causation_id"], r["command_cause"]):
            if c is not None and c not in events and c != correlation_id:
                wanted.add(c)
    elsewhere: dict[str, tuple[int, str]] = {}
    if wanted:
        found = (
            store.scan().filter(pl.col("event_id").is_in(list(wanted)))
            .select("event_id", "position", "correlation_id").collect()
        )  # fmt: skip
        elsewhere = {eid: (pos, corr) for eid, pos, corr in found.iter_rows()}

    parent: dict[str, str | None] = {}
    problem: dict[str, str | None] = {}
    for r in rows:
        eid, cause = r["event_id"], r["causation_id"]
        if cause is not None and cause not in events and cause not in elsewhere and r["via_command"]:
            # Not an event but the command that stored this one (the bus says which); the
            # command's own cause is in the metadata (None: it started the chain).
            cause = r["command_cause"]
        issue = None
        if cause is None or cause == correlation_id and cause not in events:
            link = None
        elif cause in events:
            link = cause
            if events[cause] > r["position"]:
                issue = "cause recorded later"
        elif cause in elsewhere:
            link, issue = None, "cause in another chain"
        else:
            link, issue = None, "missing cause"
        parent[eid] = link
        problem[eid] = issue
        r["caused_by"] = link if link is not None else (cause if issue else None)
        r["caused_by_position"] = events.get(link) if link else (elsewhere.get(cause, (None,))[0] if cause else None)

    depth: dict[str, int | None] = {}
    for r in rows:
        path: list[str] = []
        node: str | None = r["event_id"]
        base: int | None = -1
        while node is not None:
            if node in depth:
                base = depth[node]
                break
            if node in path:  # a loop of causes: its members have no depth
                loop = path[path.index(node):]
                for n in loop:
                    depth[n], problem[n] = None, "cycle"
                path, base = path[: path.index(node)], None
                break
            path.append(node)
            node = parent[node]
        for n in reversed(path):
            base = None if base is None else base + 1
            depth[n] = base
    frame = pl.DataFrame(
        [
            (r["position"], r["stream_id"], r["event_type"], r["event_id"], r["caused_by"],
             r["caused_by_position"], r["via_command"], depth[r["event_id"]],
             r["recorded_at"], problem[r["event_id"]])
            for r in rows
        ],
        schema=TRACE_SCHEMA,
        orient="row",
    )  # fmt: skip
    return Trace(correlation_id, frame)
