"""Copies of commands with the ids a saga stamps on them, made fast.

A saga sends every command of every step with its idempotency key, correlation id and
cause; :func:`restamp` makes that copy without re-running the dataclass ``__init__``.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from ..commands import Command, _bad_id

C = TypeVar("C", bound=Command)

#: Command classes whose copies can skip ``__init__``: their fields, in order.
_PLAIN_FIELDS: dict[type, tuple[str, ...]] = {}


def restamp(command: C, *, idempotency_key: str, correlation_id: str, causation_id: str | None) -> C:
    """``dataclasses.replace(command, ...)`` of the three ids, without re-running ``__init__``.

    Only for plain command classes (every field set by ``__init__``, no ``__post_init__`` of
    their own); others go through ``replace``. The new ids are checked as the constructor
    checks them.

    Examples
    --------
    >>> from esnotebook.examples import ShipOrder
    >>> cmd = restamp(ShipOrder("o-1"), idempotency_key="k-1", correlation_id="c-1", causation_id=None)
    >>> cmd.order_id, cmd.idempotency_key, cmd.correlation_id
    ('o-1', 'k-1', 'c-1')
    """
    cls = type(command)
    names = _PLAIN_FIELDS.get(cls)
    if names is None:
        plain = cls.__post_init__ is Command.__post_init__ and all(f.init for f in dataclasses.fields(cls))
        if not plain:
            return dataclasses.replace(
                command, idempotency_key=idempotency_key, correlation_id=correlation_id, causation_id=causation_id
            )
        names = tuple(f.name for f in dataclasses.fields(cls) if f.name not in _IDS)
        _PLAIN_FIELDS[cls] = names
    for name, value in (("idempotency_key", idempotency_key), ("correlation_id", correlation_id)):
        if not (isinstance(value, str) and value):
            _bad_id(command, name, value)
    if causation_id is not None and not (isinstance(causation_id, str) and causation_id):
        _bad_id(command, "causation_id", causation_id)
    new = object.__new__(cls)
    put = object.__setattr__
    for name in names:
        put(new, name, getattr(command, name))
    put(new, "idempotency_key", idempotency_key)
    put(new, "correlation_id", correlation_id)
    put(new, "causation_id", causation_id)
    return new


_IDS = frozenset({"idempotency_key", "correlation_id", "causation_id"})
