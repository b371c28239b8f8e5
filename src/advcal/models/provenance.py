"""Where a model's weights came from, and short unique names for the models of one audit.

A report is only as good as the weights behind it: a ``file.py:factory`` model audited without
``--weights`` carries whatever its factory returns — random initialisation, unless the factory
loads trained weights itself. :func:`load_model` records each model's origin here, and the
audit writes it into the report, so that nobody signs off an untrained network by mistake.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from advcal._core.errors import InputError

# The origin of each model advcal loaded: weak keys, so a record lives as long as its model.
_ORIGINS: weakref.WeakKeyDictionary[nn.Module, dict[str, object]] = weakref.WeakKeyDictionary()

# What ``weights`` in a record says.
FILE, SHIPPED, FACTORY = "file", "shipped", "factory"


def record_origin(model: nn.Module, spec: str, weights: str | Path | None, source: str) -> None:
    """Remember that ``model`` was built from ``spec`` with ``weights`` (a file, or None)."""
    _ORIGINS[model] = {"spec": spec, "weights": None if weights is None else str(weights), "source": source}


def model_origins(model: nn.Module) -> list[dict[str, object]]:
    """The origin records of ``model`` and of every model advcal loaded inside it (an ensemble's
    members, a calibrated model's network), outermost first; empty for a module built by hand."""
    return [dict(_ORIGINS[module]) for module in model.modules() if module in _ORIGINS]


def _short(spec: str) -> str:
    """``file.py:factory`` -> ``factory``; ``hf:path/to/folder`` -> ``folder``; ``clip:ARCH`` and
    built-in names as they are."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind == "clip":
        return spec
    if kind == "hf":
        return Path(rest).name or spec
    return spec.rpartition(":")[2] or spec


def unique_names(specs: Sequence[str], weights: Sequence[str | Path | None] | None = None,
                 names: Sequence[str] | None = None) -> list[str]:
    """A short, distinct name per model: ``names`` when given (they must be distinct), else the
    built-in name or factory name, then the weights file's stem where two would share a name,
    then its folder too, then a counter.

    >>> unique_names(["nets.py:resnet", "nets.py:resnet"], ["a/model.safetensors", "b/model.safetensors"])
    ['resnet@a/model', 'resnet@b/model']
    """
    weights = list(weights) if weights else [None] * len(specs)
    if names:
        if len(names) != len(specs):
            raise InputError(f"name: give one --name per --model ({len(specs)}), got {len(names)}")
        repeated = sorted({n for n in names if list(names).count(n) > 1})
        if repeated:
            raise InputError(f"name: expected distinct model names, got "
                             f"{', '.join(map(repr, repeated))} twice")
        return list(names)
    bases = [_short(spec) for spec in specs]
    paths = [None if w is None else Path(w) for w in weights]
    candidates = [
        bases,
        [b if p is None else f"{b}@{p.stem}" for b, p in zip(bases, paths, strict=True)],
        [b if p is None else f"{b}@{p.parent.name}/{p.stem}" if p.parent.name else f"{b}@{p.stem}"
         for b, p in zip(bases, paths, strict=True)],
    ]
    chosen = list(bases)
    for level in candidates[1:]:
        clashing = {n for n in chosen if chosen.count(n) > 1}
        if not clashing:
            break
        chosen = [level[i] if chosen[i] in clashing else chosen[i] for i in range(len(chosen))]
    seen: dict[str, int] = {}
    out = []
    for name in chosen:  # the same spec and weights twice: number them
        seen[name] = seen.get(name, 0) + 1
        out.append(name if chosen.count(name) == 1 else f"{name}#{seen[name]}")
    return out
