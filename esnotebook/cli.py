"""The ``esnotebook`` command.

``esnotebook demo`` generates the synthetic order workload into an embedded Parquet store,
prints what is in it, then runs the whole tour on it (projections, the saga under faults,
snapshots, dead letters, lag and capacity; see :mod:`esnotebook.tour`) and writes the
report. Subcommands are registered in :func:`build_parser`.

The demo folder (default ``./esnotebook-demo``)::

    esnotebook-demo/
      demo.json      what was generated (seed, size, knobs) and whether it finished
      store/         the Parquet event store
      report.html    the tour's report (with --store-only: not written)
      figures/       its PNG figures
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

__all__ = ["DemoError", "DemoSummary", "build_parser", "main", "run_demo"]

DEFAULT_OUT = "esnotebook-demo"
DEFAULT_ORDERS = 100_000
MANIFEST = "demo.json"
STORE_DIR = "store"
DEMO_KIND = "esnotebook-demo"


class DemoError(Exception):
    """The demo cannot run as asked (the message says why and what to do)."""


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What the demo store holds, as printed by ``esnotebook demo``."""

    path: str
    reused: bool
    seed: int
    orders: int
    events: int
    streams: int
    event_types: dict[str, int]
    first_event: datetime | None
    last_event: datetime | None
    files: int
    size_bytes: int
    generate_seconds: float
    import_seconds: float
    notes: list[str] = field(default_factory=list)
    tour: Any = None

    @property
    def import_rate(self) -> float:
        """Events per second of the bulk import into the store."""
        return self.events / self.import_seconds if self.import_seconds > 0 else float("nan")

    def to_polars(self) -> Any:
        """The event type counts as a polars DataFrame (``event_type``, ``events``)."""
        import polars as pl

        return pl.DataFrame(
            {"event_type": list(self.event_types), "events": list(self.event_types.values())},
            schema={"event_type": pl.String, "events": pl.Int64},
        )

    def to_pandas(self) -> Any:
        """:meth:`to_polars`, as pandas."""
        return self.to_polars().to_pandas()

    def lines(self) -> list[str]:
        """The printed summary, one ``label  value`` line each."""
        span = "-"
        if self.first_event is not None and self.last_event is not None:
            days = (self.last_event - self.first_event).total_seconds() / 86400
            span = f"{_iso(self.first_event)} .. {_iso(self.last_event)} ({days:.1f} days)"
        rows = [
            ("store", self.path),
            ("events", f"{self.events:,}"),
            ("streams", f"{self.streams:,}"),
            ("time span", span),
            ("files", f"{self.files:,}"),
            ("size on disk", f"{self.size_bytes / 1e6:,.1f} MB ({self.size_bytes:,} bytes)"),
        ]
        if self.reused:
            rows.append(("import", "reused an existing demo store (pass --fresh to regenerate)"))
        else:
            rows.append(("generated", f"{self.events:,} events in {self.generate_seconds:.2f} s"))
            rows.append(
                ("import", f"{self.import_rate:,.0f} events/s ({self.import_seconds:.2f} s)")
            )
        out = [f"{label:<14}{value}" for label, value in rows]
        out.append("event types")
        for name, count in self.event_types.items():
            out.append(f"  {name:<18}{count:>12,}")
        if self.tour is not None:
            out.append("")
            out.extend(self.tour.lines())
        return out

    def _repr_html_(self) -> str:
        import html

        store_lines = self.lines()[
            : len(self.lines()) - (len(self.tour.lines()) + 1 if self.tour else 0)
        ]
        body = "".join(
            f"<tr><td style='text-align:left'><pre style='margin:0'>{html.escape(line)}</pre>"
            "</td></tr>"
            for line in store_lines
        )
        tour = "" if self.tour is None else self.tour._repr_html_()
        return f"<b>esnotebook demo</b><table>{body}</table>{tour}"


