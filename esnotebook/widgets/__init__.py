"""Interactive explorers for Jupyter (ipywidgets): lag, rebuild cost, saga failure, and a
store browser. Each function returns its widget without displaying it; what it computes
lives in pure functions (:mod:`esnotebook.widgets._compute`) that work without widgets.

>>> from esnotebook.widgets import browse, burst_schedule
>>> burst_schedule(100, burst_size=2, burst_length=5, duration=50)
[(0.0, 100.0), (10.0, 200.0), (15.0, 100.0)]
"""

from __future__ import annotations

from ._compute import (
    BrowserPage,
    browse,
    burst_schedule,
    lag_explorer_result,
    rebuild_explorer_result,
    saga_explorer_result,
)
from .explorers import lag_explorer, rebuild_explorer, saga_explorer, store_browser

__all__ = [
    "BrowserPage",
    "browse",
    "burst_schedule",
    "lag_explorer",
    "lag_explorer_result",
    "rebuild_explorer",
    "rebuild_explorer_result",
    "saga_explorer",
    "saga_explorer_result",
    "store_browser",
]
