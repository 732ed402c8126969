"""Read the stored events of the Python ``eventsourcing`` library (SQLite and PostgreSQL).

The library stores one row per domain event: ``originator_id`` (the aggregate id; a UUID,
or text when ``ORIGINATOR_ID_TYPE=text``), ``originator_version``, ``topic``
(``"module:Class.Event"``) and ``state``, the event object's attributes as JSON from its
``JSONTranscoder`` (non-JSON values as ``{"_type_": name, "_data_": ...}``), optionally
zlib-compressed (``COMPRESSOR_TOPIC``) and optionally encrypted (``CIPHER_TOPIC``). The
notification id (SQLite's ``rowid``, PostgreSQL's ``notification_id``) orders all events.

They become the canonical event frame like this:

============================  ======================================================
eventsourcing                 esnotebook
============================  ======================================================
notification id order         position order (positions are assigned anew, gap-free)
originator id                 ``stream_id``: ``"<aggregate>-<uuid>"`` with the
                              aggregate class name lower-cased, e.g.
                              ``"order-5f1c...-..."`` (``stream_ids="prefixed"``), or
                              the bare id (``stream_ids="id"``)
originator version            ``version``
topic ``mod:Order.ItemAdded``  ``event_type`` ``"Order.ItemAdded"`` (``"qualname"``),
                              ``"ItemAdded"`` (``"name"``) or your own function
state ``timestamp``           ``recorded_at`` (UTC)
the rest of the state         typed payload columns: datetimes stay datetimes, UUIDs
                              become strings, decimals floats (or strings)
(none)                        ``event_id`` new random UUIDs, ``correlation_id`` =
                              ``event_id``, ``causation_id`` null
============================  ======================================================

The source is only read. The whole import is decoded and checked first, then committed
with one atomic :meth:`~esnotebook.store.base.StoreBase.append_frame`: a failure leaves
the store exactly as it was.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from ..errors import EventDataError
from ._decode import DecimalMode, EventTypeMode, Options, StreamIdMode, decode_all
from ._report import ImportReport, problems_frame

if TYPE_CHECKING:
    from ..store.base import EventStore

__all__ = [
    "import_eventsourcing_postgres",
    "import_eventsourcing_sqlite",
    "read_eventsourcing_postgres",
    "read_eventsourcing_sqlite",
]


#: Rows fetched and decoded per batch: big enough for vectorised decoding to pay off,
#: small enough that the raw bytes of one batch stay a few tens of megabytes.
BATCH_SIZE = 200_000

_COLUMNS = ("originator_id", "originator_version", "topic", "state")


# ---------------------------------------------------------------------- public: SQLite
def read_eventsourcing_sqlite(
    path: str | os.PathLike[str],
    *,
    table: str = "stored_events",
    event_types: EventTypeMode | Callable[[str], str] = "qualname",
    stream_ids: StreamIdMode = "prefixed",
    decimals: DecimalMode = "float",
    transcodings: Mapping[str, Callable[[Any], Any]] | None = None,
    decrypt: Callable[[bytes], bytes] | None = None,
    batch_size: int = BATCH_SIZE,
) -> pl.DataFrame:
    """Decode an ``eventsourcing`` SQLite database into a frame ready for ``append_frame``.

    The database is opened read-only. See :func:`import_eventsourcing_sqlite` for the
    parameters; this function stops before the store.

    Examples
    --------
    >>> frame = read_eventsourcing_sqlite("shop.sqlite")  # doctest: +SKIP
    >>> frame.columns[:4]  # doctest: +SKIP
    ['stream_id', 'version', 'event_type', 'recorded_at']
    """
    options = Options(event_types, stream_ids, decimals, transcodings, decrypt)
    _check_batch_size(batch_size)
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no SQLite database at {str(source)!r}")
    conn = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    try:
        _check_sqlite_table(conn, table, source)
        total = conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
        cursor = conn.execute(
            "SELECT rowid, originator_id, originator_version, topic, state "
            f'FROM "{table}" ORDER BY rowid'
        )
        return decode_all(_batches(cursor, batch_size), total, options, f"{source.name}:{table}")
    except sqlite3.DatabaseError as exc:
        raise EventDataError(
            f"{str(source)!r} could not be read as an eventsourcing SQLite database ({exc})"
        ) from None
    finally:
        conn.close()


def import_eventsourcing_sqlite(
    path: str | os.PathLike[str],
    *,
    into: EventStore | None = None,
    table: str = "stored_events",
    event_types: EventTypeMode | Callable[[str], str] = "qualname",
    stream_ids: StreamIdMode = "prefixed",
    decimals: DecimalMode = "float",
    transcodings: Mapping[str, Callable[[Any], Any]] | None = None,
    decrypt: Callable[[bytes], bytes] | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import the events of an ``eventsourcing`` application's SQLite database.

    Reads the ``stored_events`` table (``PERSISTENCE_MODULE=eventsourcing.sqlite``) in
    notification order, in batches, with a progress bar; decodes every event; then commits
    them all in one atomic append. Nothing is written if anything fails.

    Parameters
    ----------
    path
        The SQLite file (the application's ``SQLITE_DBNAME``).
    into
        The store to import into (default: a new :class:`~esnotebook.InMemoryEventStore`,
        returned as ``report.store``). Streams that already exist in it must continue at
        their stored version, else :class:`~esnotebook.ConcurrencyError`.
    table
        The events table (``"stored_events"``; ``"stored_snapshots"`` holds snapshots).
    event_types
        ``"qualname"`` turns the topic ``"shop.domain:Order.ItemAdded"`` into
        ``"Order.ItemAdded"``, ``"name"`` into ``"ItemAdded"``; or a function of the topic.
    stream_ids
        ``"prefixed"``: ``"<aggregate class, lower-cased>-<originator id>"`` (e.g.
        ``"order-6e2f…"``), the aggregate read from the topic of each stream's first event;
        ``"id"``: the originator id alone (a UUID as a dashed string).
    decimals
        ``Decimal`` values become ``"float"`` columns (good for analysis) or exact
        ``"str"`` ones.
    transcodings
        Decoders for custom transcodings the application registered, by name:
        ``{"money": lambda data: data["cents"]}``. Each must return a storable value.
    decrypt
        The application's cipher's ``decrypt`` (e.g.
        ``AESCipher(Environment(env=...)).decrypt``) when its events are encrypted;
        without it an encrypted store is refused with an error.
    batch_size
        Rows fetched and decoded at a time.

    Returns
    -------
    ImportReport
        ``.store``, ``.positions`` of the imported events, and an empty ``.problems``.

    Examples
    --------
    >>> import esnotebook as es
    >>> report = es.import_eventsourcing_sqlite("shop.sqlite")  # doctest: +SKIP
    >>> report.store.to_polars().group_by("event_type").len()  # doctest: +SKIP
    """
    frame = read_eventsourcing_sqlite(
        path, table=table, event_types=event_types, stream_ids=stream_ids, decimals=decimals,
        transcodings=transcodings, decrypt=decrypt, batch_size=batch_size,
    )  # fmt: skip
    return _commit(frame, into, str(path))


