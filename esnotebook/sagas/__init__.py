"""Sagas (process managers): long-running work across aggregates, with compensation.

>>> from esnotebook.sagas import Retry, Saga, SagaRunner, SimulatedClock, Step
"""

from __future__ import annotations

from .clock import SimulatedClock, WallClock
from .definition import Retry, Saga, Step
from .instance import SagaInstance
from .runner import SagaRunner

__all__ = ["Retry", "Saga", "SagaInstance", "SagaRunner", "SimulatedClock", "Step", "WallClock"]
