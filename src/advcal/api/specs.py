"""From the strings users type to the objects the analyses take: models, class names,
calibrated and ensembled models, text inputs, attack settings."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from torch import nn

from advcal._core.errors import AdvcalError, ConfigError, InputError


def split_names(text: str | None) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (the comma-separated options)."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def one_budget(text: str, argument: str = "eps") -> float:
    """The single budget ``text`` names (fractions allowed), or an :class:`InputError`."""
    from advcal._core.validation import parse_numbers

    values = parse_numbers(text, argument)
    if len(values) != 1:
        raise InputError(f"{argument}: expected one budget, got {len(values)} ({text})")
    return values[0]


def attack_params(attack: str, steps: int | None) -> dict[str, int]:
    """``--steps`` as the attack's own keyword (Square counts queries); nothing when not given,
    so each attack keeps its own default (pgd 20, apgd 100, square 1000)."""
    return {} if steps is None else {("queries" if attack == "square" else "steps"): steps}


def class_names(classes: Path | None, data: object) -> list[str]:
    """The class names a zero-shot model is given: ``classes`` (a file, one per line) or the data's own."""
    if classes is not None:
        from advcal.clip import read_class_names

        return read_class_names(classes)
    return [name.replace("_", " ") for name in data.classes]


def load_models(
    specs: Sequence[str],
    weights: Sequence[Path] = (),
    normalize: str | None = None,
    classes: Sequence[str] = (),
    names: Sequence[str] = (),
) -> dict[str, nn.Module]:
    """Name -> model for each spec, with its weights (one per spec) and normalisation; ``clip:ARCH``
    specs become zero-shot classifiers over ``classes``. Names are ``names`` or short unique ones
    (:func:`advcal.models.provenance.unique_names`)."""
    from advcal.models import load_model, parse_normalize
    from advcal.models.provenance import unique_names

    if weights and len(weights) != len(specs):
        raise InputError(f"weights: give one --weights per --model ({len(specs)}), got {len(weights)}")
    labels = unique_names(list(specs), list(weights) or None, list(names) or None)  # before anything loads
    mean_std = parse_normalize(normalize) if normalize else None
    models = {}
    for i, (label, spec) in enumerate(zip(labels, specs, strict=True)):
        weight = weights[i] if weights else None
        if not spec.startswith("clip:"):
            models[label] = load_model(spec, weight, mean_std)
            continue
        from advcal.clip import load_clip

        if mean_std is not None:
            raise ConfigError("normalize: a CLIP model normalises its inputs itself; leave out --normalize")
        models[label] = load_clip(spec.removeprefix("clip:"), weight, classes=list(classes))
    return models


def load_one_model(
    spec: str, weights: Path | None, normalize: str | None, data: object
) -> tuple[str, nn.Module]:
    """The one model a single-model command names, with the name it reports it under."""
    ((name, model),) = load_models(
        [spec], [weights] if weights else (), normalize, class_names(None, data)
    ).items()
    return name, model


def calibrated(
    models: dict[str, nn.Module], calibrators: Sequence[Path] = (), ensemble: bool = False
) -> dict[str, nn.Module]:
    """Each model wrapped by its calibrator (one per model, in order), renamed after it; then,
    with ``ensemble``, all of them as one ensemble (probabilities averaged)."""
    from advcal.calibration import load_calibrator
    from advcal.models import Ensemble

    if calibrators:
        if len(calibrators) != len(models):
            raise InputError(
                f"calibrator: give one --calibrator per --model ({len(models)}), got {len(calibrators)}"
            )
        wrapped = {}
        for (name, net), folder in zip(models.items(), calibrators, strict=True):
            fitted = load_calibrator(folder)
            wrapped[f"{name} + {fitted.kind} ({Path(folder).name})"] = fitted.wrap(net)
        models = wrapped
    if ensemble:
        models = {"ensemble(" + " + ".join(models) + ")": Ensemble(list(models.values()))}
    return models


def text_attack(attack: str) -> str:
    """The text attack an image-default ``attack`` means: ``pgd`` (the image default) is ``word``."""
    return "word" if attack == "pgd" else attack


def refuse_for_text(**given: object) -> None:
    """A :class:`ConfigError` naming the image-only options given to a text command."""
    named = [f"--{flag.replace('_', '-')}" for flag, value in given.items() if value]
    if named:
        raise ConfigError(f"{', '.join(named)}: not available for text audits yet")


@contextmanager
def as_option(option: str, inner: str) -> Iterator[None]:
    """An error the body raises about its own argument ``inner`` re-raised about the user's
    ``option`` (``split: ...`` from loading the calibration split is ``calibration_split: ...``)."""
    try:
        yield
    except AdvcalError as error:
        text = str(error)
        if not text.startswith(f"{inner}:"):
            raise
        raise type(error)(f"{option}:{text[len(inner) + 1:]}") from None
