"""The verdict: pass, warn or fail per model and per ε, with the one sentence that decides it.

The flags carry the judgement (their thresholds come from the profile, see
:mod:`advcal.analyses.audit.flags`); the verdict only reads their severities: any ``error`` flag fails,
any ``warning`` warns, ``info`` passes. A flag with an ε decides that ε; a flag without one
(clean inputs, the model as a whole) decides every ε. The reason is the worst flag, in words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from advcal._core.errors import ConfigError
from advcal._core.validation import check_choice
from advcal.results.flags import FlagCode
from advcal.results.schema import described

LEVELS = ("pass", "warn", "fail")
LEVEL_OF_SEVERITY = {"info": "pass", "warning": "warn", "error": "fail"}
# --fail-on: the lowest verdict that makes the command exit with status 1.
FAIL_ON = {"error": "fail", "warning": "warn", "never": None}
# Among flags of one severity, the ones that void everything else come first.
_PRIORITY = (FlagCode.CHANCE_ACCURACY, FlagCode.ILLUSION_OF_ROBUSTNESS, FlagCode.ECE_DELTA,
             FlagCode.CONFIDENCE_HOLLOWING)


@dataclass(frozen=True)
class Verdict:
    """A model's verdict overall and per ε (``per_eps``: ``{"eps", "level", "reason"}`` rows)."""

    level: str = field(metadata=described({"$ref": "#/$defs/level"}))
    reason: str = field(metadata=described({"type": "string", "minLength": 1}))
    per_eps: tuple[dict[str, object], ...] = field(metadata=described({"type": "array", "items": {
        "type": "object", "required": ["eps", "level", "reason"], "additionalProperties": False,
        "properties": {"eps": {"$ref": "#/$defs/eps"}, "level": {"$ref": "#/$defs/level"},
                       "reason": {"type": "string"}}}}))

    def to_dict(self) -> dict[str, object]:
        return {"level": self.level, "reason": self.reason, "per_eps": [dict(row) for row in self.per_eps]}


def _level(flags: Sequence[Mapping[str, object]]) -> str:
    return max((LEVEL_OF_SEVERITY.get(str(f["severity"]), "pass") for f in flags), key=LEVELS.index,
               default="pass")


def _worst(flags: Sequence[Mapping[str, object]]) -> Mapping[str, object] | None:
    """The flag that decides: highest severity, then the priority codes, then the smallest ε."""
    def rank(flag: Mapping[str, object]) -> tuple:
        code = str(flag["code"])
        eps = flag.get("eps")
        return (-LEVELS.index(LEVEL_OF_SEVERITY.get(str(flag["severity"]), "pass")),
                _PRIORITY.index(code) if code in _PRIORITY else len(_PRIORITY),
                -1.0 if eps is None else float(eps))
    return min(flags, key=rank, default=None)


def _phrase(flag: Mapping[str, object], flags: Sequence[Mapping[str, object]]) -> str:
    """The deciding flag in a few words, with every ε where its code fires at that severity."""
    code, severity = str(flag["code"]), str(flag["severity"])
    same = sorted({float(f["eps"]) for f in flags
                   if f["code"] == code and f["severity"] == severity and f.get("eps") is not None})
    where = ", ".join(f"{e:g}" for e in same)
    if code == FlagCode.ECE_DELTA:
        verb = "breaks" if severity == "error" else "degrades"
        delta = float(flag["evidence"]["delta"])  # type: ignore[index]
        first = float(flag["eps"])  # type: ignore[arg-type]
        return f"calibration {verb} at ε = {where} (ΔECE {delta:+.2f} at ε = {first:g}, {severity})"
    message = str(flag["message"]).rstrip(".")
    return f"{message} ({code}, {severity})"


def model_verdict(flags: Sequence[Mapping[str, object]], epsilons: Sequence[float]) -> Verdict:
    """The verdict of one model from its flags (report.json's flag dicts) over the ε sweep."""
    general = [f for f in flags if f.get("eps") is None]
    per_eps = []
    for eps in epsilons:
        here = [*general, *(f for f in flags if f.get("eps") is not None and float(f["eps"]) == float(eps))]
        worst = _worst([f for f in here if LEVEL_OF_SEVERITY.get(str(f["severity"])) != "pass"])
        level = _level(here)
        reason = "no warning or error" if worst is None else _phrase(worst, here)
        per_eps.append({"eps": float(eps), "level": level, "reason": reason})
    level = _level(flags)
    worst = _worst([f for f in flags if LEVEL_OF_SEVERITY.get(str(f["severity"])) != "pass"])
    if worst is None:
        sweep = ", ".join(f"{e:g}" for e in epsilons)
        reason = f"pass: no warning or error flag, clean or at ε = {sweep}"
    else:
        reason = f"{level}: {_phrase(worst, flags)}"
        holds = [row["eps"] for row in per_eps if row["level"] == "pass"]
        if holds:
            reason += "; holds at ε = " + ", ".join(f"{e:g}" for e in holds)
    return Verdict(level, reason, tuple(per_eps))


def comparison(models: Sequence[Mapping[str, object]]) -> dict[str, object] | None:
    """Which of several audited models is the better calibrated under attack, and by how much.

    Judged by the worst adversarial ECE over the sweep (the ε where each model is least
    calibrated); a model whose verdict voids its figures (clean accuracy at chance) cannot win.
    """
    if len(models) < 2:
        return None
    worst = {}
    for model in models:
        attacks = [a for a in model["attacks"] if a["metrics"].get("ece") is not None]  # type: ignore[index]
        if not attacks:
            return None
        entry = max(attacks, key=lambda a: a["metrics"]["ece"])
        worst[str(model["name"])] = (float(entry["metrics"]["ece"]), float(entry["eps"]))
    void = {str(m["name"]) for m in models if any(f["code"] == FlagCode.CHANCE_ACCURACY for f in m["flags"])}
    ranked = sorted(worst, key=lambda name: (name in void, worst[name][0]))
    best, runner_up = ranked[0], ranked[1]
    (best_ece, best_eps), (other_ece, other_eps) = worst[best], worst[runner_up]
    if best in void:
        sentence = "No model can be compared: every clean accuracy is at chance."
    else:
        sentence = (f"{best} is the better calibrated under attack: its worst adversarial ECE is "
                    f"{best_ece:.3f} (at ε = {best_eps:g}) against {other_ece:.3f} for {runner_up} "
                    f"(at ε = {other_eps:g}), {other_ece - best_ece:.3f} lower.")
    return {"better_calibrated": None if best in void else best,
            "metric": "worst adversarial ECE over the ε sweep",
            "worst_adversarial_ece": {name: {"ece": e, "eps": eps} for name, (e, eps) in worst.items()},
            "margin": None if best in void else other_ece - best_ece,
            "sentence": sentence}


def check_fail_on(fail_on: str) -> str:
    """``fail_on`` checked against the choices of ``--fail-on``."""
    return check_choice(fail_on, "fail_on", tuple(FAIL_ON))


def reaches(verdicts: Sequence[str], fail_on: str) -> bool:
    """Whether any verdict level is at or above the one ``fail_on`` names."""
    threshold = FAIL_ON[check_fail_on(fail_on)]
    if threshold is None:
        return False
    if any(v not in LEVELS for v in verdicts):
        raise ConfigError(f"verdict: expected levels among {', '.join(LEVELS)}, got {list(verdicts)}")
    return any(LEVELS.index(v) >= LEVELS.index(threshold) for v in verdicts)
