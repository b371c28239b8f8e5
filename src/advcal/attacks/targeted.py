"""APGD-T: Auto-PGD on the targeted DLR loss, once per target class (Croce & Hein 2020, §4).

For each sample the targets are the classes of its 2nd, 3rd, ... highest clean logits; the
attack runs APGD once per target on the samples no earlier target has misclassified, and keeps
the misclassified iterate as AutoAttack does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from advcal._core.errors import ConfigError
from advcal._core.validation import check_int
from advcal.attacks.apgd import APGD, _where
from advcal.attacks.base import Counter
from advcal.attacks.losses import LossFn


def targeted_dlr(target: torch.Tensor, temperature: float = 1.0) -> LossFn:
    """The targeted DLR loss ``-(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2)`` (maximised), with
    ``z_π`` the sorted logits: positive once class ``t`` beats ``y``, invariant to the logits'
    shift and scale. Needs at least 4 classes."""
    def loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = z / temperature
        top = z.topk(4, dim=1).values
        rows = torch.arange(len(z), device=z.device)
        return -(z[rows, y] - z[rows, target]) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)
    return loss


def target_ranks(clean_logits: torch.Tensor, count: int) -> list[torch.Tensor]:
    """Per target run ``k = 1 .. count``, each sample's class of the (k+1)-th highest clean logit."""
    order = clean_logits.argsort(dim=1, descending=True)
    return [order[:, k] for k in range(1, count + 1)]


class APGDT(APGD):
    """APGD-T: targeted APGD on the DLR loss, over ``target_classes`` targets.

    Args:
        eps: budget (input units) or a list of budgets.
        steps: iterations per target (AutoAttack: 100).
        target_classes: how many of the top other classes to target in turn (AutoAttack: 9; at
            most the number of classes minus one).
        **options: ``norm``, ``restarts`` (per target; AutoAttack: 1), ``rho``, ``random_start``,
            ``seed``, ``loss_temperature``, ``precision`` (see :class:`~advcal.attacks.APGD`).

    Target run ``k`` draws its random start from stream ``k * restarts`` of each sample's
    ``(seed, index)`` key. A sample some target misclassifies gets that target's misclassified
    iterate; a sample no target breaks gets the highest-loss point of the first target's run.

    Cost: ``steps`` forward and backward passes per target run (counted as batch passes while
    any sample is still attacked; broken samples are not attacked again).
    """

    name = "apgd-t"

    def __init__(self, eps: float | Sequence[float] = 8 / 255, steps: int = 100, *,
                 target_classes: int = 9, **options: object) -> None:
        if "loss" in options:
            raise ConfigError("loss: APGD-T always maximises the targeted DLR loss; leave out loss")
        super().__init__(eps, steps, loss="dlr", **options)
        self.target_classes = check_int(target_classes, "target_classes", 1)

    def _extra_params(self) -> dict[str, object]:
        return {**super()._extra_params(), "loss": "dlr-targeted", "target_classes": self.target_classes}

    def _attack(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
        eps: float, clean_logits: torch.Tensor, counter: Counter,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n_classes = clean_logits.shape[1]
        if n_classes < 4:
            raise ConfigError(f"attack apgd-t: the targeted DLR loss needs at least 4 classes, "
                              f"got {n_classes}")
        x_adv, logits = x.clone(), clean_logits.clone()
        fooled = clean_logits.argmax(1) != y
        for k, target in enumerate(target_ranks(clean_logits, min(self.target_classes, n_classes - 1))):
            todo = (~fooled).nonzero().flatten()
            if len(todo) == 0:
                break
            run = self.runs(model, x[todo], y[todo], index[todo.cpu()], eps, counter,
                            targeted_dlr(target[todo], self.loss_temperature), stream=k * self.restarts)
            take = run.fooled | (k == 0)  # the first target's point stands for the unbroken samples
            chosen = todo[take]
            x_adv[chosen] = _where(run.fooled, run.fooled_x, run.x_adv)[take]
            logits[chosen] = _where(run.fooled, run.fooled_logits, run.logits)[take]
            fooled[todo] = run.fooled
        return x_adv, logits
