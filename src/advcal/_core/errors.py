"""Errors raised by advcal.

Every error a user can cause is an :class:`AdvcalError`. Messages name the argument, what was
given and what was expected, so the CLI can print them as one line and exit with status 2. A
:class:`FaultError` is not the user's input but the job failing around it (a rank that died, a
stop signal): the CLI prints it as one line too, and exits with status 3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


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


class FaultError(AdvcalError):
    """The job stopped for a reason outside its input: another rank died, or a signal stopped it.
    What it had written atomically stays whole; a rerun resumes where the command can."""


def first_line(error: BaseException) -> str:
    """The first non-blank line of ``error``'s message ("" when it has none): how a foreign
    exception, often many lines long, is quoted in advcal's one-line errors."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()), "")


@contextmanager
def foreign_errors_as_input(describe_failure: Callable[[Exception], str]) -> Iterator[None]:
    """Any exception but advcal's own raised in the block (the user's code failing) as one
    :class:`InputError` whose message is ``describe_failure(error)``; advcal's pass through."""
    try:
        yield
    except AdvcalError:
        raise
    except Exception as error:
        raise InputError(describe_failure(error)) from None


def describe(value: object) -> str:
    """A short description of ``value`` for error messages (type, shape and dtype if any)."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
