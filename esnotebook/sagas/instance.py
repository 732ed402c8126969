"""Saga instances: the public snapshot (:class:`SagaInstance`) and the runner's mutable
record of one instance (:class:`Instance`, persisted as one row)."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SagaInstance"]

Status = Literal["running", "waiting", "completed", "compensating", "compensated", "dead-lettered"]
#: Statuses of an instance that has not finished.
ACTIVE = ("running", "waiting", "compensating")

_MARK = {"completed": "&#10003;", "compensated": "&#8630;", "dead-lettered": "&#9888;"}


@dataclass(frozen=True, slots=True)
class SagaInstance:
    """One saga instance as it stood when asked for (see ``SagaRunner.instance``).

    ``history`` holds one row per command attempt (``phase, step, command_type,
    idempotency_key, attempt, outcome, at, error``); :meth:`to_polars` returns it.
    """

    instance_id: str
    status: str = field(kw_only=True)
    saga: str = field(kw_only=True)
    steps: tuple[str, ...] = field(kw_only=True)
    step: str = field(kw_only=True)
    state: dict[str, Any] = field(kw_only=True)
    failure: str | None = field(kw_only=True)
    correlation_id: str = field(kw_only=True)
    history: pl.DataFrame = field(kw_only=True)
    dead_letter: dict[str, Any] | None = field(kw_only=True)

    def to_polars(self) -> pl.DataFrame:
        """The instance's history."""
        return self.history

    def to_pandas(self) -> pd.DataFrame:
        """The instance's history as pandas."""
        return self.history.to_pandas()

    def __repr__(self) -> str:
        return f"SagaInstance({self.instance_id!r}, status={self.status!r}, step={self.step!r}, attempts={self.history.height})"

    def _repr_html_(self) -> str:
        e = html.escape
        mark = _MARK.get(self.status, "")
        head = (
            f"<b>{e(self.saga)} {e(self.instance_id)}</b>: {e(self.status)} {mark} "
            f"(step {e(self.step)} of {e(' → '.join(self.steps))})"
        )
        if self.failure:
            head += f"<br>failure: {e(self.failure)}"
        if self.dead_letter:
            head += (f"<br>dead-lettered on {e(str(self.dead_letter.get('command_type')))}: "
                     f"{e(str(self.dead_letter.get('error')))}")  # fmt: skip
        rows = "".join(
            "<tr>" + "".join(f"<td>{e('' if v is None else str(v))}</td>" for v in r) + "</tr>"
            for r in self.history.select("phase", "step", "command_type", "attempt", "outcome", "at", "error")
            .head(30).iter_rows()
        )
        more = f"<br>... {self.history.height - 30} more attempts" if self.history.height > 30 else ""
        cols = "".join(f"<th>{c}</th>" for c in ("phase", "step", "command", "attempt", "outcome", "at (s)", "error"))
        return f"{head}<table><tr>{cols}</tr>{rows}</table>{more}"


class Instance:
    """Mutable runtime state of one instance (its persisted form is a row)."""

    __slots__ = (
        "cause_id",
        "correlation_id",
        "dead",
        "done",
        "ended_at",
        "failure",
        "id",
        "started_at",
        "state",
        "status",
        "step",
        "undo",
        "waiting_since",
    )  # fmt: skip

    def __init__(self, id: str, state: dict[str, Any], correlation_id: str, cause_id: str, now: float) -> None:
        self.id = id
        self.status: Status = "running"
        self.step = 0
        self.done: dict[str, int] = {}
        self.undo = 0
        self.state = state
        self.failure: str | None = None
        self.correlation_id = correlation_id
        self.cause_id = cause_id
        self.started_at = now
        self.ended_at: float | None = None
        self.waiting_since: float | None = None
        self.dead: dict[str, Any] | None = None

    def row(self) -> tuple[Any, ...]:
        return (
            self.id, self.status, self.step, json.dumps(self.done), self.undo,
            json.dumps(self.state, default=str), self.failure, self.correlation_id, self.cause_id,
            self.started_at, self.ended_at, self.waiting_since,
            None if self.dead is None else json.dumps(self.dead),
        )  # fmt: skip

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Instance:
        inst = cls(row["instance_id"], json.loads(row["state"]), row["correlation_id"], row["cause_id"], row["started_at"])
        inst.status = row["status"]
        inst.step = row["step"]
        inst.done = json.loads(row["done"])
        inst.undo = row["undo"]
        inst.failure = row["failure"]
        inst.ended_at = row["ended_at"]
        inst.waiting_since = row["waiting_since"]
        inst.dead = None if row["dead"] is None else json.loads(row["dead"])
        return inst
