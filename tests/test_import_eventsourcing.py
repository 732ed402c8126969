"""Importing the stored events of the ``eventsourcing`` library (SQLite and PostgreSQL).

The stores are made by the library itself: an Application with two aggregates writes events
through its own API, and the library's own mapper decodes them as the oracle the import must
match, event for event.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from decimal import Decimal
from uuid import UUID

import polars as pl
import pytest
from _postgres import postgres_server  # noqa: F401  (a fixture)
from hypothesis import given, settings
from hypothesis import strategies as st

from esnotebook.errors import ConcurrencyError, EventDataError
from esnotebook.importers import (
    import_eventsourcing_postgres,
    import_eventsourcing_sqlite,
    read_eventsourcing_sqlite,
)
from esnotebook.store.memory import InMemoryEventStore

eventsourcing = pytest.importorskip("eventsourcing")
from eventsourcing.application import Application  # noqa: E402
from eventsourcing.domain import Aggregate, event  # noqa: E402


class Order(Aggregate):
    @event("OrderPlaced")
    def __init__(self, customer: str) -> None:
        self.customer = customer

    @event("ItemAdded")
    def add_item(self, sku: str, quantity: int, price: int) -> None:
        pass

    @event("PaymentReceived")
    def pay(self, amount: int, fee: Decimal) -> None:
        pass


class Customer(Aggregate):
    @event("Registered")
    def __init__(self, name: str, referrer: UUID, since: datetime) -> None:
        self.name = name

    @event("Renamed")
    def rename(self, name: str, tags: list) -> None:
        self.name = name


class Shop(Application):
    pass


def make_sqlite(path, *, env=None, steps=None):
    """A SQLite store written by the library: two orders and a customer, saved interleaved."""
    app = Shop(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(path),
            **(env or {}),
        }
    )
    write_events(app, steps)
    return app


def write_events(app, steps=None):
    steps = (
        steps
        if steps is not None
        else [("order", 2), ("customer", 1), ("order", 1), ("customer", 2)]
    )
    for kind, n in steps:
        if kind == "order":
            o = Order(customer=f"c-{n}")
            for i in range(n):
                o.add_item(sku=f"sku-{i}", quantity=i + 1, price=100 * (i + 1))
            app.save(o)
            o.pay(amount=250, fee=Decimal("1.25"))
            app.save(o)
        else:
            c = Customer(
                name="Ada", referrer=UUID(int=n), since=datetime(2024, 1, n, tzinfo=timezone.utc)
            )
            for i in range(n):
                c.rename(name=f"Ada {i}", tags=[i, i + 1])
            app.save(c)


def library_view(app):
    """What the library itself decodes, in notification order: the oracle."""
    out = []
    for n in app.recorder.select_notifications(start=1, limit=10**6):
        e = app.mapper.to_domain_event(n)
        state = dict(vars(e))
        cls = type(e).__qualname__
        stream = f"{cls.split('.')[0].lower()}-{state.pop('originator_id')}"
        version = state.pop("originator_version")
        recorded_at = state.pop("timestamp")
        for k, v in state.items():
            if isinstance(v, UUID):
                state[k] = str(v)
            elif isinstance(v, Decimal):
                state[k] = float(v)
        out.append((stream, version, cls, recorded_at, state))
    return out


def imported_view(store):
    frame = store.to_polars()
    payload = [c for c in frame.columns if c not in
               ("position", "stream_id", "version", "event_type", "event_id", "recorded_at",
                "correlation_id", "causation_id")]  # fmt: skip
    out = []
    for row in frame.iter_rows(named=True):
        data = {k: row[k] for k in payload if row[k] is not None}
        out.append((row["stream_id"], row["version"], row["event_type"], row["recorded_at"], data))
    return out


def assert_same_events(app, store):
    expected = library_view(app)
    got = imported_view(store)
    assert len(got) == len(expected) > 0
    for g, e in zip(got, expected):
        assert g == e
    assert store.to_polars()["position"].to_list() == list(range(1, len(expected) + 1))


@pytest.mark.parametrize("env", [{}, {"COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor"}],
                         ids=["plain", "zlib"])  # fmt: skip
def test_sqlite_every_event_arrives_with_stream_version_order_type_and_payload(tmp_path, env):
    app = make_sqlite(tmp_path / "shop.sqlite", env=env)
    report = import_eventsourcing_sqlite(tmp_path / "shop.sqlite")
    assert_same_events(app, report.store)
    assert report.imported == len(report.store) and report.rejected == 0


def test_typed_payload_columns_datetimes_stay_datetimes_uuids_become_strings(tmp_path):
    make_sqlite(tmp_path / "shop.sqlite")
    store = import_eventsourcing_sqlite(tmp_path / "shop.sqlite").store
    assert store.schema("Customer.Registered")["since"] == pl.Datetime("us", "UTC")
    assert store.schema("Customer.Registered")["referrer"] == pl.String
    assert store.schema("Order.PaymentReceived")["fee"] == pl.Float64
    assert store.schema("Order.ItemAdded")["quantity"] == pl.Int64
    assert store.schema("Customer.Renamed")["tags"] == pl.List(pl.Int64)


@settings(max_examples=15)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["order", "customer"]), st.integers(1, 4)), min_size=1, max_size=6
    ),
    batch_size=st.integers(1, 7),
)
def test_any_history_and_any_batch_size_import_exactly_what_the_library_decodes(
    tmp_path_factory, steps, batch_size
):
    path = tmp_path_factory.mktemp("h") / "shop.sqlite"
    app = make_sqlite(path, steps=steps)
    store = InMemoryEventStore()
    import_eventsourcing_sqlite(path, into=store, batch_size=batch_size)
    assert_same_events(app, store)


def test_event_type_and_stream_id_modes(tmp_path):
    app = make_sqlite(tmp_path / "shop.sqlite")
    frame = read_eventsourcing_sqlite(tmp_path / "shop.sqlite", event_types="name", stream_ids="id")
    first = app.recorder.select_notifications(start=1, limit=1)[0]
    assert frame.row(0, named=True)["stream_id"] == str(first.originator_id)
    assert set(frame["event_type"]) == {
        "OrderPlaced",
        "ItemAdded",
        "PaymentReceived",
        "Registered",
        "Renamed",
    }
    custom = read_eventsourcing_sqlite(
        tmp_path / "shop.sqlite", event_types=lambda t: t.split(".")[-1].upper()
    )
    assert "ORDERPLACED" in set(custom["event_type"])
    exact = read_eventsourcing_sqlite(tmp_path / "shop.sqlite", decimals="str")
    assert exact.filter(pl.col("fee").is_not_null())["fee"].unique().to_list() == ["1.25"]


def test_bad_option_values_are_refused_with_the_value_named(tmp_path):
    make_sqlite(tmp_path / "shop.sqlite")
    with pytest.raises(ValueError, match=r"'stream_ids' must be 'prefixed' or 'id' \(got 'uuid'\)"):
        read_eventsourcing_sqlite(tmp_path / "shop.sqlite", stream_ids="uuid")
    with pytest.raises(ValueError, match=r"'batch_size' must be an int >= 1 \(got 0\)"):
        read_eventsourcing_sqlite(tmp_path / "shop.sqlite", batch_size=0)


def test_encrypted_store_is_refused_unless_a_decrypt_function_is_given(tmp_path):
    from eventsourcing.cryptography import AESCipher
    from eventsourcing.utils import Environment

    key = AESCipher.create_key(16)
    env = {"CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher", "CIPHER_KEY": key}
    app = make_sqlite(tmp_path / "shop.sqlite", env=env)
    with pytest.raises(EventDataError, match="encrypt"):
        import_eventsourcing_sqlite(tmp_path / "shop.sqlite")
    cipher = AESCipher(Environment(env={"CIPHER_KEY": key}))
    report = import_eventsourcing_sqlite(tmp_path / "shop.sqlite", decrypt=cipher.decrypt)
    assert_same_events(app, report.store)


def test_custom_transcoding_needs_a_decoder_and_then_imports(tmp_path):
    from eventsourcing.persistence import Transcoding

    class Money:
        def __init__(self, cents):
            self.cents = cents

    class MoneyAsCents(Transcoding):
        type = Money
        name = "money"

        def encode(self, obj):
            return obj.cents

        def decode(self, data):
            return Money(data)

    class PricedShop(Shop):
        def register_transcodings(self, transcoder):
            super().register_transcodings(transcoder)
            transcoder.register(MoneyAsCents())

    path = tmp_path / "shop.sqlite"
    app = PricedShop(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)})
    o = Order(customer="c")
    o.pay(amount=Money(990), fee=Decimal("0.5"))
    app.save(o)
    with pytest.raises(EventDataError, match=r"custom transcoding 'money'.*transcodings=\{'money'"):
        import_eventsourcing_sqlite(path)
    store = import_eventsourcing_sqlite(path, transcodings={"money": int}).store
    assert store.to_polars(event_types=["Order.PaymentReceived"])["amount"].to_list() == [990]


def test_a_failing_import_leaves_the_store_untouched(tmp_path):
    """A stream that already exists in the target must continue at its version; if not,
    nothing at all is imported."""
    make_sqlite(tmp_path / "shop.sqlite")
    store = InMemoryEventStore()
    first = import_eventsourcing_sqlite(tmp_path / "shop.sqlite", into=store)
    before = store.to_polars()
    with pytest.raises(ConcurrencyError):
        import_eventsourcing_sqlite(tmp_path / "shop.sqlite", into=store)
    assert store.to_polars().equals(before) and len(store) == first.imported


def test_missing_table_is_named_with_the_tables_there(tmp_path):
    make_sqlite(tmp_path / "shop.sqlite")
    with pytest.raises(EventDataError, match=r"no table 'events' \(tables: stored_events\)"):
        import_eventsourcing_sqlite(tmp_path / "shop.sqlite", table="events")
    with pytest.raises(FileNotFoundError, match="no SQLite database"):
        import_eventsourcing_sqlite(tmp_path / "nope.sqlite")


def test_the_source_database_is_opened_read_only(tmp_path):
    path = tmp_path / "shop.sqlite"
    make_sqlite(path)
    before = path.read_bytes()
    import_eventsourcing_sqlite(path)
    assert path.read_bytes() == before
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0] > 0


def test_postgres_every_event_arrives_with_stream_version_order_type_and_payload(postgres_server):
    import psycopg

    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS shop")
        conn.execute("CREATE DATABASE shop")
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": "shop",
        "POSTGRES_HOST": postgres_server.host,
        "POSTGRES_PORT": str(postgres_server.port),
        "POSTGRES_USER": postgres_server.user,
        "POSTGRES_PASSWORD": "",
        "COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor",
    }
    app = Shop(env=env)
    try:
        write_events(app)
        report = import_eventsourcing_postgres(postgres_server.conninfo("shop"), batch_size=4)
        assert_same_events(app, report.store)
        named = import_eventsourcing_postgres(postgres_server.conninfo("shop"), table="shop_events")
        assert (
            named.store.to_polars()
            .drop("event_id", "correlation_id")
            .equals(report.store.to_polars().drop("event_id", "correlation_id"))
        )
        with pytest.raises(EventDataError, match="no table 'nope'.*shop_events"):
            import_eventsourcing_postgres(postgres_server.conninfo("shop"), table="nope")
    finally:
        app.close()


def test_the_docs_end_to_end_example_runs_and_its_checks_hold(monkeypatch):
    """docs/importing.md's example (to become a notebook) runs as written, at a small size."""
    import re
    from pathlib import Path

    import esnotebook
    import esnotebook.importers as importers

    # The public es.* names are added by the lead in esnotebook/__init__.py; until then
    # the example reaches them through the importers package.
    for name in importers.__all__:
        monkeypatch.setattr(esnotebook, name, getattr(importers, name), raising=False)
    text = (Path(__file__).parents[1] / "docs" / "importing.md").read_text()
    cells = re.findall(r"```python\n(.*?)```", text[text.index("## Example") :], re.S)
    cells[0] = cells[0].replace("ORDERS = 200", "ORDERS = 30")
    ns: dict = {}
    for cell in cells:
        exec(compile(cell, "docs/importing.md", "exec"), ns)
    events = ns["events"]
    assert events.filter(pl.col("event_type") == "OrderPlaced").height == 30
    mismatched = (
        ns["paid"].join(ns["totals"], on="stream_id").filter(pl.col("amount") != pl.col("total"))
    )
    assert ns["paid"].height > 0 and mismatched.height == 0
    assert set(events["event_type"]) <= {
        "OrderPlaced",
        "ItemAdded",
        "PaymentReceived",
        "OrderShipped",
    }
    assert events["stream_id"].str.starts_with("order-").all()


