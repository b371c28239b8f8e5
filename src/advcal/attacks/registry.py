"""Attacks by name, so the CLI and configuration files can say ``pgd`` or ``apgd-dlr``."""

from __future__ import annotations

from collections.abc import Callable

from advcal._core.errors import ConfigError
from advcal._core.registry import Registry, first_line
from advcal.attacks.base import Attack

# name -> (factory, the defaults it is called with)
ATTACKS: Registry[tuple[Callable[..., Attack], dict[str, object]]] = Registry("attack")


def register_attack(name: str, factory: Callable[..., Attack], summary: str | None = None,
                    **defaults: object) -> None:
    """Make ``factory(**defaults, **params)`` available as ``get_attack(name, **params)``;
    ``summary`` (for ``advcal list attacks``) defaults to the factory's docstring's first line."""
    ATTACKS.add(name, (factory, defaults), first_line(factory) if summary is None else summary)


def get_attack(name: str, **params: object) -> Attack:
    """A configured attack by registered name, e.g. ``get_attack("pgd", eps=8/255, steps=20)``."""
    factory, defaults = ATTACKS.pick(name.lower() if isinstance(name, str) else name, "attack")
    try:
        return factory(**{**defaults, **params})
    except TypeError as error:  # an unknown keyword: name it
        raise ConfigError(f"attack {name!r}: {error}") from None


def available_attacks() -> list[str]:
    """The registered attack names, sorted."""
    return sorted(ATTACKS)
