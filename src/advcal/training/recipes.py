"""Training recipes: the loss of one batch, and the options that change how a step is taken.

Recipes: ``standard``; ``pgd-at`` (Madry et al.: cross-entropy on PGD examples); ``trades``
(Zhang et al.: cross-entropy on clean inputs plus β · KL(p(x) ‖ p(x')) on examples that
maximise that KL); ``fgsm-rs`` ("fast" adversarial training: one FGSM step of 1.25 ε from a
uniform random start). Options combine with any of them:

* ``train_temperature`` (high-temperature training, arXiv 2402.17509 §5): the logits are divided
  by ``T`` in the training loss — and in the inner attack's loss — only;
* ``gradnorm``: the global L2 norm of the gradient is scaled to 1 before every step (the
  gradient normalisation that made DDi-AT accidentally over-confident);
* ``freeze_bn_last``: BatchNorm statistics stop updating for the last fraction of epochs;
* ``pre_head_temperature``: a learnable temperature divides the input of the model's last
  linear layer (:class:`PreHeadTemperature`);
* ``eps_warmup``: the training attack's ε grows linearly over this fraction of the epochs;
* ``head_only``: only the model's last ``nn.Linear`` (its classification head) is trained — a
  linear probe on a frozen pretrained encoder, the affordable way to adapt a transformer on CPU.

Every recipe but ``trades`` also trains text classifiers (:class:`~advcal.text.TextClassifier`):
their adversarial examples are PGD steps on the input embeddings (:mod:`advcal.training.inputs`).

Every random draw is keyed on ``(seed, sample index, epoch)`` (:mod:`advcal.rng`), so a recipe's
batches do not depend on batch composition and a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from advcal.attacks.geometry import random_start
from advcal.checks import check_choice, check_int, check_positive
from advcal.errors import ConfigError
from advcal.models import frozen
from advcal.training.inputs import Inputs, logits_of, perturb

RECIPES = ("standard", "pgd-at", "trades", "fgsm-rs")


@dataclass(frozen=True)
class Recipe:
    """Everything that decides how a classifier is trained (recorded with every run)."""

    name: str = "standard"
    eps: float = 0.1
    steps: int = 7
    alpha: float | None = None  # PGD step; default 2.5 * eps / steps
    trades_beta: float = 6.0
    train_temperature: float = 1.0
    gradnorm: bool = False
    freeze_bn_last: float = 0.0
    pre_head_temperature: bool = False
    eps_warmup: float = 0.0
    head_only: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice(self.name, "recipe", RECIPES)
        check_positive(self.eps, "eps")
        check_int(self.steps, "steps", 1)
        check_positive(self.trades_beta, "trades_beta")
        check_positive(self.train_temperature, "train_temperature")
        for name in ("freeze_bn_last", "eps_warmup"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(
                    f"{name}: expected a fraction of training in [0, 1), got {getattr(self, name)!r}")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def eps_at(self, epoch: int, epochs: int) -> float:
        """The training attack's ε in ``epoch`` (0-based) of ``epochs``: the warm-up ramp, then ``eps``."""
        ramp = self.eps_warmup * epochs
        return self.eps if ramp <= 0 else self.eps * min(1.0, (epoch + 1) / ramp)

    def frozen_bn(self, epoch: int, epochs: int) -> bool:
        """Whether BatchNorm statistics are frozen in ``epoch``."""
        return self.freeze_bn_last > 0 and epoch >= epochs - math.ceil(self.freeze_bn_last * epochs)

    def batch_loss(
        self, model: nn.Module, x: Inputs, y: torch.Tensor, index: torch.Tensor, epoch: int, epochs: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The training loss of one batch and the logits it was computed on (for accuracy).

        ``x`` is an image tensor, or a list of texts for a text classifier (whose adversarial
        recipes perturb the input embeddings: :func:`~advcal.training.inputs.perturb`).
        """
        t = self.train_temperature
        if self.name == "standard":
            logits = logits_of(model, x)
            return nn.functional.cross_entropy(logits / t, y), logits
        eps = self.eps_at(epoch, epochs)
        # Fresh perturbations every epoch, keyed on the sample: seed stream = epoch.
        seed = self.seed * 1_000_003 + epoch
        if self.name == "trades":
            if not isinstance(x, torch.Tensor):
                raise ConfigError("recipe: trades is implemented for images only; for text use pgd-at or "
                                  "fgsm-rs (embedding-space)")
            x_adv = _trades_examples(model, x, eps, self.steps, self.alpha or 2.5 * eps / self.steps, t, seed,
                                     index)
            logits = model(x)
            kl = nn.functional.kl_div(torch.log_softmax(model(x_adv) / t, 1), torch.softmax(logits / t, 1),
                                      reduction="batchmean")
            return nn.functional.cross_entropy(logits / t, y) + self.trades_beta * kl, logits
        steps, alpha = (1, 1.25 * eps) if self.name == "fgsm-rs" else (self.steps, self.alpha)
        adversarial = perturb(model, x, y, index, eps=eps, steps=steps, alpha=alpha, seed=seed,
                              loss_temperature=t)
        logits = logits_of(model, adversarial)
        return nn.functional.cross_entropy(logits / t, y), logits


def _trades_examples(
    model: nn.Module, x: torch.Tensor, eps: float, steps: int, alpha: float, t: float, seed: int,
    index: torch.Tensor,
) -> torch.Tensor:
    """TRADES' inner maximisation: PGD-L∞ on KL(p(x) ‖ p(x')) from a small keyed random start.

    Run under :func:`~advcal.models.frozen`: eval mode (BatchNorm statistics untouched) and every
    module's mode restored exactly afterwards, so a BatchNorm freeze survives the attack.
    """
    with frozen(model):
        with torch.no_grad():
            target = torch.softmax(model(x) / t, 1)
        x_adv = random_start(x, 0.001, "linf", seed, index, stream=7)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            kl = nn.functional.kl_div(torch.log_softmax(model(x_adv) / t, 1), target, reduction="sum")
            (grad,) = torch.autograd.grad(kl, x_adv)
            x_adv = torch.min(torch.max(x_adv.detach() + alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def normalise_gradients(model: nn.Module) -> float:
    """Scale every gradient so that their global L2 norm is 1; returns the norm before."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
    if norm > 0:
        for g in grads:
            g.div_(norm)
    return norm


def set_bn_frozen(model: nn.Module, frozen: bool) -> None:
    """BatchNorm layers in eval mode (statistics fixed) when ``frozen``, else following the model."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train(model.training and not frozen)


class PreHeadTemperature(nn.Module):
    """A learnable temperature ``exp(log_t)`` dividing the input of the model's last ``nn.Linear``.

    The wrapped model's own modules are used as they are; only the head's input is rescaled, so
    the temperature is learned with the weights and travels with them in the state dict.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        head = classification_head(model, "pre_head_temperature")
        self.model = model
        self.log_temperature = nn.Parameter(torch.zeros(()))
        head.register_forward_pre_hook(lambda _, inputs: (inputs[0] / self.log_temperature.exp(),))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def classification_head(model: nn.Module, option: str) -> nn.Linear:
    """The model's last ``nn.Linear`` (in module order): its classification head.

    ``option`` names the setting that needs the head, for the error when there is none.
    """
    heads = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if not heads:
        raise ConfigError(f"{option}: the model has no nn.Linear head (its last layer must be one)")
    return heads[-1]
