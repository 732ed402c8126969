"""Named datasets: a small sample store shipped with the project, bigger ones made on demand.

Notebooks never use relative paths: ``es.datasets.load("orders-small")`` hands back a
:class:`~esnotebook.ParquetEventStore` on a private working copy (so exercises that append
to it never touch the shipped files), and ``es.datasets.generate(...)`` makes any dataset
again from its recipe, so an installed package without the shipped files still works.

Working copies live in ``$ESNOTEBOOK_DATA`` if set, else ``$XDG_CACHE_HOME/esnotebook``
(``~/.cache/esnotebook``).
"""

from __future__ import annotations

import html
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .orders import expected_events_per_order, generate_orders

__all__ = ["DATASETS", "Dataset", "cache_dir", "generate", "load", "path"]

_RECIPE_FILE = "dataset.json"
#: Where the project keeps shipped datasets: ``<repository>/datasets/<name>/``.
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "datasets"


@dataclass(frozen=True, slots=True)
class Dataset:
    """The recipe of a named dataset: the workload generator's arguments.

    ``orders`` and ``seed`` fix the events exactly (event ids aside, which the store
    assigns); ``knobs`` are passed on to :func:`generate_orders`.
    """

    name: str
    description: str
    orders: int
    seed: int
    days: float = 30
    shipped: bool = False
    knobs: dict[str, Any] = field(default_factory=dict)

    @property
    def expected_events(self) -> int:
        """Roughly how many events the recipe makes (the generator's mean per order)."""
        return round(self.orders * expected_events_per_order(**self.knobs))

    def recipe(self, *, orders: int | None = None, seed: int | None = None) -> dict[str, Any]:
        return {
            "name": self.name,
            "orders": self.orders if orders is None else orders,
            "seed": self.seed if seed is None else seed,
            "days": self.days,
            "start": _START.isoformat(),
            "knobs": self.knobs,
            # A working copy made by an older esnotebook is rebuilt, not misread. Layout 4
            # only added checksums and reads layout 3 unchanged: copies of 3 stay valid.
            "store_format": 3,
        }

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in (
                ("name", self.name),
                ("description", self.description),
                ("orders", f"{self.orders:,}"),
                ("events (about)", f"{self.expected_events:,}"),
                ("seed", self.seed),
                ("shipped", "yes" if self.shipped else "made on demand"),
            )
        )
        return f"<table>{rows}</table>"


_START = datetime(2026, 3, 2, tzinfo=timezone.utc)

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "orders-small",
            "A fortnight of a small web shop: about 24 k events over 5,000 orders. "
            "Shipped with the project; the workshop's default.",
            orders=5_000, seed=2026, days=14, shipped=True,
        ),
        Dataset(
            "orders-medium",
            "Two months of a busier shop: about 1 M events over 200,000 orders.",
            orders=200_000, seed=2026, days=60,
        ),
        Dataset(
            "orders-large",
            "A year at scale: about 10 M events over 2 M orders, for rebuilds and scaling out.",
            orders=2_000_000, seed=2026, days=365,
        ),
    )
}  # fmt: skip


def _dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(
            f"no dataset named {name!r} (datasets: {', '.join(sorted(DATASETS))})"
        ) from None


def cache_dir() -> Path:
    """The folder holding working copies of datasets."""
    env = os.environ.get("ESNOTEBOOK_DATA")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "esnotebook"


def _read_recipe(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / _RECIPE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _build(folder: Path, recipe: dict[str, Any], *, compression: str = "lz4") -> Path:
    """Generate a dataset into ``folder`` (replacing it); the recipe file is written last,
    so a folder without one is an unfinished build and is made again."""
    from ..store import ParquetEventStore
    from ..store.parquet import MARKER

    if folder.exists() and any(folder.iterdir()):
        if _read_recipe(folder) is None and not (folder / MARKER).exists():
            raise FileExistsError(
                f"{folder} holds files that are not a dataset; choose an empty or new folder"
            )
        shutil.rmtree(folder)
    frame = generate_orders(
        recipe["orders"], seed=recipe["seed"], days=recipe["days"],
        start=datetime.fromisoformat(recipe["start"]), **recipe["knobs"],
    )  # fmt: skip
    with ParquetEventStore(folder, compression=compression) as store:  # type: ignore[arg-type]
        store.append_frame(frame)
        recipe = {**recipe, "events": len(store), "streams": len(store.streams())}
    (folder / _RECIPE_FILE).write_text(json.dumps(recipe, indent=1) + "\n")
    return folder


def path(name: str, *, fresh: bool = False) -> Path:
    """The folder of a ready-to-use working copy of dataset ``name``.

    Copied from the shipped files when the project has them, otherwise generated from the
    recipe (once; later calls reuse it). ``fresh=True`` discards the working copy first,
    undoing anything appended to it.

    Examples
    --------
    >>> import esnotebook as es
    >>> es.datasets.path("orders-small").name
    'orders-small'
    """
    dataset = _dataset(name)
    folder = cache_dir() / name
    recipe = dataset.recipe()
    have = _read_recipe(folder)
    if not fresh and have is not None and all(have.get(k) == v for k, v in recipe.items()):
        return folder
    shipped = SHIPPED_DIR / name
    if dataset.shipped and _read_recipe(shipped) is not None:
        if folder.exists():
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(shipped, folder, ignore=shutil.ignore_patterns("LOCK", "_tmp"))
        return folder
    return _build(folder, recipe)


def load(name: str, *, fresh: bool = False) -> Any:
    """Open dataset ``name`` as a :class:`~esnotebook.ParquetEventStore` (a working copy).

    Examples
    --------
    >>> import esnotebook as es
    >>> store = es.datasets.load("orders-small")
    >>> len(store) > 20_000
    True
    """
    from ..store import ParquetEventStore

    return ParquetEventStore(path(name, fresh=fresh))


def generate(
    name: str,
    *,
    events: int | None = None,
    seed: int | None = None,
    folder: str | os.PathLike[str] | None = None,
) -> Any:
    """Make dataset ``name`` again from its recipe, optionally at another size or seed.

    Parameters
    ----------
    name
        A key of :data:`DATASETS`.
    events
        About how many events to make (default: the recipe's size).
    seed
        The generator's seed (default: the recipe's).
    folder
        Where to write the store (default: a folder named after the dataset, size and
        seed under :func:`cache_dir`; reused if it already holds the same recipe).

    Returns
    -------
    ParquetEventStore
    """
    from ..store import ParquetEventStore

    dataset = _dataset(name)
    if events is not None and (isinstance(events, bool) or not isinstance(events, int) or events < 1):
        raise ValueError(f"'events' must be a positive int (got {events!r})")
    per_order = expected_events_per_order(**dataset.knobs)
    orders = None if events is None else max(1, round(events / per_order))
    recipe = dataset.recipe(orders=orders, seed=seed)
    if folder is None:
        folder = cache_dir() / f"{name}-o{recipe['orders']}-s{recipe['seed']}"
    folder = Path(folder)
    have = _read_recipe(folder)
    if have is None or any(have.get(k) != v for k, v in recipe.items()):
        _build(folder, recipe)
    return ParquetEventStore(folder)
