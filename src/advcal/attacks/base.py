"""What every advcal attack shares: validation, the model guard, precision, costs, results.

An attack is a small class holding its settings. Calling it on ``(model, x, y, index)`` runs it
once per ε and returns an :class:`AttackResult` per ε (one result when ``eps`` is a number, a
list when it is a list — an ε sweep is one call, as in foolbox 3).

Conventions (DESIGN invariants 3, 4 and 7):

* inputs are in [0, 1], before any normalisation (normalisation is part of the model);
  ε is in those units, and an L∞ ε of 1 or more is refused ("did you mean 8/255?");
* the model runs in eval mode with parameter gradients off, and is restored afterwards
  (:func:`advcal.models.frozen`);
* all randomness for sample ``i`` comes from ``(seed, index[i])`` (:mod:`advcal._core.rng`), so
  results do not depend on batch size, order or sharding, and no global RNG is touched;
* the loss and its gradient run in float32 even inside a caller's autocast region, unless
  ``precision`` says otherwise.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from advcal._core.contract import as_tensor, check_labels
from advcal._core.devices import check_same_device, single_device
from advcal._core.errors import InputError, describe
from advcal._core.validation import check_choice, check_positive, check_seed
from advcal.attacks.losses import LossFn, get_loss
from advcal.models.guard import check_logits, frozen

PRECISIONS = ("float32", "float64", "autocast")
SELECTIONS = ("final", "best")


@dataclass
class AttackResult:
    """One attack at one ε on a batch.

    Attributes:
        x_adv: adversarial inputs, same shape as ``x``, inside the ε-ball and [0, 1].
        logits: the model's logits at ``x_adv`` (detached).
        success: per sample, whether the attack reached its goal (misclassification for
            untargeted attacks; a moved confidence with an unchanged prediction for
            confidence attacks).
        eps: the ε of this result (input units).
        labels: the labels the attack was run with.
        index: the sample indices the randomness was keyed on.
        clean_logits: the model's logits at the clean inputs.
        forward_passes, backward_passes: the model evaluations this ε cost, counting batch
            passes (a pass over the whole batch counts once). The one clean forward pass that
            all ε of a call share is not included.
    """

    x_adv: torch.Tensor
    logits: torch.Tensor
    success: torch.Tensor
    eps: float
    labels: torch.Tensor
    index: torch.Tensor
    clean_logits: torch.Tensor
    forward_passes: int = 0
    backward_passes: int = 0
    attack: str = ""
    params: dict[str, object] = field(default_factory=dict)

    @property
    def robust_accuracy(self) -> float:
        """Fraction of samples the model still classifies correctly at ``x_adv``."""
        return float((self.logits.argmax(1) == self.labels).float().mean())


@dataclass
class Counter:
    """Batch forward and backward passes made so far."""

    forward: int = 0
    backward: int = 0


class Attack(ABC):
    """Base class of advcal's attacks. Subclasses implement :meth:`_attack`.

    Args:
        eps: the perturbation budget (input units), or a list of budgets for a sweep.
        seed: seed of all randomness; sample ``i``'s draws depend on ``(seed, index[i])``.
        loss: ``"ce"``, ``"margin"`` (``"cw"``) or ``"dlr"``: what the attack maximises.
        loss_temperature: divides the logits inside the loss only.
        select: ``"final"`` returns the last iterate; ``"best"`` the highest-loss iterate.
        precision: ``"float32"`` (default: loss and gradients in float32 even inside a
            caller's autocast region), ``"float64"``, or ``"autocast"`` (respect the caller's).
    """

    name: ClassVar[str] = "attack"
    # Whether the attack reads the model's gradient at the input (score-only attacks do not).
    needs_gradient: ClassVar[bool] = True
    norm: str = "linf"

    def __init__(
        self,
        eps: float | Sequence[float] = 8 / 255,
        *,
        seed: int = 0,
        loss: str = "ce",
        loss_temperature: float = 1.0,
        select: str = "final",
        precision: str = "float32",
    ) -> None:
        self.eps_values, self.sweep = _eps_list(eps)
        self.seed = check_seed(seed)
        self.loss = loss
        self.loss_temperature = check_positive(loss_temperature, "loss_temperature")
        self.loss_fn: LossFn = get_loss(loss, self.loss_temperature)
        self.select = check_choice(select, "select", SELECTIONS)
        self.precision = check_choice(precision, "precision", PRECISIONS)

    # ------------------------------------------------------------------ public
    def params(self) -> dict[str, object]:
        """Every setting of this attack, JSON-ready (for manifests and reports)."""
        out: dict[str, object] = {
            "attack": self.name,
            "norm": self.norm,
            "eps": list(self.eps_values) if self.sweep else self.eps_values[0],
            "seed": self.seed,
            "loss": self.loss,
            "loss_temperature": self.loss_temperature,
            "select": self.select,
            "precision": self.precision,
        }
        out.update(self._extra_params())
        return out

    def __call__(
        self, model: nn.Module, x: object, y: object, index: object | None = None,
        clean_logits: torch.Tensor | None = None,
    ) -> AttackResult | list[AttackResult]:
        """Attack ``model`` at ``x`` (in [0, 1]) with labels ``y``; one result per ε.

        ``clean_logits``, when the caller already has the model's logits at ``x`` (an audit
        computes them for the clean metrics), spare the attack its one clean forward pass.

        Gradients are switched on for the attack itself, so it works inside the caller's
        ``torch.no_grad()`` or ``torch.inference_mode()`` (inference tensors are copied first).
        """
        x_t, y_t, index_t = self._check_inputs(x, y, index)
        for eps in self.eps_values:
            _check_eps(eps, self.norm, x_t[0].numel())
        with torch.inference_mode(False), torch.enable_grad():
            if x_t.is_inference():
                x_t = x_t.clone()
            if clean_logits is not None and clean_logits.is_inference():
                clean_logits = clean_logits.clone()
            return self._sweep(model, x_t, y_t, index_t, clean_logits)

    def _sweep(
        self, model: nn.Module, x_t: torch.Tensor, y_t: torch.Tensor, index_t: torch.Tensor,
        clean_logits: torch.Tensor | None,
    ) -> AttackResult | list[AttackResult]:
        """The attack at every ε of the sweep, gradients on."""
        results = []
        if any(True for _ in (*model.parameters(), *model.buffers())):  # else it runs anywhere
            device = single_device(model, "model")
            check_same_device(x_t, "x", device, "the model")
            check_same_device(y_t, "y", device, "the model")
        with frozen(model), self._precision(x_t):
            x_t = x_t.to(torch.float64 if self.precision == "float64" else torch.float32)
            if clean_logits is None:
                with torch.no_grad():
                    clean_logits = model(x_t)
            clean_logits = check_logits(clean_logits, len(x_t), "clean_logits").detach()
            if int(y_t.max()) >= clean_logits.shape[1]:
                raise InputError(
                    f"y: class index {int(y_t.max())} is out of range for a model with "
                    f"{clean_logits.shape[1]} outputs"
                )
            for eps in self.eps_values:
                counter = Counter()
                if eps == 0:
                    x_adv, logits = x_t.clone(), clean_logits.clone()
                else:
                    x_adv, logits = self._attack(model, x_t, y_t, index_t, eps, clean_logits, counter)
                results.append(
                    AttackResult(
                        x_adv=x_adv.detach(),
                        logits=logits.detach(),
                        success=self._success(logits, clean_logits, y_t),
                        eps=float(eps),
                        labels=y_t,
                        index=index_t,
                        clean_logits=clean_logits,
                        forward_passes=counter.forward,
                        backward_passes=counter.backward,
                        attack=self.name,
                        params={**self.params(), "eps": float(eps)},
                    )
                )
        return results if self.sweep else results[0]

    # ------------------------------------------------------------------ for subclasses
    @abstractmethod
    def _attack(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        index: torch.Tensor,
        eps: float,
        clean_logits: torch.Tensor,
        counter: Counter,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return adversarial inputs at budget ``eps`` and the model's logits there."""

    def _extra_params(self) -> dict[str, object]:
        return {}

    def _success(self, logits: torch.Tensor, clean_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return logits.argmax(1) != y

    def loss_and_grad(
        self, model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, counter: Counter,
        loss_fn: LossFn | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample loss, its gradient with respect to the input, and the logits."""
        x_adv = x_adv.detach().requires_grad_(True)
        logits = model(x_adv)
        loss = (loss_fn or self.loss_fn)(logits, y)
        # The gradient of the summed loss, without the sum: the backward pass starts from ones
        # (the same numbers as the sum's backward), one forward and one backward op fewer.
        (grad,) = torch.autograd.grad(loss, x_adv, grad_outputs=torch.ones_like(loss))
        counter.forward += 1
        counter.backward += 1
        return loss.detach(), grad.detach(), logits.detach()

    def evaluate(
        self, model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, counter: Counter,
        loss_fn: LossFn | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample loss and logits without a gradient (one forward pass)."""
        with torch.no_grad():
            logits = model(x_adv)
        counter.forward += 1
        return (loss_fn or self.loss_fn)(logits, y), logits

    # ------------------------------------------------------------------ checks
    def _check_inputs(
        self, x: object, y: object, index: object | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x_t = as_tensor(x, "x")
        if x_t.device.type == "meta":
            raise InputError("x: is on the meta device (a tensor without values); expected real inputs")
        if not x_t.is_floating_point():
            raise InputError(f"x: expected floating-point inputs in [0, 1], got {describe(x_t)}")
        if x_t.ndim < 2 or x_t.shape[0] == 0:
            raise InputError(f"x: expected a batch of at least one input, got {describe(x_t)}")
        low, high = float(x_t.min()), float(x_t.max())
        if not (math.isfinite(low) and math.isfinite(high)):
            raise InputError("x: contains NaN or inf")
        if low < 0 or high > 1:
            raise InputError(
                f"x: values must lie in [0, 1], got the range [{low:.4g}, {high:.4g}]; attacks act "
                "on unnormalised inputs (put normalisation inside the model: advcal.models.Normalized)"
            )
        # The label range is checked against the model's outputs after the clean pass.
        y_t = check_labels(y, len(x_t), n_classes=2**62, name="y").to(x_t.device)
        if index is None:
            index_t = torch.arange(len(x_t))
        else:
            index_t = as_tensor(index, "index")
            if index_t.is_floating_point() or index_t.shape != (len(x_t),) or bool((index_t < 0).any()):
                raise InputError(
                    f"index: expected {len(x_t)} non-negative integer sample indices, got {describe(index_t)}"
                )
            index_t = index_t.long()
        return x_t.detach(), y_t, index_t.cpu()

    def _precision(self, x: torch.Tensor) -> contextlib.AbstractContextManager:
        if self.precision == "autocast":
            return contextlib.nullcontext()
        # A caller's reduced-precision autocast region would silently run the loss and the
        # gradient in fp16/bf16 and round the small steps of an ε schedule away.
        return torch.autocast(device_type=x.device.type, enabled=False)


def _eps_list(eps: float | Sequence[float]) -> tuple[tuple[float, ...], bool]:
    if isinstance(eps, str | bytes) or eps is None:
        raise InputError(f"eps: expected a number or a list of numbers, got {eps!r}")
    values = tuple(eps) if isinstance(eps, Sequence) else (eps,)
    if not values:
        raise InputError("eps: expected at least one value, got an empty list")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
            raise InputError(f"eps: expected non-negative finite numbers, got {value!r}")
    return tuple(float(v) for v in values), isinstance(eps, Sequence)


def _check_eps(eps: float, norm: str, n_features: int) -> None:
    """Refuse budgets that are not in [0, 1] input units (DESIGN invariant 7)."""
    if norm == "linf" and eps >= 1:
        raise InputError(
            f"eps: {eps:g} covers the whole [0, 1] input range under L-inf; ε is in input units "
            f"— did you mean {eps:g}/255 (= {eps / 255:.4f})?"
        )
    if norm == "l2" and eps >= math.sqrt(n_features):
        raise InputError(
            f"eps: an L2 budget of {eps:g} covers the whole [0, 1] cube of {n_features} features "
            f"(diameter {math.sqrt(n_features):.3g}); ε is in input units"
        )
