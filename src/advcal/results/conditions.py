"""The conditions of a model's audit, typed: clean inputs, and one attack at one budget.

Each holds one condition's figures as report.json's ``clean`` and ``attacks[]`` entries do
(docs/report.md); ``to_dict`` writes exactly those entries, in their order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from advcal.results.schema import described

NUMBER = {"$ref": "#/$defs/number"}


@dataclass(frozen=True)
class Condition:
    """One condition's calibration: headline metrics by plain name (with their bootstrap
    intervals and fully qualified ids), the reliability curve, the confidence histogram, the
    per-class figures and the risk–coverage curve."""

    metrics: dict[str, float] = field(metadata=described({"$ref": "#/$defs/metrics"}))
    intervals: dict[str, list[float]] = field(metadata=described(
        {"type": "object", "additionalProperties": {"$ref": "#/$defs/interval"}}))
    ids: dict[str, str] = field(metadata=described(
        {"type": "object", "additionalProperties": {"type": "string"}}))
    reliability: dict[str, Any] = field(metadata=described({"$ref": "#/$defs/reliability"}))
    histogram: dict[str, Any] = field(metadata=described({"$ref": "#/$defs/histogram"}))
    per_class: dict[str, Any] = field(metadata=described({"$ref": "#/$defs/per_class"}))
    selective: dict[str, Any] = field(metadata=described({"$ref": "#/$defs/selective"}))

    def to_dict(self) -> dict[str, object]:
        """The report.json entry."""
        return {field.name: getattr(self, field.name) for field in fields(Condition)}


@dataclass(frozen=True)
class AttackedCondition(Condition):
    """One attack at one budget: its calibration, the change from clean (``delta``), abstention
    at the clean-chosen threshold and, with a bootstrap, the paired tests of the changes."""

    attack: str = field(metadata=described({"type": "string"}))
    eps: float = field(metadata=described({"$ref": "#/$defs/eps"}))
    delta: dict[str, float] = field(metadata=described(
        {"type": "object", "required": ["ece", "brier", "nll", "accuracy"], "additionalProperties": NUMBER}))
    abstention: dict[str, float | int] = field(metadata=described(
        {"type": "object", "additionalProperties": NUMBER,
         "required": ["target_coverage", "threshold", "clean_risk", "clean_coverage", "adv_risk",
                      "adv_coverage", "n_samples"]}))
    paired: dict[str, dict[str, Any]] | None = field(default=None, metadata=described(
        {"type": "object", "additionalProperties": {"$ref": "#/$defs/paired"},
         "description": "Paired bootstrap test of each change (absent when bootstrap is 0)."}, optional=True))

    def to_dict(self) -> dict[str, object]:
        entry = super().to_dict()
        selective = entry.pop("selective")
        entry |= {"attack": self.attack, "eps": self.eps, "delta": self.delta, "selective": selective,
                  "abstention": self.abstention}
        return entry | ({"paired": self.paired} if self.paired is not None else {})
