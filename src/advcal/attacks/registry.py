"""Attacks by name, so the CLI and configuration files can say ``pgd`` or ``apgd-dlr``."""

from __future__ import annotations

from collections.abc import Callable

from advcal._core.errors import ConfigError
from advcal.attacks.base import Attack

_REGISTRY: dict[str, tuple[Callable[..., Attack], dict[str, object]]] = {}


def register_attack(name: str, factory: Callable[..., Attack], **defaults: object) -> None:
    """Make ``factory(**defaults, **params)`` available as ``get_attack(name, **params)``."""
    if name in _REGISTRY:
        raise ConfigError(f"attack: the name {name!r} is already registered")
    _REGISTRY[name] = (factory, defaults)


def get_attack(name: str, **params: object) -> Attack:
    """A configured attack by registered name, e.g. ``get_attack("pgd", eps=8/255, steps=20)``."""
    key = name.lower()
    if key not in _REGISTRY:
        raise ConfigError(f"attack: unknown attack {name!r}; known: {', '.join(available_attacks())}")
    factory, defaults = _REGISTRY[key]
    try:
        return factory(**{**defaults, **params})
    except TypeError as error:  # an unknown keyword: name it
        raise ConfigError(f"attack {name!r}: {error}") from None


def available_attacks() -> list[str]:
    """The registered attack names, sorted."""
    return sorted(_REGISTRY)