# ---------------------------------------------------------------------- public: PostgreSQL
def read_eventsourcing_postgres(
    conninfo: str,
    *,
    table: str | None = None,
    schema: str = "public",
    event_types: EventTypeMode | Callable[[str], str] = "qualname",
    stream_ids: StreamIdMode = "prefixed",
    decimals: DecimalMode = "float",
    transcodings: Mapping[str, Callable[[Any], Any]] | None = None,
    decrypt: Callable[[bytes], bytes] | None = None,
    batch_size: int = BATCH_SIZE,
) -> pl.DataFrame:
    """Decode an ``eventsourcing`` PostgreSQL events table into a frame for ``append_frame``.

    See :func:`import_eventsourcing_postgres` for the parameters.
    """
    options = Options(event_types, stream_ids, decimals, transcodings, decrypt)
    _check_batch_size(batch_size)
    psycopg = _import_psycopg()
    from psycopg import sql

    with psycopg.connect(conninfo) as conn:
        conn.read_only = True
        table = _find_postgres_table(conn, schema, table)
        name = sql.Identifier(schema, table)
        with conn.transaction():
            total = conn.execute(sql.SQL("SELECT COUNT(*) FROM {}").format(name)).fetchone()[0]
            # A server-side (named) cursor streams the table instead of loading it whole.
            with conn.cursor(name="esnotebook_import") as cursor:
                cursor.itersize = batch_size
                cursor.execute(
                    sql.SQL(
                        "SELECT notification_id, originator_id::text, originator_version, "
                        "topic, state FROM {} ORDER BY notification_id"
                    ).format(name)
                )
                return decode_all(
                    _batches(cursor, batch_size), total, options, f"postgres:{schema}.{table}"
                )


