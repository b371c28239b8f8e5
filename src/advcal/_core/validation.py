"""Argument checks shared across advcal: each names the argument in its error."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from advcal._core.errors import ConfigError, InputError


def check_int(value: object, name: str, minimum: int) -> int:
    """``value`` as an int of at least ``minimum``, or an InputError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


def check_positive(value: object, name: str) -> float:
    """``value`` as a positive float, or an InputError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InputError(f"{name}: expected a positive number, got {value!r}")
    return float(value)


def check_fraction(value: object, name: str, *, allow_one: bool = False) -> float:
    """``value`` in (0, 1) — or (0, 1] with ``allow_one`` — or an InputError naming ``name``."""
    interval = "(0, 1]" if allow_one else "(0, 1)"
    if (
        isinstance(value, bool) or not isinstance(value, int | float)
        or not (0 < value < 1 or (allow_one and value == 1))
    ):
        raise InputError(f"{name}: expected a number in {interval}, got {value!r}")
    return float(value)


def check_choice(value: object, name: str, choices: Collection[str]) -> str:
    """``value`` if it is one of ``choices``, or a ConfigError naming ``name``."""
    if value not in choices:
        raise ConfigError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def parse_numbers(text: str, name: str) -> list[float]:
    """Comma-separated numbers, fractions allowed: ``"2/255,4/255,0.1"`` -> floats."""
    values = []
    for part in text.split(","):
        numerator, slash, denominator = part.strip().partition("/")
        try:
            value = float(numerator) / (float(denominator) if slash else 1.0)
        except (ValueError, ZeroDivisionError):
            raise InputError(
                f"{name}: expected comma-separated numbers or fractions like 8/255, got {text!r}"
            ) from None
        values.append(value)
    return values
