"""Shared fixtures. ``store`` runs a test once per backend: the contract in one place."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import esnotebook as es

# Progress bars stay silent in tests, as in CI.
os.environ.setdefault("TQDM_DISABLE", "1")

# The machine is shared and noisy: no per-example deadlines. CI runs a fixed, derandomised
# budget so a red build is reproducible; locally hypothesis explores more freely.
settings.register_profile(
    "ci", deadline=None, derandomize=True, max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

BACKENDS = ["memory", "parquet"]


def make_store(kind: str, tmp_path, **kwargs):
    if kind == "memory":
        return es.InMemoryEventStore(**kwargs)
    return es.ParquetEventStore(tmp_path / "store", **kwargs)


@pytest.fixture(params=BACKENDS)
def store_factory(request, tmp_path):
    """A function making a fresh store of the parametrised backend (``**kwargs`` passed on)."""
    made = []

    def factory(**kwargs):
        s = make_store(request.param, tmp_path / f"s{len(made)}", **kwargs)
        made.append(s)
        return s

    factory.kind = request.param
    yield factory
    for s in made:
        close = getattr(s, "close", None)
        if close is not None:
            close()


@pytest.fixture
def store(store_factory):
    """A fresh, empty store of each backend."""
    return store_factory()
