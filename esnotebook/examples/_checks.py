"""Argument checks shared by the example aggregates: bad input is a TypeError/ValueError
naming the argument, not a business-rule rejection."""

from __future__ import annotations


def check_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name!r} must be a non-empty str (got {value!r})")
    return value


def check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name!r} must be an int (got {type(value).__name__} {value!r})")
    if value <= 0:
        raise ValueError(f"{name!r} must be > 0 (got {value})")
    return value


def check_money(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name!r} must be an int number of cents (got {type(value).__name__} {value!r})")
    if value < 0:
        raise ValueError(f"{name!r} must be >= 0 cents (got {value})")
    return value