# ---------------------------------------------------------------------- the demo
def run_demo(
    out: str | os.PathLike[str] = DEFAULT_OUT,
    *,
    orders: int | None = None,
    events: int | None = None,
    seed: int = 0,
    fresh: bool = False,
    tour: bool = True,
    saga_orders: int | None = None,
    replications: int = 10,
    say: TextIO | None = None,
) -> DemoSummary:
    """Generate the order workload into ``out/store`` (a Parquet store), summarise it, and
    run the tour on it into ``out/report.html``.

    Parameters
    ----------
    out
        The demo folder: new, empty, or an earlier demo folder. A folder holding anything
        else is refused with :class:`DemoError` and left untouched.
    orders, events
        Size of the workload: a number of orders, or roughly a number of events (at most
        one of the two; default 100,000 orders, about half a million events).
    seed
        Seed of the workload.
    fresh
        Regenerate even when ``out`` already holds a finished demo store.
    tour
        Run the tour and write the report (``False``: only the store and its summary).
    saga_orders
        Orders placed by command for the saga, snapshot and dead-letter steps (default:
        300, or the workload's order count when smaller).
    replications
        Replications per candidate in the tour's capacity search (>= 2).
    say
        Where progress notes go (default: nowhere).

    Examples
    --------
    >>> import tempfile
    >>> summary = run_demo(tempfile.mkdtemp() + "/demo", orders=100, tour=False)
    >>> summary.streams
    100
    """
    n_orders = _orders_wanted(orders, events)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DemoError(f"'seed' must be an int >= 0 (got {seed!r})")
    if saga_orders is not None and (
        isinstance(saga_orders, bool) or not isinstance(saga_orders, int) or saga_orders < 1
    ):
        raise DemoError(f"'saga_orders' must be an int >= 1 (got {saga_orders!r})")
    if isinstance(replications, bool) or not isinstance(replications, int) or replications < 2:
        raise DemoError(f"'replications' must be an int >= 2 (got {replications!r})")
    summary = _store_step(Path(out), n_orders=n_orders, seed=seed, fresh=fresh,
                          asked=orders is not None or events is not None, say=say)  # fmt: skip
    if not tour:
        return summary
    from dataclasses import replace

    from .store import ParquetEventStore
    from .tour import run_tour

    wanted = saga_orders if saga_orders is not None else min(300, summary.orders)
    result = run_tour(ParquetEventStore(summary.path), Path(out), saga_orders=wanted,
                      seed=summary.seed, replications=replications, say=say)  # fmt: skip
    return replace(summary, tour=result)


def _store_step(
    out: Path, *, n_orders: int, seed: int, fresh: bool, asked: bool, say: TextIO | None
) -> DemoSummary:
    from .store import ParquetEventStore

    manifest = _inspect_folder(out)
    notes: list[str] = []
    if manifest is not None and manifest.get("complete") and not fresh:
        notes.append(
            f"found an existing demo store in {out} ({manifest['orders']:,} orders, "
            f"seed {manifest['seed']}); reusing it"
        )
        asked = asked or seed != 0
        if asked and (manifest["orders"], manifest["seed"]) != (n_orders, seed):
            notes.append(
                f"it was made with {manifest['orders']:,} orders and seed {manifest['seed']}, "
                f"not {n_orders:,} orders and seed {seed}: pass --fresh to regenerate"
            )
        _note(say, *notes)
        return _summarise(ParquetEventStore(out / STORE_DIR), manifest, reused=True, notes=notes)
    if manifest is not None:
        why = "--fresh was given" if manifest.get("complete") else "the previous run did not finish"
        notes.append(f"found an existing demo store in {out}; starting fresh ({why})")
        _note(say, notes[-1])
        shutil.rmtree(out / STORE_DIR, ignore_errors=True)
    return _generate_into(out, n_orders=n_orders, seed=seed, notes=notes, say=say)


def _generate_into(
    out: Path, *, n_orders: int, seed: int, notes: list[str], say: TextIO | None
) -> DemoSummary:
    from . import __version__
    from ._atomic import write_json
    from .datasets import generate_orders
    from .store import ParquetEventStore

    manifest: dict[str, Any] = {
        "kind": DEMO_KIND,
        "complete": False,
        "orders": n_orders,
        "seed": seed,
        "esnotebook": __version__,
        "started_at": _iso(datetime.now(timezone.utc)),
    }
    out.mkdir(parents=True, exist_ok=True)
    # Written first, so that an interrupted run is recognised (and redone) next time.
    write_json(out / MANIFEST, manifest)
    _note(say, f"generating {n_orders:,} orders (seed {seed}) ...")
    t0 = time.perf_counter()
    frame = generate_orders(n_orders, seed=seed)
    t1 = time.perf_counter()
    _note(say, f"importing {frame.height:,} events into {out / STORE_DIR} ...")
    with ParquetEventStore(out / STORE_DIR) as store:
        store.append_frame(frame)
        t2 = time.perf_counter()
    manifest.update(
        complete=True,
        events=frame.height,
        generate_seconds=round(t1 - t0, 4),
        import_seconds=round(t2 - t1, 4),
    )
    write_json(out / MANIFEST, manifest)
    return _summarise(store, manifest, reused=False, notes=notes)


def _summarise(
    store: Any, manifest: dict[str, Any], *, reused: bool, notes: list[str]
) -> DemoSummary:
    import polars as pl

    from .datasets import ORDER_EVENT_TYPES

    lf = store.scan()
    counts = dict(lf.group_by("event_type").len().collect().iter_rows())
    order = [t for t in ORDER_EVENT_TYPES if t in counts] + sorted(
        set(counts) - set(ORDER_EVENT_TYPES)
    )
    first, last = (
        lf.select(
            pl.col("recorded_at").min().alias("first"), pl.col("recorded_at").max().alias("last")
        )
        .collect()
        .row(0)
    )
    return DemoSummary(
        path=str(store.path),
        reused=reused,
        seed=int(manifest["seed"]),
        orders=int(manifest["orders"]),
        events=len(store),
        streams=len(store.streams()),
        event_types={t: int(counts[t]) for t in order},
        first_event=first,
        last_event=last,
        files=len(store.files()),
        size_bytes=store.size_on_disk(),
        generate_seconds=float(manifest.get("generate_seconds", 0.0)),
        import_seconds=float(manifest.get("import_seconds", 0.0)),
        notes=notes,
    )


