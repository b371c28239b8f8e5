"""Confidence attacks: move the model's confidence without changing its prediction.

Robust-accuracy attacks try to flip predictions. These attack calibration itself: they keep
every prediction as it is and push its confidence the wrong way —

* ``direction="down"``: a *correct* prediction is made less confident (a true alarm that
  now looks like noise);
* ``direction="up"``: a *wrong* prediction is made more confident (the over-confidence
  attack: a mistake that now looks certain);
* ``direction="both"`` (default): both at once, the worst case for calibration — correct
  predictions lose confidence and wrong ones gain it, so ECE rises while accuracy does not
  move.

Each affected sample ascends ``s_i * loss(logits, prediction_i)`` with ``s_i = +1`` to lower
the confidence and ``-1`` to raise it (``loss`` defaults to cross-entropy against the
clean prediction, so the objective is the log-confidence itself). A step that would change a
sample's prediction is rejected: the sample stays at its last accepted point and its step
size is halved. Samples the direction does not cover are returned unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from advcal._core.validation import check_choice, check_int, check_positive
from advcal.attacks.base import Attack, Counter
from advcal.attacks.geometry import NORMS, ascent_step, project, random_start

DIRECTIONS = ("down", "up", "both")


class ConfidenceAttack(Attack):
    """Push confidence down on correct predictions and/or up on wrong ones, keeping them.

    Args:
        eps: budget (input units) or a list of budgets.
        steps: gradient steps.
        alpha: initial step size; default ``2.5 * eps / steps``.
        direction: ``"down"``, ``"up"`` or ``"both"`` (see the module documentation).
        norm: ``"linf"`` or ``"l2"``.
        random_start: start from a random point of the ball (rejected if it flips the
            prediction, like any step).
        **common: ``seed``, ``loss``, ``loss_temperature``, ``select`` (``"final"``: the last
            accepted point; ``"best"``: the accepted point with the most extreme confidence),
            ``precision``.

    ``success`` is true for a covered sample whose confidence moved the intended way while
    its prediction stayed the same.
    """

    name = "confidence"

    def __init__(
        self,
        eps: float | Sequence[float] = 8 / 255,
        steps: int = 20,
        alpha: float | None = None,
        *,
        direction: str = "both",
        norm: str = "linf",
        random_start: bool = False,
        **common: object,
    ) -> None:
        super().__init__(eps, **common)
        self.steps = check_int(steps, "steps", 1)
        self.alpha = None if alpha is None else check_positive(alpha, "alpha")
        self.direction = check_choice(direction, "direction", DIRECTIONS)
        self.norm = check_choice(norm, "norm", NORMS)
        self.random_start = bool(random_start)

    def _extra_params(self) -> dict[str, object]:
        return {"steps": self.steps, "alpha": self.alpha, "direction": self.direction,
                "random_start": self.random_start}

    def _signs(self, prediction: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """+1: lower the confidence, -1: raise it, 0: leave the sample alone."""
        correct = prediction == y
        down = correct if self.direction in ("down", "both") else torch.zeros_like(correct)
        up = ~correct if self.direction in ("up", "both") else torch.zeros_like(correct)
        return down.float() - up.float()

    def _attack(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
        eps: float, clean_logits: torch.Tensor, counter: Counter,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        prediction = clean_logits.argmax(1)
        sign = self._signs(prediction, y).to(x)
        active = sign != 0

        def objective(logits: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
            return sign * self.loss_fn(logits, prediction)

        shape = (-1, *([1] * (x.ndim - 1)))
        alpha = torch.full((len(x),), self.alpha or 2.5 * eps / self.steps, device=x.device)
        accepted_x, accepted_logits = x.clone(), clean_logits.clone()
        best_x, best_logits = accepted_x, accepted_logits
        best_score = torch.full((len(x),), -torch.inf, device=x.device)
        candidate = random_start(x, eps, self.norm, self.seed, index, 0) if self.random_start else x
        candidate = torch.where(active.view(shape), candidate, x)
        grad = torch.zeros_like(x)
        for step in range(self.steps + 1):
            if step < self.steps:
                score, new_grad, logits = self.loss_and_grad(model, candidate, y, counter, objective)
            else:  # the last candidate needs no gradient, only a verdict
                score, logits = self.evaluate(model, candidate, y, counter, objective)
                new_grad = grad
            keep = active & (logits.argmax(1) == prediction)
            accepted_x = torch.where(keep.view(shape), candidate, accepted_x)
            accepted_logits = torch.where(keep[:, None], logits, accepted_logits)
            grad = torch.where(keep.view(shape), new_grad, grad)
            alpha = torch.where(keep | ~active, alpha, alpha / 2)
            if self.select == "best":
                better = keep & (score > best_score)
                best_x = torch.where(better.view(shape), candidate, best_x)
                best_logits = torch.where(better[:, None], logits, best_logits)
                best_score = torch.where(better, score, best_score)
            if step < self.steps:
                candidate = project(ascent_step(accepted_x, grad, alpha, self.norm), x, eps, self.norm)
                candidate = torch.where(active.view(shape), candidate, x)
        if self.select == "best":
            return best_x, best_logits
        return accepted_x, accepted_logits

    def _success(self, logits: torch.Tensor, clean_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        prediction = clean_logits.argmax(1)
        sign = self._signs(prediction, y)
        confidence = torch.softmax(logits.double(), 1).max(1).values
        clean_confidence = torch.softmax(clean_logits.double(), 1).max(1).values
        moved = (clean_confidence - confidence) * sign.double() > 0
        return moved & (logits.argmax(1) == prediction) & (sign != 0)
