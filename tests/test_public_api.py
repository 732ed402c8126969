"""The public face: one curated namespace, kept sorted and complete, and a light import."""

from __future__ import annotations

import importlib
import subprocess
import sys

import esnotebook as es

# Modules whose ``__all__`` is part of the public face: everything they export must be
# reachable as ``es.<name>``.
PUBLIC_MODULES = [
    "esnotebook.aggregates",
    "esnotebook.commands",
    "esnotebook.errors",
    "esnotebook.events",
    "esnotebook.faults",
    "esnotebook.idempotency",
    "esnotebook.projections",
    "esnotebook.readmodels",
    "esnotebook.runner",
    "esnotebook.sagas",
    "esnotebook.repository",
    "esnotebook.snapshots",
    "esnotebook.store",
    "esnotebook.tracing",
]


def test_all_is_sorted_and_unique():
    assert list(es.__all__) == sorted(set(es.__all__))


def test_every_exported_name_exists():
    missing = [name for name in es.__all__ if not hasattr(es, name)]
    assert missing == []


def test_public_modules_are_fully_exported():
    """A name a public module exports is reachable from the top-level namespace."""
    absent = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if name not in es.__all__ or getattr(es, name) is not getattr(module, name):
                absent.append(f"{module_name}.{name}")
    assert absent == []


def test_import_is_headless_and_light():
    """`import esnotebook` pulls in no plotting, widget, progress, dask or IPython module."""
    code = (
        "import sys, esnotebook; "
        "heavy = ['matplotlib', 'ipywidgets', 'tqdm', 'dask', 'distributed', 'IPython', "
        "'simpy', 'eventsourcing', 'duckdb']; "
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
