"""``advcal.audit``: one audit, whatever the modality of the data.

Images and texts differ in how inputs are batched and attacked, not in what an audit is: both
stream through :func:`advcal.engine.passes.stream` and give one :class:`AuditResult` of the
same layout. This function picks the modality from ``data`` and the modality's own defaults
where an argument is left out (the attack, the batch size), so one call serves both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from advcal._core.errors import ConfigError
from advcal.analyses.audit import AuditResult
from advcal.analyses.audit import audit as audit_images
from advcal.analyses.text_audit import audit_text
from advcal.api.specs import text_attack
from advcal.data import AdversarialSet, DataSource
from advcal.defaults import AUDIT
from advcal.engine.passes import ProgressFn
from advcal.text.data import TextDataset


def audit(
    models: nn.Module | Mapping[str, nn.Module],
    data: DataSource | AdversarialSet | TextDataset | str,
    epsilons: Sequence[float] | None = None,
    attack: str | None = None,
    attack_params: Mapping[str, object] | None = None,
    *,
    n_bins: int = AUDIT.n_bins,
    bootstrap: int = AUDIT.bootstrap,
    seed: int = AUDIT.seed,
    batch_size: int | None = None,
    profile: str = AUDIT.profile,
    device: str | torch.device | None = None,
    progress: ProgressFn | None = None,
    illusion: bool = False,
    fixes: bool = False,
    calibration: DataSource | TextDataset | None = None,
    examples: int = AUDIT.examples,
) -> AuditResult:
    """Audit each model's calibration on ``data``, clean and under ``attack`` at each budget.

    Args:
        models: a model, or name -> model: image classifiers (logits for inputs in [0, 1]) or
            text classifiers (:class:`advcal.text.TextClassifier`, or any module mapping a list
            of texts to logits).
        data: images (a :class:`~advcal.data.DataSource`, a data spec, or a stored
            :class:`~advcal.data.AdversarialSet`) or texts (a :class:`~advcal.text.TextDataset`,
            ``advcal.text.load_text_data(...)``).
        epsilons: the budget sweep: ε in input units for images; for texts the largest fraction
            of words changed (``word``, ``char``) or the per-token L2 radius (``embedding-pgd``).
            Default: a sweep suited to the data or the attack.
        attack: a registered attack (default ``pgd`` for images, ``word`` for texts, where
            ``pgd`` also means ``word``).
        attack_params: further settings of the attack (``steps``, ``query_budget``, ...).
        n_bins, bootstrap, seed, profile, progress, illusion, fixes, calibration: as in
            :func:`advcal.analyses.audit.audit` and :func:`advcal.analyses.text_audit.audit_text`
            (texts need ``calibration`` for the illusion check and the fixes).
        batch_size: samples per forward pass (default 256 images, 32 texts).
        device: where images are audited (texts run on the CPU).
        examples: texts only: the successful adversarial texts kept per model for the report.
    """
    # None, not any falsy value, means "the modality's default": an empty attack name is refused.
    if isinstance(data, TextDataset):
        if device is not None and str(device) != "cpu":
            raise ConfigError(f"device: text audits run on the CPU, got {device!r}")
        return audit_text(
            models, data, epsilons, text_attack(AUDIT.text_attack if attack is None else attack),
            attack_params, n_bins=n_bins, bootstrap=bootstrap, seed=seed, profile=profile, progress=progress,
            examples=examples,
            batch_size=AUDIT.text_batch_size if batch_size is None else batch_size,
            illusion=illusion, fixes=fixes, calibration=calibration,
        )
    if examples != AUDIT.examples:
        raise ConfigError(f"examples: adversarial examples are kept for text audits only, got {examples!r}")
    return audit_images(
        models, data, epsilons, AUDIT.attack if attack is None else attack, attack_params, n_bins=n_bins,
        bootstrap=bootstrap, seed=seed, batch_size=AUDIT.batch_size if batch_size is None else batch_size,
        profile=profile, device=device, progress=progress, illusion=illusion, fixes=fixes,
        calibration=calibration,
    )
