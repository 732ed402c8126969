"""Datasets: synthetic workloads generated on demand (and, later, shipped sample stores).

>>> from esnotebook.datasets import generate_orders
>>> generate_orders(10, seed=1).height > 10
True
"""

from __future__ import annotations

from .catalog import DATASETS, Dataset, cache_dir, generate, load, path
from .checks import order_violations
from .orders import (
    ORDER_EVENT_TYPES,
    ORDER_FRAME_SCHEMA,
    expected_events_per_order,
    generate_orders,
)

__all__ = [
    "DATASETS",
    "Dataset",
    "ORDER_EVENT_TYPES",
    "ORDER_FRAME_SCHEMA",
    "cache_dir",
    "expected_events_per_order",
    "generate",
    "generate_orders",
    "load",
    "order_violations",
    "path",
]
