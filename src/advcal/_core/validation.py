"""Argument checks shared across advcal: each names the argument in its error."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Collection
from pathlib import Path

from advcal._core.errors import ConfigError, InputError


def check_int(value: object, name: str, minimum: int) -> int:
    """``value`` as an int of at least ``minimum``, or an InputError naming ``name``."""
    # numbers.Integral holds numpy's integers too, without importing numpy for the CLI's checks.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


SEED_MAX = 2**63 - 1  # seeds feed 64-bit keys and torch's generator


def check_seed(value: object, name: str = "seed") -> int:
    """``value`` as a seed, 0 to 2**63 - 1, or an InputError naming ``name``."""
    check_int(value, name, 0)
    if value > SEED_MAX:
        raise InputError(f"{name}: expected an integer from 0 to 2**63 - 1, got {value!r}")
    return int(value)


MAX_CLASSES = 1_000_000  # a label list is held per class: a stray huge label must not allocate it


def check_label_bound(largest: int, name: str) -> int:
    """``largest`` (the largest label found) if it names at most :data:`MAX_CLASSES` classes,
    else an InputError naming ``name`` (a label such as 2**40 would ask for 2**40 class names)."""
    if largest >= MAX_CLASSES:
        raise InputError(f"{name}: label {largest:,} found; expected labels from 0 to {MAX_CLASSES - 1:,} "
                         "(labels are class indices 0, 1, 2, ...)")
    return largest


def check_output(path: str | os.PathLike, name: str, kind: str) -> Path:
    """``path`` as a place to write a ``kind`` ("folder" or "file"), checked before any work
    starts: not a file where a folder goes nor a folder where a file goes, not under a file,
    and inside a folder this process may write in."""
    path = Path(path)
    if kind == "folder" and path.exists() and not path.is_dir():
        raise InputError(f"{name}: {path} is a file; expected a folder to write into")
    if kind == "file" and path.is_dir():
        raise InputError(f"{name}: {path} is a folder; expected a file path")
    ancestor = path if kind == "folder" else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{name}: {path} lies under {ancestor}, which is a file; expected a path in "
                         "a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{name}: cannot write in {ancestor} (permission denied)")
    return path


def check_positive(value: object, name: str) -> float:
    """``value`` as a positive float, or an InputError naming ``name``."""
    # inf is refused too: no rate, budget or temperature is infinite, and JSON cannot record it
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise InputError(f"{name}: expected a positive finite number, got {value!r}")
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
        if not math.isfinite(value):
            raise InputError(f"{name}: expected finite numbers, got {part.strip()!r} in {text!r}")
        values.append(value)
    return values
