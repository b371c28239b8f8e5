"""The conditions of a model's audit, typed: clean inputs, and one attack at one budget.

Each holds one condition's figures as report.json's ``clean`` and ``attacks[]`` entries do
(docs/report.md); ``to_dict`` writes exactly those entries, in their order.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Condition:
    """One condition's calibration: headline metrics by plain name (with their bootstrap
    intervals and fully qualified ids), the reliability curve, the confidence histogram, the
    per-class figures and the risk–coverage curve."""

    metrics: dict[str, float]
    intervals: dict[str, list[float]]
    ids: dict[str, str]
    reliability: dict[str, Any]
    histogram: dict[str, Any]
    per_class: dict[str, Any]
    selective: dict[str, Any]

    def to_dict(self) -> dict[str, object]:
        """The report.json entry."""
        return {field.name: getattr(self, field.name) for field in fields(Condition)}


@dataclass(frozen=True)
class AttackedCondition(Condition):
    """One attack at one budget: its calibration, the change from clean (``delta``), abstention
    at the clean-chosen threshold and, with a bootstrap, the paired tests of the changes."""

    attack: str
    eps: float
    delta: dict[str, float]
    abstention: dict[str, float | int]
    paired: dict[str, dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, object]:
        entry = super().to_dict()
        selective = entry.pop("selective")
        entry |= {"attack": self.attack, "eps": self.eps, "delta": self.delta, "selective": selective,
                  "abstention": self.abstention}
        return entry | ({"paired": self.paired} if self.paired is not None else {})
