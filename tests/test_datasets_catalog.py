"""Named datasets: the shipped sample, its data card, working copies and regeneration."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

import esnotebook.datasets as ds
from esnotebook.datasets.catalog import SHIPPED_DIR
from esnotebook.store import ParquetEventStore

CARD = Path(__file__).resolve().parents[1] / "datasets" / "orders-small.md"
IDS = ["event_id", "correlation_id"]  # assigned by the store, so new on every build


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ESNOTEBOOK_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_shipped_sample_is_small_and_a_valid_store():
    """The shipped store stays a few MB and every history obeys the order rules."""
    size = sum(f.stat().st_size for f in SHIPPED_DIR.joinpath("orders-small").rglob("*") if f.is_file())
    assert size < 5_000_000
    frame = ParquetEventStore(SHIPPED_DIR / "orders-small").to_polars()
    assert 20_000 <= frame.height <= 60_000
    assert ds.order_violations(frame).height == 0


def test_load_gives_a_working_copy_that_leaves_the_shipped_files_alone(private_cache):
    """Appending to the loaded store changes the copy, not the shipped dataset; fresh=True undoes it."""
    import esnotebook as es

    store = ds.load("orders-small")
    assert store.path.parent == private_cache
    before = len(store)
    store.append("order-extra", [es.NewEvent("OrderPlaced", {"order_id": "extra", "customer": "c-1"})])
    store.close()
    assert len(ds.load("orders-small")) == before + 1
    assert len(ParquetEventStore(SHIPPED_DIR / "orders-small")) == before
    assert len(ds.load("orders-small", fresh=True)) == before


def test_regenerating_the_sample_gives_the_shipped_events():
    """generate() rebuilds the shipped dataset from its recipe: the same events, new ids."""
    shipped = ParquetEventStore(SHIPPED_DIR / "orders-small").to_polars().drop(IDS)
    again = ds.generate("orders-small").to_polars().drop(IDS)
    assert again.equals(shipped)


def test_generate_scales_by_events_and_seed(private_cache):
    small = ds.generate("orders-medium", events=3_000, seed=1)
    assert 2_400 <= len(small) <= 3_600
    other = ds.generate("orders-medium", events=3_000, seed=2)
    assert not small.to_polars().drop(IDS).equals(other.to_polars().drop(IDS))
    assert small.path != other.path and small.path.parent == private_cache


def test_generate_refuses_a_folder_of_foreign_files(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a dataset"):
        ds.generate("orders-small", events=100, folder=folder)
    assert (folder / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_generate_refuses_bad_sizes(bad):
    with pytest.raises(ValueError, match="'events' must be a positive int"):
        ds.generate("orders-small", events=bad)


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(KeyError, match="orders-small"):
        ds.path("orders-huge")


def test_data_card_numbers_match_the_shipped_store():
    """Every count in the data card is the store's own."""
    frame = ParquetEventStore(SHIPPED_DIR / "orders-small").to_polars()
    card = CARD.read_text()
    counts = dict(frame.group_by("event_type").len().iter_rows())
    for event_type, n in counts.items():
        assert re.search(rf"\| {event_type} \| {n:,} \|", card), event_type
    row = f"| {frame.height:,} | {frame['stream_id'].n_unique():,} | {frame['customer'].n_unique():,} | {frame['sku'].n_unique():,} |"
    assert row in card
    schema_rows = re.findall(r"^\| (\w+) \| (`.+`) \|$", card, flags=re.M)
    store = ParquetEventStore(SHIPPED_DIR / "orders-small")
    for event_type, fields in schema_rows:
        assert re.findall(r"`(\w+)`", fields) == list(store.schema(event_type)), event_type
    assert isinstance(frame.schema["recorded_at"], pl.Datetime)