class Ledger(Aggregate):
    @event("Opened")
    def __init__(self, code: str) -> None:
        pass

    @event("Recoded")
    def recode(self, code: int) -> None:
        pass


def test_a_field_with_two_types_across_event_types_is_refused_by_name(tmp_path):
    path = tmp_path / "shop.sqlite"
    app = Shop(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)})
    ledger = Ledger(code="L-1")
    ledger.recode(code=7)
    app.save(ledger)
    store = InMemoryEventStore()
    with pytest.raises(
        EventDataError,
        match=r"field 'code' is String in Ledger.Opened events but Int64 in Ledger.Recoded",
    ):
        import_eventsourcing_sqlite(path, into=store, batch_size=1)
    assert len(store) == 0


def test_ints_then_floats_in_one_field_of_one_event_type_make_a_float_field(tmp_path):
    """As the store's own append does, across batches too."""
    path = tmp_path / "shop.sqlite"
    app = Shop(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)})
    o = Order(customer="c")
    o.add_item(sku="a", quantity=1, price=100)
    o.add_item(sku="b", quantity=1, price=2.5)
    app.save(o)
    store = import_eventsourcing_sqlite(path, batch_size=2).store
    assert store.schema("Order.ItemAdded")["price"] == pl.Float64
    assert store.to_polars(event_types=["Order.ItemAdded"])["price"].to_list() == [100.0, 2.5]
