"""The consumer engines: when each event is done, given when it arrived and its work.

A single FIFO consumer with one event per poll and no pauses is the Lindley recursion
``D[n] = max(A[n], D[n-1]) + S[n]``, solved in closed form with cumulative sums:
``D = C + maximum.accumulate(A - C_prev)`` where ``C`` is the running sum of service times.
Everything else (several competing consumers, batches with per-batch overhead, pauses)
runs in a lean event loop over batches: a heap of consumer free times, bisect on plain
lists, no object per event.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Served", "lindley", "merge_pauses", "serve"]


@dataclass(frozen=True, slots=True)
class Served:
    """Per event: done time (arrival order); per batch: busy interval of its consumer."""

    done: np.ndarray
    busy_start: np.ndarray
    busy_end: np.ndarray


def lindley(arrival: np.ndarray, service: np.ndarray) -> np.ndarray:
    """Departure times of a single FIFO server, vectorised (no Python loop)."""
    c = np.cumsum(service)
    c_prev = c - service
    # D_n = max_k<=n (A_k + S_k + ... + S_n) = C_n + max_k<=n (A_k - C_{k-1})
    return c + np.maximum.accumulate(arrival - c_prev)


def merge_pauses(pauses: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Sorted, non-overlapping ``(starts, ends)`` of ``(start_time, duration)`` pauses."""
    intervals = []
    for i, pause in enumerate(pauses):
        try:
            start, length = (float(x) for x in pause)
        except (TypeError, ValueError):
            raise ValueError(
                f"'pauses[{i}]' must be a (start_time, duration) pair (got {pause!r})"
            ) from None
        if not (start >= 0 and length > 0 and np.isfinite(start + length)):
            raise ValueError(
                f"'pauses[{i}]' needs start_time >= 0 and duration > 0 (got {pause!r})"
            )
        intervals.append((start, start + length))
    intervals.sort()
    starts: list[float] = []
    ends: list[float] = []
    for s, e in intervals:
        if starts and s <= ends[-1]:
            ends[-1] = max(ends[-1], e)
        else:
            starts.append(s)
            ends.append(e)
    return starts, ends


def serve(
    arrival: np.ndarray,
    service: np.ndarray,
    *,
    servers: int = 1,
    batch_size: int = 1,
    overhead: float | np.ndarray = 0.0,
    behind: float = 0.0,
    cold: float = 0.0,
    growth: float = 0.0,
    behind_growth: float = 0.0,
    reads: int = 0,
    pauses: tuple[list[float], list[float]] = ([], []),
) -> Served:
    """Serve events (sorted by ``arrival``) from one shared FIFO queue.

    A free consumer takes every queued event up to ``batch_size`` (at least one, waiting
    for the next arrival when the queue is empty), spends ``overhead`` plus their service
    times, and marks them all done at the end of the batch. No batch starts during a pause;
    a batch running when a pause begins is suspended and resumes after it. An array
    ``overhead`` (at least one value per event) gives the k-th batch the k-th value. A
    batch that leaves events waiting (arrived before it started) keeps its consumer
    ``behind`` more seconds after its events are done. A batch that starts when its
    consumer had been waiting for events costs ``cold`` more. With ``growth`` a batch's
    fixed cost grows by that many seconds per earlier read of fresh appends (``reads``,
    plus each batch so far that found events arrived since the last one started), the
    ``behind`` cost by ``behind_growth`` (an in-memory store's frame gains a chunk per
    such read, and every read walks them all).
    """
    n = len(arrival)
    if n == 0:
        empty = np.empty(0)
        return Served(empty, empty, empty)
    p_start, p_end = pauses
    grows = growth > 0 or behind_growth > 0 or cold > 0
    if batch_size == 1 and not np.isscalar(overhead) and not grows:
        service, overhead = service + overhead[:n], 0.0  # one event per batch: one cost
    simple = np.isscalar(overhead) and overhead == 0 and behind == 0 and not grows and not p_start
    if servers == 1 and batch_size == 1 and simple:
        done = lindley(arrival, service)
        return Served(done, done - service, done)
    per_batch = None if np.isscalar(overhead) else overhead.tolist()

    a = arrival.tolist()
    prefix = np.concatenate([[0.0], np.cumsum(service)]).tolist()
    free = [0.0] * min(servers, n)  # no more batches than events: extra consumers stay idle
    starts: list[float] = []
    ends: list[float] = []
    frees: list[float] = []
    bounds: list[int] = []
    n_pauses = len(p_start)
    heappop, heappush = heapq.heappop, heapq.heappush
    # Plain conditionals rather than max()/min(): this loop runs once per batch.
    i = 0
    chunks, seen = reads, 0  # reads of fresh appends so far; arrivals at the last one
    while i < n:
        f = heappop(free)
        idle = a[i] > f
        start = a[i] if idle else f
        if n_pauses:
            k = bisect_right(p_start, start) - 1
            if k >= 0 and start < p_end[k]:
                start = p_end[k]
        hi = i + batch_size
        j = bisect_right(a, start, i + 1, hi if hi < n else n)
        cost = overhead if per_batch is None else per_batch[len(ends)]
        if grows:
            arrived = bisect_right(a, start)
            cost += growth * chunks + (cold if idle else 0.0)
        end = start + cost + prefix[j] - prefix[i]
        if n_pauses:
            k = bisect_right(p_start, start)
            while k < n_pauses and p_start[k] < end:
                end += p_end[k] - p_start[k]
                k += 1
        starts.append(start)
        ends.append(end)
        bounds.append(j)
        if (behind or grows) and j < n and a[j] <= start:
            end += behind + behind_growth * chunks
        if grows and arrived > seen:  # this batch read fresh appends: one more chunk
            chunks, seen = chunks + 1, arrived
        frees.append(end)
        heappush(free, end)
        i = j
    sizes = np.diff(np.asarray(bounds), prepend=0)
    return Served(np.repeat(np.asarray(ends), sizes), np.asarray(starts), np.asarray(frees))
