"""Attacking a calibrated model the way an adaptive adversary would.

A differentiable calibrator (temperature, vector scaling) is attacked end to end. A
non-differentiable one (isotonic, histogram binning) has no useful gradient, and even a
straight-through backward pass is not enough: its outputs saturate (a calibrated probability of
exactly 1), which zeroes the loss's own gradient. The adversary therefore uses BPDA with the
identity as the calibrator's surrogate in both passes — the attack runs on the raw model — and
the adversarial inputs are scored by the calibrated model. Since a calibrator only re-maps
scores, the calibrated model is then exactly as robust as the raw one wherever it keeps the
raw prediction.
"""

from __future__ import annotations

import dataclasses

import torch

from advcal.attacks import Attack, AttackResult
from advcal.calibration.base import CalibratedModel


def attack_calibrated(
    attack: Attack, model: CalibratedModel, x: torch.Tensor, y: torch.Tensor,
    index: torch.Tensor | None = None, clean_logits: torch.Tensor | None = None,
) -> list[AttackResult]:
    """Run ``attack`` against the calibrated ``model`` (BPDA for non-differentiable calibrators).

    Returns one result per ε, whose ``logits`` and ``clean_logits`` are the calibrated model's.
    ``clean_logits``, the calibrated model's logits at ``x`` when the caller has them, spare the
    attack its own clean pass (BPDA attacks the uncalibrated model, whose clean pass it makes).
    """
    calibrator = model.calibrator
    if calibrator.differentiable:
        results = attack(model, x, y, index=index, clean_logits=clean_logits)
        return results if isinstance(results, list) else [results]
    results = attack(model.model, x, y, index=index)
    results = results if isinstance(results, list) else [results]
    out = []
    for result in results:
        logits = calibrator.transform(result.logits)
        clean = calibrator.transform(result.clean_logits)
        out.append(dataclasses.replace(result, logits=logits, clean_logits=clean,
                                       success=logits.argmax(1) != result.labels))
    return out
