"""Per-sample attack losses, each with an attack-side temperature.

Every loss takes logits ``z`` ``(N, C)`` and labels ``y`` ``(N,)`` and returns one value per
sample; attacks *maximise* it. ``temperature`` divides the logits inside the loss only: the
model and its reported logits are untouched. This is the lever of the illusion-of-robustness
work (arXiv 2402.17509): an extreme temperature saturates a softmax loss and breaks the
attack's search, while the margin and DLR losses are (nearly) scale-invariant.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from advcal._core.errors import ConfigError
from advcal._core.validation import check_choice, check_positive

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _true_and_best_other(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    true = z.gather(1, y[:, None]).squeeze(1)
    others = z.scatter(1, y[:, None], float("-inf"))
    return true, others.max(1).values


def cross_entropy(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``-log softmax(z)_y``."""
    return torch.nn.functional.cross_entropy(z, y, reduction="none")


def margin(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin ``max_{j != y} z_j - z_y`` (> 0 once misclassified)."""
    true, other = _true_and_best_other(z, y)
    return other - true


def dlr(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio (Croce & Hein 2020): the margin over ``z_(1) - z_(3)``.

    Invariant to shifting and scaling the logits, so no temperature can mask it.
    """
    if z.shape[1] < 3:
        raise ConfigError("loss: DLR needs at least 3 classes; use 'margin' for binary models")
    true, other = _true_and_best_other(z, y)
    top = z.topk(3, dim=1).values
    return (other - true) / (top[:, 0] - top[:, 2] + 1e-12)


LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "margin": margin, "cw": margin, "dlr": dlr}


def get_loss(name: str, temperature: float = 1.0) -> LossFn:
    """The loss ``name`` (ce, margin/cw, dlr) applied to ``logits / temperature``."""
    loss = LOSSES[check_choice(name, "loss", tuple(LOSSES))]
    temperature = check_positive(temperature, "loss_temperature")
    if temperature == 1.0:
        return loss
    return lambda z, y: loss(z / temperature, y)
