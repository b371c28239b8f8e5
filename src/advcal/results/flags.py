"""Flag codes and flags: every finding an analysis can report, its severities and the
plain-words explanation the report shows, in one place.

A code's ``severities`` are the only ones a rule may give it (``ECE_DELTA`` is ``info`` when the
paired test calls the rise noise, a warning or an error by the profile's thresholds); a
:class:`Flag` with any other is a bug and is refused when it is made. Codes and severities are
``str`` enums, so they compare equal to the strings report.json holds and serialise as them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from advcal.results.schema import described


class Severity(str, Enum):
    """How much a flag weighs, lowest first."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    def __str__(self) -> str:  # the value, as in report.json, also inside f-strings
        return self.value


SEVERITIES = tuple(s.value for s in Severity)  # lowest first
INFO, WARNING, ERROR = Severity.INFO, Severity.WARNING, Severity.ERROR


def severity_rank(severity: str) -> int:
    """The rank of ``severity`` (a value read back from a report); an unknown one ranks lowest."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


class FlagCode(str, Enum):
    """A finding's stable code (for machines), the severities it may have and its explanation."""

    severities: tuple[Severity, ...]
    explanation: str

    def __new__(cls, code: str, severities: tuple[Severity, ...], explanation: str) -> FlagCode:
        member = str.__new__(cls, code)
        member._value_ = code
        member.severities = severities
        member.explanation = explanation
        return member

    def __str__(self) -> str:  # the code, as in report.json, also inside f-strings
        return self.value

    CHANCE_ACCURACY = (
        "CHANCE_ACCURACY", (ERROR,),
        "Clean accuracy is within noise of always answering the most frequent class: the model has "
        "not learnt this task (random or wrong weights, another label order or preprocessing), so no "
        "other figure of its report means anything.",
    )
    FACTORY_WEIGHTS = (
        "FACTORY_WEIGHTS", (INFO,),
        "No weights file was given, so the model was audited with whatever weights its factory "
        "returns, which is a random initialisation unless the factory loads trained weights itself.",
    )
    ECE_DELTA = (
        "ECE_DELTA", (INFO, WARNING, ERROR),
        "Expected calibration error (the average gap between stated confidence and actual "
        "accuracy) grows by more than the profile allows when inputs are attacked.",
    )
    BIN_ACCURACY_GAP = (
        "BIN_ACCURACY_GAP", (WARNING,),
        "Inputs given the same confidence are right much less often under attack than on clean "
        "data, so a fixed confidence no longer means a fixed chance of being right.",
    )
    LOW_RELIABILITY_SLOPE = (
        "LOW_RELIABILITY_SLOPE", (WARNING,),
        "Accuracy rises too slowly with confidence: higher stated confidence buys little extra "
        "correctness, so confidence separates right from wrong answers poorly.",
    )
    COLLAPSED_CONFIDENCE = (
        "COLLAPSED_CONFIDENCE", (WARNING,),
        "Almost every prediction gets the same middling confidence, whatever the input: the score "
        "carries no information about which answers to trust.",
    )
    NARROW_BAND = (
        "NARROW_BAND", (WARNING,),
        "The ECE looks good only because every confidence sits in a narrow band; the model never "
        "signals that it is sure or unsure, so a low ECE here is not reassuring.",
    )
    CONFIDENCE_HOLLOWING = (
        "CONFIDENCE_HOLLOWING", (ERROR,),
        "The model is at least 90% confident on many inputs that it gets wrong far more often than "
        "that: its high-confidence answers cannot be taken at face value.",
    )
    CLASS_OUTLIER = (
        "CLASS_OUTLIER", (WARNING,),
        "One class is calibrated far worse than the average class; overall metrics hide it.",
    )
    FEW_CLASS_SAMPLES = (
        "FEW_CLASS_SAMPLES", (INFO,),
        "Some classes have too few samples for their per-class numbers to be trusted; they are "
        "shown but not judged.",
    )
    ECE_INFLECTION = (
        "ECE_INFLECTION", (INFO,),
        "The attack strength at which calibration error grows the most: around this ε the model's "
        "confidence stops being trustworthy.",
    )
    RETRAIN_BEFORE_CALIBRATING = (
        "RETRAIN_BEFORE_CALIBRATING", (WARNING,),
        "Calibration is already poor on clean inputs. Post-hoc fixes such as temperature scaling "
        "rarely rescue this; retraining is the better first step.",
    )
    BIMODAL_CONFIDENCE = (
        "BIMODAL_CONFIDENCE", (WARNING,),
        "Confidence splits into two separate clusters (very sure and very unsure) with little in "
        "between, so averages such as ECE summarise it badly; read the histogram.",
    )
    ABSTENTION_FAILS = (
        "ABSTENTION_FAILS", (WARNING,),
        "A confidence threshold chosen on clean inputs to abstain on the least confident ones no "
        "longer protects under attack: the attacked inputs it keeps are wrong far more often.",
    )
    ILLUSION_OF_ROBUSTNESS = (
        "ILLUSION_OF_ROBUSTNESS", (ERROR,),
        "Part of the robustness the standard attack shows comes from the model's (mis)calibration "
        "breaking the attack, not from the model resisting; an attack that accounts for it finds "
        "the lower figure, which is the one to report.",
    )
    SUSPECT_ROBUSTNESS = (
        "SUSPECT_ROBUSTNESS", (WARNING,),
        "The standard attack may be understating this model's weakness: a stronger or recalibrated "
        "attack did somewhat better, or the attack misbehaved. Treat the robust accuracy with care.",
    )
    FIX_BACKFIRES = (
        "FIX_BACKFIRES", (WARNING,),
        "A post-hoc calibration fix that looks better on clean inputs makes confidence worse under "
        "attack; do not ship it on the strength of its clean ECE.",
    )
    FIX_MOVES_DECISIONS = (
        "FIX_MOVES_DECISIONS", (WARNING,),
        "This post-hoc fix changes which class the model predicts, not only how sure it is: its "
        "calibration and robustness figures belong to a different classifier. A fit on attacked "
        "data can learn to undo the very perturbations it was fitted on, or to predict the majority "
        "class.",
    )
    RETRAIN_NOT_PATCH = (
        "RETRAIN_NOT_PATCH", (WARNING,),
        "No post-hoc fix brings clean calibration to an acceptable level; retrain with a "
        "calibration-aware recipe instead of patching.",
    )
    TRANSFER_EVALUATION = (
        "TRANSFER_EVALUATION", (WARNING,),
        "The adversarial inputs came from a stored set crafted against another model. Transferred "
        "attacks are weaker than attacks on this model, so its robustness looks better than it is.",
    )


