"""Training recipes: the loss of one batch, and the options that change how a step is taken.

Recipes: ``standard``; ``pgd-at`` (Madry et al.: cross-entropy on PGD examples); ``trades``
(Zhang et al.: cross-entropy on clean inputs plus β · KL(p(x) ‖ p(x')) on examples that
maximise that KL); ``fgsm-rs`` ("fast" adversarial training: one FGSM step of 1.25 ε from a
uniform random start). For zero-shot CLIP classifiers (:mod:`advcal.clip`): ``tecoa`` (Mao et
al.: cross-entropy on PGD examples of the zero-shot logits — pgd-at by another name), ``ucat``
(arXiv 2512.12997: tecoa's loss plus λ · KL(Dir(α_adv) ‖ Dir(α_ref)), the Dirichlet built from
the fine-tuned model's adversarial logits against the frozen original's clean ones) and
``fare`` (Schlarmann et al.: the squared distance of the image embedding of an adversarial
image, found by maximising that distance, to the frozen encoder's embedding of the clean one).
Options combine with any of them:

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

Every recipe but ``trades``, ``ucat`` and ``fare`` also trains text classifiers
(:class:`~advcal.text.TextClassifier`): their adversarial examples are PGD steps on the input
embeddings (:mod:`advcal.training.inputs`).

Every random draw is keyed on ``(seed, sample index, epoch)`` (:mod:`advcal._core.rng`), so a recipe's
batches do not depend on batch composition and a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from advcal._core.errors import ConfigError
from advcal._core.registry import Registry
from advcal._core.validation import check_choice, check_int, check_positive, check_seed
from advcal.attacks.geometry import random_start
from advcal.models import frozen
from advcal.training.inputs import Inputs, logits_of, perturb

# name -> the kind of model it trains ("image" classifiers or "clip" encoders).
RECIPES: Registry[str] = Registry("recipe")
RECIPES.add("standard", "image", "Cross-entropy on clean inputs.")
RECIPES.add("pgd-at", "image", "Madry et al.: cross-entropy on PGD examples.")
RECIPES.add("trades", "image", "Zhang et al.: clean cross-entropy plus beta * KL(p(x) || p(x')).")
RECIPES.add("fgsm-rs", "image", "Fast adversarial training: one FGSM step of 1.25 eps, random start.")
RECIPES.add("ucat", "clip", "arXiv 2512.12997: tecoa's loss plus a Dirichlet KL to the frozen original.")
RECIPES.add("tecoa", "clip", "Mao et al.: cross-entropy on PGD examples of the zero-shot logits.")
RECIPES.add("fare", "clip", "Schlarmann et al.: adversarial embeddings pulled to the frozen encoder's.")
# The CLIP fine-tuning recipes; `advcal train` gives them UCAT's settings by default (configs.TrainConfig).
CLIP_RECIPES = tuple(name for name, trains in RECIPES.items() if trains == "clip")
# Recipes whose loss compares the model with a frozen copy of itself as training began.
WITH_REFERENCE = ("ucat", "fare")


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
    kl_weight: float | None = None  # UCAT's λ; default 1e5 / exp(softplus(2 / dirichlet_tau))
    dirichlet_tau: float = 0.07
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice(self.name, "recipe", RECIPES)
        check_positive(self.eps, "eps")
        check_int(self.steps, "steps", 1)
        check_positive(self.trades_beta, "trades_beta")
        check_positive(self.train_temperature, "train_temperature")
        check_positive(self.dirichlet_tau, "dirichlet_tau")
        if self.alpha is not None:
            check_positive(self.alpha, "alpha")
        if self.kl_weight is not None and not (math.isfinite(self.kl_weight) and self.kl_weight >= 0):
            raise ConfigError(f"kl_weight: expected a finite number >= 0, got {self.kl_weight!r}")
        check_seed(self.seed)
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

    @property
    def needs_reference(self) -> bool:
        """Whether the loss needs the frozen model as training began (``ucat``, ``fare``)."""
        return self.name in WITH_REFERENCE

    def batch_loss(
        self, model: nn.Module, x: Inputs, y: torch.Tensor, index: torch.Tensor, epoch: int, epochs: int,
        reference: nn.Module | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The training loss of one batch and the logits it was computed on (for accuracy).

        ``x`` is an image tensor, or a list of texts for a text classifier (whose adversarial
        recipes perturb the input embeddings: :func:`~advcal.training.inputs.perturb`).
        ``reference`` is the frozen model as training began, for ``ucat`` and ``fare``.
        """
        t = self.train_temperature
        if self.name == "standard":
            logits = logits_of(model, x)
            return nn.functional.cross_entropy(logits / t, y), logits
        eps = self.eps_at(epoch, epochs)
        # Fresh perturbations every epoch, keyed on the sample: seed stream = epoch.
        seed = self.seed * 1_000_003 + epoch
        alpha = self.alpha or 2.5 * eps / self.steps
        if self.name in ("trades", *WITH_REFERENCE) and not isinstance(x, torch.Tensor):
            raise ConfigError(f"recipe: {self.name} is implemented for images only; for text use pgd-at or "
                              "fgsm-rs (embedding-space)")
        if self.needs_reference and reference is None:
            raise ConfigError(f"reference: the {self.name} recipe needs the frozen model as training began")
        if self.name == "trades":
            with frozen(model), torch.no_grad():  # the clean prediction the KL is measured from
                target = torch.softmax(model(x) / t, 1)

            def divergence(z: torch.Tensor) -> torch.Tensor:
                return nn.functional.kl_div(torch.log_softmax(model(z) / t, 1), target, reduction="sum")

            x_adv = _maximise(model, divergence, x, eps, self.steps, alpha, seed, index, start=0.001)
            logits = model(x)
            kl = nn.functional.kl_div(torch.log_softmax(model(x_adv) / t, 1), torch.softmax(logits / t, 1),
                                      reduction="batchmean")
            return nn.functional.cross_entropy(logits / t, y) + self.trades_beta * kl, logits
        if self.name == "fare":
            return _fare_loss(model, reference, x, eps, self.steps, alpha, seed, index)
        steps, alpha = (1, 1.25 * eps) if self.name == "fgsm-rs" else (self.steps, self.alpha)
        adversarial = perturb(model, x, y, index, eps=eps, steps=steps, alpha=alpha, seed=seed,
                              loss_temperature=t)
        logits = logits_of(model, adversarial)
        loss = nn.functional.cross_entropy(logits / t, y)
        if self.name == "ucat":
            loss = loss + self._dirichlet_alignment(model, reference, logits, x)
        return loss, logits

    def _dirichlet_alignment(
        self, model: nn.Module, reference: nn.Module, adv_logits: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        """UCAT's λ · KL(Dir(α_adv) ‖ Dir(α_ref)), batch mean: the fine-tuned model on the adversarial
        images against the frozen original on the clean ones (arXiv 2512.12997)."""
        from advcal.clip.dirichlet import concentrations, default_kl_weight, dirichlet_kl

        with torch.no_grad():
            ref_logits = reference(x)
        tau = self.dirichlet_tau
        alpha_adv = concentrations(adv_logits, _logit_scale(model), tau)
        alpha_ref = concentrations(ref_logits, _logit_scale(reference), tau)
        weight = default_kl_weight(tau) if self.kl_weight is None else self.kl_weight
        # Kept in float64: next to a cross-entropy of order 1, float32 would round a small KL away.
        return weight * dirichlet_kl(alpha_adv, alpha_ref).mean()


def _logit_scale(model: nn.Module) -> torch.Tensor:
    """A zero-shot CLIP head's logit scale (logits = scale × cosine), which UCAT divides out."""
    scale = getattr(model, "logit_scale", None)
    if scale is None:
        raise ConfigError(f"model: ucat needs a zero-shot CLIP classifier (advcal.clip.ZeroShotClassifier) "
                          f"with a logit_scale, got {type(model).__name__}")
    return torch.as_tensor(scale).detach()


def _fare_loss(
    model: nn.Module, reference: nn.Module, x: torch.Tensor, eps: float, steps: int, alpha: float, seed: int,
    index: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FARE (Schlarmann et al. 2024): ‖φ(x′) − φ_ref(x)‖² with x′ maximising it, φ the image encoder.

    Unsupervised: the labels are not used; the returned logits (for the accuracy column) are
    the model's on x′.
    """
    encode, encode_reference = (getattr(m, "encode_image", None) for m in (model, reference))
    if not callable(encode) or not callable(encode_reference):
        raise ConfigError(f"model: fare needs a model with an encode_image method (a zero-shot CLIP "
                          f"classifier), got {type(model).__name__}")
    with torch.no_grad():
        target = encode_reference(x)
    x_adv = _maximise(model, lambda z: (encode(z) - target).square().sum(), x, eps, steps, alpha, seed, index,
                      start=eps)
    loss = (encode(x_adv) - target).square().sum(1).mean()
    with torch.no_grad():
        logits = model(x_adv)
    return loss, logits


def _maximise(
    model: nn.Module, objective: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, eps: float,
    steps: int, alpha: float, seed: int, index: torch.Tensor, *, start: float,
) -> torch.Tensor:
    """PGD-L∞ ascent on ``objective(x′)`` (a scalar computed through ``model``) from a keyed uniform
    start of radius ``start``: the inner maximisation of TRADES (a KL) and FARE (an embedding
    distance).

    Run under :func:`~advcal.models.frozen`: eval mode (BatchNorm statistics untouched) and every
    module's mode restored exactly afterwards, so a BatchNorm freeze survives the attack.
    """
    with frozen(model):
        x_adv = random_start(x, start, "linf", seed, index, stream=7)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(x_adv), x_adv)
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
