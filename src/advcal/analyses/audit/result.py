"""The versioned result of an audit, as the JSON file and the Python API both see it."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from advcal._core.atomic import write_bytes_atomic, write_json_atomic
from advcal._core.errors import ConfigError
from advcal._core.validation import check_output
from advcal.analyses.illusion import IllusionReport
from advcal.results.conditions import AttackedCondition, Condition
from advcal.results.flags import Flag
from advcal.results.schema import object_schema
from advcal.results.verdict import LEVELS, Verdict, comparison, model_verdict, reaches

SCHEMA_VERSION = "0.5"  # bump with src/advcal/analyses/audit/schema/report.schema.json and docs/report.md
# The plain-named metrics every entry of report.json carries (full definitions in
# docs/metrics.md; fully qualified ids under "ids").
HEADLINE = ("accuracy", "ece", "ace", "sce", "mce", "ece_l2", "smooth_ece", "brier", "nll",
            "confidence_mean", "confidence_std", "reliability_slope")


@dataclass
class ModelAudit:
    """One model's audit: clean and per-ε calibration, deltas, flags."""

    name: str
    clean: Condition
    attacks: list[AttackedCondition]
    flags: list[Flag]
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    cost: dict[str, object] = field(default_factory=dict)
    # How the adversarial inputs were made: live white-box attack, or a stored set (white-box
    # when this model made it, else transfer).
    evaluation: dict[str, object] = field(default_factory=lambda: {"kind": "white-box"})
    # The illusion-of-robustness check (advcal.analyses.illusion), when the audit ran it.
    illusion: IllusionReport | None = None
    # The post-hoc calibration fixes table (advcal.analyses.fixes), when the audit ran it, as
    # its JSON: the fitted calibrators stay with the process that fitted them.
    fixes: dict[str, object] | None = None
    # Text audits: adversarial texts that flipped the prediction, original against perturbed.
    examples: list[dict[str, object]] | None = None
    # Where the weights came from, per model advcal loaded (advcal.models.provenance); empty
    # for a module the caller built.
    origins: list[dict[str, object]] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        """Pass, warn or fail, overall and per ε, from the flags (:mod:`advcal.results.verdict`)."""
        return model_verdict([flag.as_dict() for flag in self.flags], [entry.eps for entry in self.attacks])

    def add_checks(self, found: Mapping[str, Any]) -> None:
        """Take the illusion check, the fixes table and their flags as the audit's checks send
        them between processes (JSON, :func:`advcal.engine.distributed.deal_out`)."""
        self.illusion = None if found["illusion"] is None else IllusionReport(**found["illusion"])
        self.fixes = found["fixes"]
        self.flags.extend(Flag(**flag) for flag in found["flags"])


@dataclass
class AuditResult:
    """Everything an audit found; ``to_dict`` is the documented report.json layout."""

    config: dict[str, object]
    models: list[ModelAudit]

    def to_dict(self) -> dict[str, object]:
        models = [
            {"name": m.name, "verdict": m.verdict.to_dict(), "weights": m.origins, "evaluation": m.evaluation,
             "clean": m.clean.to_dict(), "attacks": [entry.to_dict() for entry in m.attacks],
             "flags": [flag.as_dict() for flag in m.flags], "cost": m.cost}
            | ({"illusion": m.illusion.to_dict()} if m.illusion else {})
            | ({"fixes": m.fixes} if m.fixes else {}) | ({"examples": m.examples} if m.examples else {})
            for m in self.models
        ]
        found = comparison(models)
        return _json_safe({
            "schema_version": SCHEMA_VERSION,
            "config": self.config,
            "models": models,
        } | ({"comparison": found} if found else {}))

    def verdicts(self) -> dict[str, Verdict]:
        """Each model's verdict, by name."""
        return {m.name: m.verdict for m in self.models}

    def fails(self, fail_on: str) -> bool:
        """Whether any model's verdict reaches ``fail_on`` (``error``, ``warning`` or ``never``):
        the test behind ``advcal audit --fail-on``."""
        return reaches([m.verdict.level for m in self.models], fail_on)

    def to_json(self, path: str | Path) -> Path:
        """Write report.json atomically (a crash never leaves a half-written file)."""
        return write_json_atomic(path, self.to_dict())

    def write_samples(self, path: str | Path) -> Path:
        """Write the per-sample record of every model as one ``.npz`` (no pickle).

        Keys are ``<model>/index``, ``<model>/label`` and, for ``clean`` and each
        ``eps=<value>``, ``<model>/<condition>/{prediction,confidence,bin,correct}``.
        """
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **{
            f"{entry.name}/{key}": value for entry in self.models for key, value in entry.samples.items()
        })
        return write_bytes_atomic(path, buffer.getvalue())

    def to_html(self, path: str | Path, figures_dir: str | Path | None = None) -> Path:
        """Write the self-contained HTML report (figures inline; also as PNGs in ``figures_dir``)."""
        from advcal.report import write_report  # matplotlib loads only when a report is drawn

        return write_report(self.to_dict(), path, figures_dir)

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write everything an audit produces into ``folder``, each file atomically.

        ``report.json``, ``samples.npz`` (per-sample record), ``report.html`` and
        ``figures/*.png``; returns their paths by kind. ``report.json`` is removed first and
        written last, so a folder holding one holds a complete report of a single run, even
        when the process is killed part way.
        """
        folder = check_output(folder, "out", "folder")
        (folder / "report.json").unlink(missing_ok=True)
        samples = self.write_samples(folder / "samples.npz")
        html = self.to_html(folder / "report.html", folder / "figures")
        return {"json": self.to_json(folder / "report.json"), "samples": samples, "html": html}

    def model(self, name: str) -> ModelAudit:
        """The audit of the model called ``name``."""
        for entry in self.models:
            if entry.name == name:
                return entry
        raise ConfigError(f"name: expected one of {', '.join(m.name for m in self.models)}, got {name!r}")


def report_schema() -> dict[str, object]:
    """The JSON Schema (draft 2020-12) of report.json. The typed results' definitions (the clean
    and attacked conditions, flags, verdicts) are generated from their types
    (:mod:`advcal.results.schema`), so a new field or flag code is in the schema once it exists;
    the rest (config, cost, the model's envelope, the figures' contents) is the file shipped in
    the package."""
    text = resources.files("advcal.analyses.audit").joinpath("schema/report.schema.json").read_text("utf-8")
    schema = json.loads(text)
    schema["$defs"] |= {
        "condition": object_schema(Condition),
        "attack": object_schema(AttackedCondition),
        "flag": object_schema(Flag, closed=True),
        "verdict": object_schema(Verdict, closed=True),
        "level": {"enum": list(LEVELS)},
    }
    return schema


def _json_safe(value: object) -> object:
    """``value`` with every NaN or infinite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value