UNKNOWN_EXPLANATION = "A finding from a check this version of the report does not describe; read its message."


def explanation(code: str) -> str:
    """The explanation of ``code``, also for a code read from another version's report."""
    try:
        return FlagCode(code).explanation
    except ValueError:
        return UNKNOWN_EXPLANATION


@dataclass
class Flag:
    """One finding: ``code`` (stable, for machines), ``severity``, ``message`` (for people)."""

    code: FlagCode = field(metadata=described({"enum": [code.value for code in FlagCode]}))
    severity: Severity = field(metadata=described({"enum": [severity.value for severity in Severity]}))
    message: str = field(metadata=described({"type": "string", "minLength": 1}))
    eps: float | None = field(default=None, metadata=described({"oneOf": [{"$ref": "#/$defs/eps"},
                                                                           {"type": "null"}]}))
    evidence: dict[str, object] = field(default_factory=dict, metadata=described({"type": "object"}))

    def __post_init__(self) -> None:
        self.code, self.severity = FlagCode(self.code), Severity(self.severity)
        if self.severity not in self.code.severities:
            allowed = ", ".join(s.value for s in self.code.severities)
            raise ValueError(f"flag {self.code.value}: severity {self.severity.value!r} is not one of "
                             f"{allowed}")

    def as_dict(self) -> dict[str, object]:
        """The flag as report.json holds it: plain strings, not enum members."""
        return {"code": self.code.value, "severity": self.severity.value, "message": self.message,
                "eps": self.eps, "evidence": self.evidence}
