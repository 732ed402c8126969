"""Payload intake for ``append``: check each event's fields against the stored schemas,
infer and unify the types of new fields, and keep one column type per field name across
event types. Nothing here touches a store; the caller commits what it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from .. import _schema
from .._schema import Schema
from ..errors import EventDataError
from ..events import NewEvent

__all__ = ["plan_payloads", "share_field_types"]


def plan_payloads(
    batch: Sequence[NewEvent], schemas: dict[str, Schema], exact_types: dict[str, dict[str, type]]
) -> tuple[list[dict[str, Any]], dict[str, Schema]]:
    """Check payloads against the stored ``schemas``; return normalised data and new schemas.

    The fast path keeps a payload whose every field already has exactly its stored
    Python type, with ints in 64 bits and text that is valid Unicode. Everything else
    takes the slow path: types are inferred, unified across the batch, checked against
    what is stored, and values normalised.
    """
    datas: list[dict[str, Any] | None] = []
    slow: dict[str, list[int]] = {}
    lo, hi = _schema.INT64_MIN, _schema.INT64_MAX
    for i, e in enumerate(batch):
        exact = exact_types.get(e.type)
        d = e.data
        if exact is not None and len(d) == len(exact) and len(exact) == len(schemas[e.type]):
            for k, v in d.items():
                t = exact.get(k)
                if t is not type(v):
                    break
                if (t is int and not lo <= v <= hi) or (t is str and not (v.isascii() or _is_text(v))):
                    break
            else:
                datas.append(dict(d))
                continue
        datas.append(None)
        slow.setdefault(e.type, []).append(i)
    if not slow:
        return datas, {}  # type: ignore[return-value]

    changed: dict[str, Schema] = {}
    for event_type, indices in slow.items():
        stored = schemas.get(event_type, {})
        seen: Schema = {}
        for i in indices:
            where = f"events[{i}] ({event_type})"
            for k, v in batch[i].data.items():
                if k not in seen:
                    _schema.check_field_name(k, event_type)
                dt = _schema.infer(v, f"{where} field {k!r}")
                seen[k] = _schema.unify(seen[k], dt, f"{where} field {k!r}") if k in seen else dt
        schema = dict(stored)
        for k, dt in seen.items():
            schema[k] = _schema.extend(stored[k], dt, f"{event_type} field {k!r}") if k in stored else dt
        share_field_types(event_type, schema, schemas, changed)
        if schema != stored or event_type not in schemas:
            changed[event_type] = schema
        for i in indices:
            data = batch[i].data
            datas[i] = {f: _schema.normalize(data.get(f), dt) for f, dt in schema.items()}
    if changed:
        # Payloads that took the fast path lack the fields this batch added.
        for i, e in enumerate(batch):
            schema = changed.get(e.type)
            d = datas[i]
            if schema is not None and len(d) != len(schema):  # type: ignore[arg-type]
                datas[i] = {f: d.get(f) for f in schema}  # type: ignore[union-attr]
    return datas, changed  # type: ignore[return-value]


def _is_text(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def share_field_types(
    event_type: str, schema: Schema, schemas: dict[str, Schema], pending: dict[str, Schema]
) -> None:
    """Bring ``schema`` (of ``event_type``) in line with the store-wide column types.

    A field keeps one column type across all event types: a field new to this type
    takes the type other types gave it (an int goes into their float column), and a
    type no other type can share is refused, naming both types; nothing is written.
    """
    others = {t: s for t, s in {**schemas, **pending}.items() if t != event_type}
    for name, dtype in schema.items():
        for other, fields in others.items():
            theirs = fields.get(name)
            if theirs is None or isinstance(theirs, pl.Null) or theirs == dtype:
                continue
            try:
                merged = _schema.extend(theirs, dtype, f"{event_type} field {name!r}")
            except EventDataError:
                merged = None
            if merged != theirs:
                raise EventDataError(
                    f"{event_type} field {name!r} would be stored as {dtype}, but event type "
                    f"{other!r} stores {name!r} as {theirs}; one field name keeps one column "
                    "type across all event types (nothing was written) - rename the field "
                    "or match its type"
                )
            schema[name] = dtype = theirs
