"""Simulation helpers for capacity planning.

>>> import esnotebook.sim as sim
>>> r = sim.simulate_lag(50, service_rate=100, duration=100, seed=0)
>>> r.grows_without_bound
False
"""

from __future__ import annotations

from . import theory
from ._costs import RebuildCosts, calibrate
from ._result import LagResult
from ._saga_result import SagaResult
from .capacity import CapacityResult, required_capacity
from .lag import simulate_lag
from .profile import ServiceProfile, measure_consumer
from .rebuild import RebuildResult, rebuild_cost
from .sagas import simulate_sagas
from .sweep import run_sweep

__all__ = [
    "CapacityResult",
    "LagResult",
    "RebuildCosts",
    "RebuildResult",
    "SagaResult",
    "ServiceProfile",
    "calibrate",
    "measure_consumer",
    "rebuild_cost",
    "required_capacity",
    "run_sweep",
    "simulate_lag",
    "simulate_sagas",
    "theory",
]
