"""Errors raised by advcal.

Every error a user can cause is an :class:`AdvcalError`. Messages name the argument, what was
given and what was expected, so the CLI can print them as one line and exit with status 2.
"""

from __future__ import annotations


class AdvcalError(Exception):
    """Base class of every error advcal raises on purpose."""


class InputError(AdvcalError, ValueError):
    """An argument's value is wrong: shape, dtype, range, NaN, or a file's content."""


class ConfigError(AdvcalError, ValueError):
    """Options that are individually valid but do not fit together, or an unknown name."""


class MissingDependencyError(AdvcalError, ImportError):
    """An optional dependency needed for this feature is not installed."""


class DistributedError(AdvcalError):
    """Ranks disagree (different keys, dtypes or settings), or another rank failed."""


def describe(value: object) -> str:
    """A short description of ``value`` for error messages (type, shape and dtype if any)."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
