"""What every post-hoc calibrator shares: fit/transform, checks, saving, a model wrapper.

A calibrator maps a model's logits to calibrated logits (``softmax`` of which are the
calibrated probabilities), scikit-learn style: ``fit(logits, labels)`` then
``transform(logits)``. It saves to a folder as ``calibrator.json`` (kind, settings) plus
``calibrator.safetensors`` (its fitted tensors) — never a pickle — and wraps a model as an
ordinary ``nn.Module`` so the calibrated model can be audited and attacked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

import advcal
from advcal._core.atomic import write_bytes_atomic, write_json_atomic
from advcal._core.errors import InputError, describe

PARAMS_FILE, TENSORS_FILE = "calibrator.json", "calibrator.safetensors"


def check_logits_labels(logits: object, labels: object) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, labels)`` as float64 and int64 CPU tensors, or an InputError naming the argument."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] < 2:
        raise InputError(f"logits: expected an (N, classes >= 2) tensor, got {describe(logits)}")
    if not torch.isfinite(logits).all():
        raise InputError("logits: expected finite values, got NaN or infinity")
    if not isinstance(labels, torch.Tensor) or labels.shape != logits.shape[:1]:
        raise InputError(f"labels: expected {len(logits)} class indices, got {describe(labels)}")
    labels = labels.detach().cpu().long()
    if len(labels) and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise InputError(f"labels: expected class indices in [0, {logits.shape[1]}), got "
                         f"{int(labels.min())} .. {int(labels.max())}")
    return logits.detach().cpu().double(), labels


class Calibrator(ABC):
    """Base class: subclasses set ``kind`` and implement ``_fit``, ``_transform`` and their state."""

    kind: ClassVar[str] = ""
    differentiable: ClassVar[bool] = True  # transform has useful gradients (else: straight-through)
    preserves_argmax: ClassVar[bool] = False

    def __init__(self) -> None:
        self.n_classes: int | None = None

    def fit(self, logits: torch.Tensor, labels: torch.Tensor) -> Calibrator:
        """Fit on (calibration) logits and labels; returns ``self``."""
        logits, labels = check_logits_labels(logits, labels)
        self.n_classes = logits.shape[1]
        self._fit(logits, labels)
        return self

    def transform(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated logits (same shape, dtype and device as ``logits``)."""
        if self.n_classes is None:
            raise InputError(f"{type(self).__name__}: call fit before transform")
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] != self.n_classes:
            raise InputError(f"logits: expected an (N, {self.n_classes}) tensor, got {describe(logits)}")
        return self._transform(logits)

    def predict_proba(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities."""
        return torch.softmax(self.transform(logits), 1)

    def wrap(self, model: nn.Module) -> CalibratedModel:
        """``model`` followed by this calibrator, as one ``nn.Module`` that attacks can use."""
        return CalibratedModel(model, self)

    # ---------------------------------------------------------------- saving
    def save(self, folder: str | Path) -> Path:
        """Write ``calibrator.json`` and ``calibrator.safetensors`` into ``folder``."""
        if self.n_classes is None:
            raise InputError(f"{type(self).__name__}: call fit before save")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {name: t.detach().cpu().contiguous() for name, t in self._tensors().items()}
        write_bytes_atomic(folder / TENSORS_FILE, safetensors_bytes(tensors))
        write_json_atomic(folder / PARAMS_FILE, {"kind": self.kind, "advcal_version": advcal.__version__,
                                                 "n_classes": self.n_classes, "settings": self._settings()})
        return folder

    def _settings(self) -> dict[str, object]:
        return {}

    @abstractmethod
    def _tensors(self) -> dict[str, torch.Tensor]:
        """The fitted state, to save."""

    @abstractmethod
    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        """Set the fitted state from saved tensors."""

    @abstractmethod
    def _fit(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Fit on float64 logits and int64 labels."""

    @abstractmethod
    def _transform(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated logits of checked logits."""


class CalibratedModel(nn.Module):
    """``calibrator.transform(model(x))``; a non-differentiable calibrator passes gradients
    straight through. Straight-through is not enough to attack it (its saturated outputs zero
    the loss's gradient): attack it with :func:`advcal.calibration.attack_calibrated`."""

    def __init__(self, model: nn.Module, calibrator: Calibrator) -> None:
        super().__init__()
        self.model, self.calibrator = model, calibrator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        calibrated = self.calibrator.transform(logits)
        if self.calibrator.differentiable:
            return calibrated
        return logits + (calibrated - logits).detach()
