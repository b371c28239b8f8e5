"""Zero-shot CLIP (open_clip): the prompt head, Dirichlet uncertainty, and loading local checkpoints.

``open_clip`` is imported only when a model is built, so ``import advcal.clip`` works without it.
The fine-tuning recipes (``ucat``, ``tecoa``, ``fare``) are in :mod:`advcal.training`; the
zero-shot robustness suite is :mod:`advcal.analyses.zeroshot`.

Layer (docs/architecture.md; lint-imports holds it): imports only from results, attacks,
metrics, data, models and _core.
"""

from advcal.clip.dirichlet import (
    DirichletUncertainty,
    concentrations,
    default_kl_weight,
    dirichlet_kl,
    dirichlet_uncertainty,
)
from advcal.clip.loading import load_clip, read_class_names, tiny_clip
from advcal.clip.zeroshot import DEFAULT_TEMPLATES, ZeroShotClassifier

__all__ = [
    "DEFAULT_TEMPLATES",
    "DirichletUncertainty",
    "ZeroShotClassifier",
    "concentrations",
    "default_kl_weight",
    "dirichlet_kl",
    "dirichlet_uncertainty",
    "load_clip",
    "read_class_names",
    "tiny_clip",
]