def import_eventsourcing_postgres(
    conninfo: str,
    *,
    into: EventStore | None = None,
    table: str | None = None,
    schema: str = "public",
    event_types: EventTypeMode | Callable[[str], str] = "qualname",
    stream_ids: StreamIdMode = "prefixed",
    decimals: DecimalMode = "float",
    transcodings: Mapping[str, Callable[[Any], Any]] | None = None,
    decrypt: Callable[[bytes], bytes] | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import the events of an ``eventsourcing`` application's PostgreSQL table.

    The library names the table after the application: ``<application name,
    lower-cased>_events`` (``PERSISTENCE_MODULE=eventsourcing.postgres``). Needs
    ``psycopg`` (``pip install "psycopg[binary]"``). The connection is read-only; rows are
    streamed through a server-side cursor in notification-id order.

    Parameters
    ----------
    conninfo
        A libpq connection string or URL, e.g. ``"postgresql://user@localhost:5432/shop"``.
    table
        The events table; by default the one table in ``schema`` whose name ends in
        ``_events`` and that has the library's columns (an error lists them if there are
        several).
    schema
        The PostgreSQL schema (the library's ``POSTGRES_SCHEMA``; default ``"public"``).
    into, event_types, stream_ids, decimals, transcodings, decrypt, batch_size
        As for :func:`import_eventsourcing_sqlite`.

    Examples
    --------
    >>> import esnotebook as es
    >>> report = es.import_eventsourcing_postgres(  # doctest: +SKIP
    ...     "postgresql://es@localhost/shop", table="shop_events")
    """
    frame = read_eventsourcing_postgres(
        conninfo, table=table, schema=schema, event_types=event_types, stream_ids=stream_ids,
        decimals=decimals, transcodings=transcodings, decrypt=decrypt, batch_size=batch_size,
    )  # fmt: skip
    return _commit(frame, into, f"postgres table {schema}.{table or '*_events'}")


# ---------------------------------------------------------------------- sources
def _check_batch_size(batch_size: object) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"'batch_size' must be an int >= 1 (got {batch_size!r})")


def _batches(cursor: Any, size: int) -> Iterator[list[tuple[Any, ...]]]:
    while rows := cursor.fetchmany(size):
        yield rows


def _check_sqlite_table(conn: sqlite3.Connection, table: str, source: Path) -> None:
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    if table not in tables:
        candidates = [t for t in tables if _sqlite_columns(conn, t) >= set(_COLUMNS)]
        hint = (
            f"; tables with eventsourcing's columns: {', '.join(candidates)}" if candidates else ""
        )
        raise EventDataError(
            f"{str(source)!r} has no table {table!r} (tables: {', '.join(tables) or 'none'}){hint}"
        )
    missing = set(_COLUMNS) - _sqlite_columns(conn, table)
    if missing:
        raise EventDataError(
            f"table {table!r} in {str(source)!r} is not an eventsourcing events table: it lacks "
            f"column(s) {', '.join(sorted(missing))} (expected {', '.join(_COLUMNS)})"
        )


def _sqlite_columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')}


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ImportError(
            "reading PostgreSQL needs psycopg: pip install 'psycopg[binary]'"
        ) from None
    return psycopg


def _find_postgres_table(conn: Any, schema: str, table: str | None) -> str:
    rows = conn.execute(
        "SELECT table_name, array_agg(column_name::text) FROM information_schema.columns "
        "WHERE table_schema = %s GROUP BY table_name",
        (schema,),
    ).fetchall()
    columns = {name: set(cols) for name, cols in rows}
    wanted = {*_COLUMNS, "notification_id"}
    candidates = sorted(n for n, cols in columns.items() if cols >= wanted)
    if table is not None:
        if table not in columns:
            raise EventDataError(
                f"PostgreSQL schema {schema!r} has no table {table!r} "
                f"(eventsourcing events tables there: {', '.join(candidates) or 'none'})"
            )
        if table not in candidates:
            raise EventDataError(
                f"table {schema}.{table} is not an eventsourcing events table: it lacks "
                f"{', '.join(sorted(wanted - columns[table]))}"
            )
        return table
    events = [n for n in candidates if n.endswith("_events")]
    if len(events) != 1:
        raise EventDataError(
            f"pass table=...: PostgreSQL schema {schema!r} has {len(events)} eventsourcing events "
            f"tables named '*_events' (found: {', '.join(events) or 'none'}); the library names "
            "it '<application name>_events'"
        )
    return events[0]


def _commit(frame: pl.DataFrame, into: EventStore | None, source: str) -> ImportReport:
    if into is None:
        from ..store.memory import InMemoryEventStore

        into = InMemoryEventStore()
    positions = into.append_frame(frame)
    return ImportReport(source, into, positions, problems_frame([]), None)
