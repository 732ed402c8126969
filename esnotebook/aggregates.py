"""Aggregates: consistency boundaries whose state comes only from their events.

An aggregate is written in two halves, the way a workshop teaches it:

* **apply methods** say how each event type changes the state. They are marked with
  :func:`applies` and never check anything: an event is a fact that already happened.
* **command methods** check the business rules against the current state and then
  :meth:`Aggregate.record` new events, or raise :class:`~esnotebook.DomainException`.
  Marked with :func:`command`, a method that raises leaves the aggregate exactly as it was.

>>> from esnotebook.aggregates import Aggregate, applies, command
>>> from esnotebook.errors import DomainException
>>> class Counter(Aggregate):
...     stream_prefix = "counter"
...     def __init__(self, id):
...         super().__init__(id)
...         self.count = 0
...     @command
...     def increment(self, by=1):
...         if by <= 0:
...             raise DomainException(f"'by' must be > 0 (got {by})")
...         self.record("Incremented", by=by)
...     @applies("Incremented")
...     def _incremented(self, data):
...         self.count += data["by"]
>>> c = Counter("c-1")
>>> c.increment(2)
>>> c.count, c.version, [p.type for p in c.pending_events]
(2, 1, ['Incremented'])
"""

from __future__ import annotations

import copy
import functools
import html
import inspect
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from .errors import DomainException, EventStoreError
from .events import RecordedEvent, check_event_type

__all__ = ["Aggregate", "PendingEvent", "UnknownEventError", "applies", "command", "rule"]

F = TypeVar("F", bound=Callable[..., Any])

# Attributes every aggregate has that are bookkeeping, not domain state.
_BOOKKEEPING = frozenset({"id", "version"})

class _Unknown:
    """``Aggregate._origin`` when nobody knows how to rebuild the committed state (it was
    set by hand with ``replay``/``set_state``/``mark_saved``): commands then copy the state
    up front. There is one; copies and pickles of it are itself."""

    def __repr__(self) -> str:
        return "<origin unknown>"

    def __reduce__(self) -> str:
        return "_UNKNOWN"

    def __copy__(self) -> _Unknown:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Unknown:
        return self


_UNKNOWN: Any = _Unknown()

#: ``(id, version) -> aggregate``: rebuilds an aggregate's committed state (a repository's).
Origin = Callable[[str, int], "Aggregate"]


