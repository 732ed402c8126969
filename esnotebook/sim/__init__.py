"""Simulation helpers for capacity planning.

>>> import esnotebook.sim as sim
>>> r = sim.simulate_lag(50, service_rate=100, duration=100, seed=0)
>>> r.grows_without_bound
False
"""

from __future__ import annotations

from . import theory
from ._result import LagResult
from .capacity import CapacityResult, required_capacity
from .lag import simulate_lag
from .sweep import run_sweep

__all__ = [
    "CapacityResult",
    "LagResult",
    "required_capacity",
    "run_sweep",
    "simulate_lag",
    "theory",
]
