"""The one registry idiom: a name → value table in which every entry has a one-line summary.

Attacks, models, calibrators, data kinds, text attacks and training recipes are each one
:class:`Registry`. It reads as a mapping (``name in reg``, ``reg[name]``, ``list(reg)`` in the
order of registration); :meth:`Registry.pick` is the lookup for a name a user typed, refusing
an unknown one with a :class:`ConfigError` that names the argument and every known name; and
:meth:`Registry.summaries` is what ``advcal list`` prints.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from advcal._core.errors import ConfigError

T = TypeVar("T")


def first_line(obj: object) -> str:
    """The first paragraph of ``obj``'s docstring as plain text ('' when it has none): a default
    summary."""
    doc = getattr(obj, "__doc__", None) or ""
    return " ".join(doc.strip().split("\n\n")[0].replace("``", "").split())


class Registry(Mapping[str, T], Generic[T]):
    """Named values of one kind (``what``), each with a summary; refuses a name twice."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._values: dict[str, T] = {}
        self._summaries: dict[str, str] = {}

    def add(self, name: str, value: T, summary: str | None = None) -> T:
        """Register ``value`` as ``name``; ``summary`` defaults to the value's docstring's first line."""
        if name in self._values:
            raise ConfigError(f"{self.what}: the name {name!r} is already registered")
        self._values[name] = value
        self._summaries[name] = first_line(value) if summary is None else summary
        return value

    def pick(self, name: object, argument: str | None = None) -> T:
        """The value registered as ``name``, or a ConfigError naming ``argument`` and the known names."""
        if not isinstance(name, str) or name not in self._values:
            raise ConfigError(f"{argument or self.what}: unknown {self.what} {name!r}; known: "
                              f"{', '.join(self._values)}")
        return self._values[name]

    def summaries(self) -> list[tuple[str, str]]:
        """(name, summary) of every entry, in the order of registration."""
        return list(self._summaries.items())

    def __getitem__(self, name: str) -> T:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._values)})"