class UnknownEventError(EventStoreError):
    """An aggregate met an event type it has no apply method for."""


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event a command recorded that is not stored yet: its type and payload."""

    type: str
    data: dict[str, Any]


def applies(event_type: str) -> Callable[[F], F]:
    """Mark a method as the one that applies ``event_type`` to the aggregate's state.

    The method receives the event's payload (a dict) and only changes state; it must not
    check rules or raise, because stored events are facts.

    Examples
    --------
    >>> class Door(Aggregate):
    ...     @applies("DoorOpened")
    ...     def _opened(self, data):
    ...         self.open = True
    >>> Door.handled_event_types()
    ['DoorOpened']
    """
    check_event_type(event_type)

    def mark(method: F) -> F:
        method.__applies__ = event_type  # type: ignore[attr-defined]
        return method

    return mark


def command(method: F) -> F:
    """Mark a method as a command: if it raises, the aggregate is left as it was.

    The state, version and pending events are restored to what they were before the call,
    so a rejected command never half-changes a loaded aggregate.

    Notes
    -----
    Nothing is copied when the command succeeds, which is the common case. When it raises,
    the state before the call is re-derived the way the aggregate got it: its committed
    state (a fresh instance, or a reload at its committed version from the repository that
    loaded or saved it) plus the events still pending from before the call. Only an
    aggregate whose committed state was set by hand (``replay``, ``set_state``,
    ``mark_saved`` called directly) has its state deep-copied before each command. As
    everywhere in event sourcing, state must come from apply methods only: an attribute
    changed by hand, outside them, is not kept across a command that raises.
    """

    @functools.wraps(method)
    def run(self: Aggregate, *args: Any, **kwargs: Any) -> Any:
        state = self.__dict__
        origin = state.get("_origin", _UNKNOWN)
        if origin is _UNKNOWN or (origin is None and not self._init_takes_id_only):
            saved = copy.deepcopy(state)
            try:
                return method(self, *args, **kwargs)
            except BaseException:
                state.clear()
                state.update(saved)
                raise
        before = state.copy()
        pending = len(self._pending)
        try:
            return method(self, *args, **kwargs)
        except BaseException as exc:
            self._roll_back(before, pending, exc)
            raise

    run.__is_command__ = True  # type: ignore[attr-defined]
    return run  # type: ignore[return-value]


class Aggregate:
    """Base class of event-sourced aggregates.

    Subclasses set up empty state in ``__init__`` (calling ``super().__init__(id)``),
    write command methods (:func:`command`) that call :meth:`record`, and apply methods
    (:func:`applies`) that change state. The state is never set any other way, so
    replaying the stream always rebuilds it.

    Class attributes
    ----------------
    stream_prefix
        Streams are named ``f"{stream_prefix}-{id}"`` (default: the class name, lowercase).
    schema_version
        Bump it when the shape of the state changes: snapshots taken under another
        schema version are then ignored and the aggregate replays in full.

    Attributes
    ----------
    id
        The aggregate's id (the stream id without the prefix).
    version
        How many events the state reflects, stored and pending.
    """

    stream_prefix: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1
    _appliers: ClassVar[dict[str, Callable[[Any, dict[str, Any]], None]]] = {}
    #: Whether ``cls(id)`` alone makes the empty state (``__init__`` takes only the id).
    _init_takes_id_only: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        appliers = dict(cls._appliers)
        for klass in reversed(cls.__mro__):
            for name, attr in vars(klass).items():
                event_type = getattr(attr, "__applies__", None)
                if event_type is not None:
                    appliers[event_type] = attr
        cls._appliers = appliers
        if not cls.__dict__.get("stream_prefix"):
            cls.stream_prefix = cls.__name__.lower()
        version = cls.schema_version
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise TypeError(f"{cls.__name__}.schema_version must be an int >= 1 (got {version!r})")
        cls._init_takes_id_only = _takes_id_only(cls.__init__)

    def __init__(self, id: str) -> None:
        if not isinstance(id, str) or not id:
            raise ValueError(f"aggregate id must be a non-empty str (got {id!r})")
        self.id = id
        self.version = 0
        self._pending: list[PendingEvent] = []
        # How to rebuild the committed state when a command must be rolled back: None = it
        # is what __init__ made; a repository's reload; or _UNKNOWN (copy before commands).
        self._origin: Origin | None = None

    # ------------------------------------------------------------------ identity
    @classmethod
    def stream_id_for(cls, id: str) -> str:
        """The stream that holds the aggregate with this id, e.g. ``"order-42"``."""
        return f"{cls.stream_prefix}-{id}"

    @property
    def stream_id(self) -> str:
        """The stream this aggregate is stored in."""
        return f"{self.stream_prefix}-{self.id}"

    @classmethod
    def handled_event_types(cls) -> list[str]:
        """The event types this class knows how to apply, sorted."""
        return sorted(cls._appliers)

    # ------------------------------------------------------------------ events
    def record(self, event_type: str, /, **data: Any) -> None:
        """Record a new event: apply it to the state now and keep it until it is saved.

        Call it from command methods, after every rule has been checked.
        """
        self._apply(event_type, data)
        self._pending.append(PendingEvent(event_type, data))
        self.version += 1

    @property
    def pending_events(self) -> list[PendingEvent]:
        """Events recorded since the aggregate was loaded or last saved (a copy)."""
        return list(self._pending)

    @property
    def committed_version(self) -> int:
        """The version of the stream this aggregate was loaded at (or saved to)."""
        return self.version - len(self._pending)

    def mark_saved(self) -> None:
        """Forget the pending events: they are stored now. Called by the repository."""
        self._pending.clear()
        self._origin = _UNKNOWN  # the repository that saved it says how to reload it

    # ------------------------------------------------------------------ rollback
    def _roll_back(self, before: dict[str, Any], pending: int, exc: BaseException) -> None:
        """Make the state what it was before a command that raised ``exc``: the committed
        state rebuilt from its origin, plus the first ``pending`` pending events."""
        keep = self._pending[:pending]
        version = before["version"]
        origin = before.get("_origin")
        try:
            fresh = type(self)(before["id"]) if origin is None else origin(before["id"], version - pending)
            if type(fresh) is not type(self) or fresh.version != version - pending:
                raise EventStoreError(
                    f"rebuilt {type(fresh).__name__} at version {fresh.version}, "
                    f"expected {type(self).__name__} at version {version - pending}"
                )
            for p in keep:
                fresh._apply(p.type, p.data)
        except Exception as failure:  # noqa: BLE001 - whatever broke, report it beside exc
            # Never leave a half-changed aggregate behind silently: the one we could not
            # restore is unusable, and the caller learns why next to the original error.
            self.__dict__.update(before)
            del self._pending[pending:]
            self._origin = _UNKNOWN
            exc.add_note(
                f"{type(self).__name__} {before['id']!r} could not be restored after this "
                f"error ({type(failure).__name__}: {failure}); reload it before using it again"
            )
            return
        restored = fresh.__dict__
        restored["version"] = version
        restored["_origin"] = origin
        del self._pending[pending:]  # the same list object as before the call
        restored["_pending"] = self._pending
        state = self.__dict__
        state.clear()
        state.update(restored)

    def _apply(self, event_type: str, data: dict[str, Any]) -> None:
        apply = self._appliers.get(event_type)
        if apply is None:
            raise UnknownEventError(
                f"{type(self).__name__} has no apply method for event type {event_type!r} "
                f"(it handles: {', '.join(self.handled_event_types()) or 'none'}); add one "
                f"with @applies({event_type!r})"
            )
        apply(self, data)

    def replay(self, events: Iterable[RecordedEvent]) -> None:
        """Apply stored events in order (each must be the next version of this stream).

        Raises :class:`~esnotebook.EventStoreError` when the versions do not follow on.
        """
        self._origin = _UNKNOWN  # these events may come from anywhere: no reload restores them
        self._replay(events)

    def _replay(self, events: Iterable[RecordedEvent]) -> None:
        appliers = self._appliers
        version = self.version
        for e in events:
            version += 1
            if e.version != version:
                raise EventStoreError(
                    f"{self.stream_id}: expected event version {version} next, but got "
                    f"version {e.version} ({e.event_type}); the history has a gap"
                )
            apply = appliers.get(e.event_type)
            if apply is None:
                self.version = version - 1
                self._apply(e.event_type, e.data)  # raises UnknownEventError
            apply(self, e.data)  # type: ignore[misc]
        self.version = version

    @classmethod
    def from_events(cls, id: str, events: Iterable[RecordedEvent]) -> Aggregate:
        """A new aggregate with ``events`` replayed onto it."""
        aggregate = cls(id)
        aggregate.replay(events)
        return aggregate

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, Any]:
        """The domain state as a JSON-compatible dict (used by snapshots).

        The default takes every public attribute except ``id`` and ``version``; override
        it (with :meth:`set_state`) when the state holds sets, objects or datetimes.
        """
        return {
            k: v for k, v in self.__dict__.items() if not k.startswith("_") and k not in _BOOKKEEPING
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_state` returned (used when loading a snapshot)."""
        self.__dict__.update(copy.deepcopy(state))
        self._origin = _UNKNOWN

    def __getstate__(self) -> dict[str, Any]:
        # A copy or a pickle does not take the repository it came from along.
        state = dict(self.__dict__)
        if "_origin" in state and state["_origin"] is not None:
            state["_origin"] = _UNKNOWN
        return state

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return (self.id, self.version, self.get_state()) == (
            other.id,  # type: ignore[attr-defined]
            other.version,  # type: ignore[attr-defined]
            other.get_state(),  # type: ignore[attr-defined]
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        state = ", ".join(f"{k}={v!r}" for k, v in self.get_state().items())
        text = f"{type(self).__name__}(id={self.id!r}, version={self.version}"
        return f"{text}, {state})" if state else f"{text})"

    def _repr_html_(self) -> str:
        rows = [("id", self.id), ("version", self.version)]
        rows += [(k, json.dumps(v, default=str)[:200]) for k, v in self.get_state().items()]
        if self._pending:
            rows.append(("pending", ", ".join(p.type for p in self._pending)))
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
            f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        return f"<b>{html.escape(type(self).__name__)}</b><table>{body}</table>"


def _takes_id_only(init: Callable[..., Any]) -> bool:
    """Whether ``init(self, id)`` is the whole signature (no other parameters to recall)."""
    try:
        params = list(inspect.signature(init).parameters.values())[1:]
    except (TypeError, ValueError):
        return False
    return len(params) == 1 and params[0].kind in (
        inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )  # fmt: skip


def rule(condition: bool, message: str, exc: type[DomainException] = DomainException) -> None:
    """Raise ``exc(message)`` unless ``condition`` holds: a one-line business rule check."""
    if not condition:
        raise exc(message)