def _orders_wanted(orders: int | None, events: int | None) -> int:
    if orders is not None and events is not None:
        raise DemoError(
            f"give --orders or --events, not both (got orders={orders}, events={events})"
        )
    for name, value in (("orders", orders), ("events", events)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise DemoError(f"'{name}' must be an int >= 1 (got {value!r})")
    if events is not None:
        from .datasets import expected_events_per_order

        return max(1, round(events / expected_events_per_order()))
    return DEFAULT_ORDERS if orders is None else orders


def _inspect_folder(out: Path) -> dict[str, Any] | None:
    """The manifest of the demo folder ``out``; ``None`` when ``out`` is new or empty.

    Refuses (:class:`DemoError`) anything that is not a demo folder, before touching it.
    """
    from .store.parquet import MARKER

    if not out.exists():
        return None
    if not out.is_dir():
        raise DemoError(
            f"{out} is a file; the demo needs a folder (a new path, an empty folder or an "
            "earlier demo folder)"
        )
    entries = sorted(e.name for e in os.scandir(out))
    if not entries:
        return None
    if MANIFEST in entries:
        try:
            manifest = json.loads((out / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise DemoError(
                f"{out / MANIFEST} is unreadable ({exc}); remove the folder or choose another --out"
            ) from None
        if isinstance(manifest, dict) and manifest.get("kind") == DEMO_KIND:
            if not all(isinstance(manifest.get(k), int) for k in ("orders", "seed")):
                manifest["complete"] = False  # ours, but damaged: redo rather than trust it
            return manifest
    if MARKER in entries:
        raise DemoError(
            f"{out} is an esnotebook event store, not a demo folder (the demo keeps its store "
            f"in <folder>/{STORE_DIR}); choose another --out"
        )
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    raise DemoError(
        f"{out} is not an esnotebook demo folder: it holds {len(entries)} entries ({shown}) "
        f"and no {MANIFEST}; choose a new or empty folder with --out (nothing was changed)"
    )


def _note(say: TextIO | None, *lines: str) -> None:
    if say is not None:
        for line in lines:
            print(line, file=say, flush=True)


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# ---------------------------------------------------------------------- the command line
def build_parser() -> argparse.ArgumentParser:
    """The ``esnotebook`` argument parser, one subcommand per job."""
    parser = argparse.ArgumentParser(
        prog="esnotebook",
        description="Event sourcing you can see, measure and plan for.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="generate the order workload into a Parquet store and run the whole tour",
        description="Generate the synthetic order workload into an embedded Parquet event "
        "store (in <out>/store), print what it holds, then run the tour on it: projections "
        "built, rebuilt and shadow-rebuilt; the fulfilment saga under injected faults; "
        "snapshots; a poison event in the dead-letter queue; consumer lag behind a bursty "
        "producer and the capacity that keeps it in bounds. Writes <out>/report.html with "
        "its figures in <out>/figures/.",
    )
    demo.add_argument("--out", default=DEFAULT_OUT, metavar="PATH",
                      help=f"the demo folder (default ./{DEFAULT_OUT})")  # fmt: skip
    size = demo.add_mutually_exclusive_group()
    size.add_argument("--orders", type=int, metavar="N",
                      help=f"number of orders (default {DEFAULT_ORDERS:,})")  # fmt: skip
    size.add_argument("--events", type=int, metavar="N", help="about this many events instead")
    demo.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of the workload (default 0)"
    )
    demo.add_argument("--fresh", action="store_true",
                      help="regenerate even if the folder holds an earlier demo store")  # fmt: skip
    demo.add_argument("--store-only", action="store_true",
                      help="only generate and summarise the store: no tour, no report")  # fmt: skip
    demo.add_argument("--saga-orders", type=int, metavar="N",
                      help="orders placed by command for the saga part (default 300)")  # fmt: skip
    demo.add_argument("--replications", type=int, default=10, metavar="N",
                      help="replications per candidate in the capacity search (default 10)")  # fmt: skip
    demo.set_defaults(handler=_demo_command)
    return parser


def _demo_command(args: argparse.Namespace) -> int:
    summary = run_demo(
        args.out, orders=args.orders, events=args.events, seed=args.seed, fresh=args.fresh,
        tour=not args.store_only, saga_orders=args.saga_orders,
        replications=args.replications, say=sys.stdout,
    )  # fmt: skip
    print("\n".join(summary.lines()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``esnotebook`` command with ``argv`` (default: the process's arguments).

    Returns the exit status: 0 on success, 2 for a usage error or a refused folder, 1 when
    the event store refuses (for example another process holds its lock).
    """
    from .errors import EventStoreError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.handler(args)
    except DemoError as exc:
        print(f"esnotebook {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except EventStoreError as exc:
        print(f"esnotebook {args.command}: error: {exc}", file=sys.stderr)
        return 1
