"""Parameter sweeps: any simulation over a grid and seeds, into one tidy frame."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import polars as pl

__all__ = ["run_sweep"]

_SCALARS = (bool, int, float, str, type(None))


def _points(
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    if isinstance(grid, Mapping):
        for name, values in grid.items():
            if not isinstance(name, str):
                raise ValueError(f"grid keys must be parameter names (got {name!r})")
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
                raise ValueError(
                    f"grid[{name!r}] must be a non-empty list of values (got {values!r})"
                )
        names = list(grid)
        return [dict(zip(names, combo)) for combo in itertools.product(*grid.values())]
    if (
        isinstance(grid, Sequence)
        and not isinstance(grid, (str, bytes))
        and grid
        and all(isinstance(p, Mapping) for p in grid)
    ):
        return [dict(p) for p in grid]
    raise ValueError(
        "'grid' must be a dict of parameter -> list of values, or a non-empty list of dicts "
        f"(got {grid!r})"
    )


def _seeds(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, bool):
        raise ValueError(f"'seeds' must be an int >= 1 or a list of ints (got {seeds!r})")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"'seeds' must be an int >= 1 or a list of ints (got {seeds!r})")
        return list(range(seeds))
    out = list(seeds)
    if not out or not all(isinstance(s, int) and not isinstance(s, bool) for s in out):
        raise ValueError(f"'seeds' must be an int >= 1 or a non-empty list of ints (got {seeds!r})")
    return out


def _rows(result: Any) -> list[dict[str, Any]]:
    """A run's result as rows: dicts, frames, ``.to_dict()`` objects or a single number."""
    if isinstance(result, pl.DataFrame):
        return result.to_dicts()
    if hasattr(result, "to_dict") and callable(result.to_dict):
        result = result.to_dict()
    if isinstance(result, Mapping):
        return [dict(result)]
    if isinstance(result, (bool, int, float)):
        return [{"value": result}]
    raise TypeError(
        "a sweep function must return a dict, a polars DataFrame, a number, or an object "
        f"with .to_dict() (got {type(result).__name__})"
    )


def _call(fn: Callable[..., Any], point: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Run one grid point on a worker and bring back only its rows, not the whole result."""
    return _rows(fn(**point, seed=seed))


def _cell(value: Any) -> Any:
    # Schedules and other structured parameters go in as their repr: one column type per name.
    return value if isinstance(value, _SCALARS) else repr(value)


def run_sweep(
    fn: Callable[..., Any],
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    *,
    seeds: int | Sequence[int] = 1,
    executor: Any = None,
    progress: bool = True,
) -> pl.DataFrame:
    """Run ``fn(**point, seed=s)`` for every grid point and seed; one tidy frame back.

    Parameters
    ----------
    fn
        A module-level function (so it can travel to worker processes) taking the grid's
        parameters and ``seed``, returning a dict, a polars DataFrame, a number, or an
        object with ``.to_dict()`` such as :class:`~esnotebook.sim.LagResult`.
    grid
        ``{"param": [values, ...]}`` for the full product, or a list of parameter dicts.
    seeds
        A number of replications (seeds ``0 … n-1``) or the seeds themselves.
    executor
        Anything with ``submit(fn, *args)`` returning futures with ``.result()``:
        ``concurrent.futures`` pools or a Dask ``distributed.Client``. ``None`` runs here.
        For a ``ProcessPoolExecutor`` pass ``mp_context=multiprocessing.get_context("spawn")``:
        a forked child of a process running polars' thread pool can deadlock.
    progress
        Show a ``tqdm.auto`` progress bar.

    Returns
    -------
    polars.DataFrame
        The parameters, ``seed``, then the result columns; one row per run (per result row).
        A result column named like a parameter (or ``seed``) appears once when it repeats
        that parameter's value in every run, as ``events``, ``streams`` and ``interval`` of
        :func:`~esnotebook.sim.rebuild_cost` or ``instances`` of
        :func:`~esnotebook.sim.simulate_sagas` do; when it differs in any run it is kept
        beside the parameter as ``result_<name>``. A ``ValueError`` only if that name is
        taken as well.

    Examples
    --------
    >>> from esnotebook.sim import run_sweep, simulate_lag
    >>> from functools import partial
    >>> frame = run_sweep(partial(simulate_lag, duration=50), {"arrival_rate": [10, 20],
    ...                   "service_rate": [40]}, seeds=2, progress=False)
    >>> frame.height
    4
    """
    if not callable(fn):
        raise ValueError(f"'fn' must be callable (got {fn!r})")
    points = _points(grid)
    seed_list = _seeds(seeds)
    jobs = [(p, s) for p in points for s in seed_list]
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise ValueError(f"'executor' must have a submit() method (got {type(executor).__name__})")
    from .._progress import progress_bar

    bar = progress_bar(total=len(jobs), desc="sweep", enabled=progress)
    results: list[list[dict[str, Any]]] = []
    try:
        if executor is None:
            for p, s in jobs:
                results.append(_call(fn, p, s))
                bar.update()
        else:
            futures = [executor.submit(_call, fn, p, s) for p, s in jobs]
            for fut in futures:
                results.append(fut.result())
                bar.update()
    finally:
        bar.close()

    runs = [({**p, "seed": s}, row) for (p, s), out in zip(jobs, results) for row in out]
    return pl.DataFrame(_merge(runs), infer_schema_length=None)


def _same(a: Any, b: Any) -> bool:
    try:
        return a is b or bool(a == b)
    except (TypeError, ValueError):  # e.g. arrays, which have no single truth value
        return False


def _merge(runs: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, Any]]:
    """Parameter and result columns of each run, one row each, by run_sweep's naming rule."""
    differs: dict[str, tuple[dict[str, Any], Any]] = {}
    for params, row in runs:
        for name in row.keys() & params.keys():
            if name not in differs and not _same(row[name], params[name]):
                differs[name] = (params, row[name])
    renamed = {name: f"result_{name}" for name in differs}
    for name, new in renamed.items():
        if any(new in params or new in row for params, row in runs):
            params, value = differs[name]
            raise ValueError(
                f"result column {name!r} differs from the parameter {name!r} (got {value!r} "
                f"for {params!r}) and cannot be renamed {new!r}: that column exists too; "
                "rename the parameter or the result"
            )
    return [
        {
            **{k: _cell(v) for k, v in params.items()},
            **{renamed.get(k, k): v for k, v in row.items() if k in renamed or k not in params},
        }
        for params, row in runs
    ]
