"""Projected gradient descent (Madry et al. 2018) and the fast gradient sign method."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from advcal._core.errors import ConfigError, InputError
from advcal._core.validation import check_choice, check_int, check_positive
from advcal.attacks.base import Attack, Counter
from advcal.attacks.geometry import NORMS, ascent_step, project, random_start


class PGD(Attack):
    """Projected gradient ascent on the loss, in an L∞ or L2 ball.

    Args:
        eps: budget (input units) or a list of budgets (one result each).
        steps: gradient steps per restart (20: the audit's and the command's default; torchattacks'
            PGD defaults to 10).
        alpha: step size; default ``2.5 * eps / steps`` (so the walk can cross the ball).
        norm: ``"linf"`` or ``"l2"``.
        random_start: start from a uniform random point of the ball (keyed per sample).
        restarts: independent random starts; per sample the one with the highest loss wins.
        eps_schedule: a stepped budget, e.g. ``[(2/255, 10), (8/255, 30)]`` — 2/255 for the
            first 10 steps, then 8/255 for 30 — replacing ``eps`` and ``steps``. The step
            size follows the budget of each stage.
        **common: ``seed``, ``loss``, ``loss_temperature``, ``select``, ``precision`` (see
            :class:`~advcal.attacks.base.Attack`).

    ``select="final"`` (default) returns the last iterate: the example the attack drove
    furthest, whose confidence is what an attacker would actually present. ``"best"`` returns
    the highest-loss iterate, which maximises error rates but picks, among the iterates, the
    one most extreme for the loss — a biased sample of confidences under attack.

    Cost: ``steps`` forward and backward passes per restart, plus one forward pass at the end.
    """

    name = "pgd"

    def __init__(
        self,
        eps: float | Sequence[float] | None = 8 / 255,
        steps: int | None = 20,
        alpha: float | None = None,
        *,
        norm: str = "linf",
        random_start: bool = True,
        restarts: int = 1,
        eps_schedule: Sequence[tuple[float, int]] | None = None,
        **common: object,
    ) -> None:
        if eps_schedule is not None:
            stages = _check_schedule(eps_schedule)
            if isinstance(eps, Sequence):
                raise ConfigError("eps_schedule: cannot be combined with a list of eps values")
            eps, steps = stages[-1][0], sum(n for _, n in stages)
        else:
            stages = None
        super().__init__(eps, **common)
        self.steps = check_int(steps, "steps", 1)
        self.alpha = None if alpha is None else check_positive(alpha, "alpha")
        self.norm = check_choice(norm, "norm", NORMS)
        self.random_start = bool(random_start)
        self.restarts = check_int(restarts, "restarts", 1)
        self.eps_schedule = stages

    def _extra_params(self) -> dict[str, object]:
        return {
            "steps": self.steps, "alpha": self.alpha, "random_start": self.random_start,
            "restarts": self.restarts,
            "eps_schedule": None if self.eps_schedule is None else [list(s) for s in self.eps_schedule],
        }

    def step_size(self, eps: float) -> float:
        """The step size at budget ``eps``."""
        return self.alpha if self.alpha is not None else 2.5 * eps / self.steps

    def _budgets(self, eps: float) -> list[float]:
        """The budget of each step."""
        if self.eps_schedule is None:
            return [eps] * self.steps
        return [stage_eps for stage_eps, n in self.eps_schedule for _ in range(n)]

    def _attack(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
        eps: float, clean_logits: torch.Tensor, counter: Counter,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        budgets = self._budgets(eps)
        chosen_x = chosen_logits = chosen_loss = None
        for restart in range(self.restarts):
            if self.random_start:
                x_adv = random_start(x, budgets[0], self.norm, self.seed, index, restart)
            else:
                x_adv = x.clone()
            best_x, best_logits, best_loss = x_adv, clean_logits, torch.full((len(x),), -torch.inf)
            for budget in budgets:
                loss, grad, logits = self.loss_and_grad(model, x_adv, y, counter)
                if self.select == "best":
                    best_x, best_logits, best_loss = _keep_higher(
                        (best_x, best_logits, best_loss), (x_adv, logits, loss)
                    )
                x_adv = project(
                    ascent_step(x_adv, grad, self.step_size(budget), self.norm), x, budget, self.norm
                )
            loss, logits = self.evaluate(model, x_adv, y, counter)
            candidate = (x_adv, logits, loss)
            if self.select == "best":
                candidate = _keep_higher((best_x, best_logits, best_loss), candidate)
            if chosen_x is None:
                chosen_x, chosen_logits, chosen_loss = candidate
            else:
                chosen_x, chosen_logits, chosen_loss = _keep_higher(
                    (chosen_x, chosen_logits, chosen_loss), candidate
                )
        return chosen_x, chosen_logits


class FGSM(PGD):
    """The fast gradient sign method (Goodfellow et al. 2015): one step of size ε.

    Under ``norm="l2"`` it is the fast gradient method (a step along the normalised
    gradient). Takes the same options as :class:`PGD`; ``steps=1``, no random start.
    """

    name = "fgsm"

    def __init__(self, eps: float | Sequence[float] = 8 / 255, **options: object) -> None:
        options.setdefault("random_start", False)
        super().__init__(eps, steps=1, **options)

    def step_size(self, eps: float) -> float:
        return self.alpha if self.alpha is not None else eps


def _keep_higher(
    current: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    candidate: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample, the (input, logits, loss) with the higher loss (ties keep ``current``)."""
    better = candidate[2] > current[2]
    shape = (-1, *([1] * (current[0].ndim - 1)))
    return (
        torch.where(better.view(shape), candidate[0], current[0]),
        torch.where(better[:, None], candidate[1], current[1]),
        torch.where(better, candidate[2], current[2]),
    )


def _check_schedule(schedule: Sequence[tuple[float, int]]) -> list[tuple[float, int]]:
    stages = []
    for stage in schedule:
        try:
            eps, steps = stage
        except (TypeError, ValueError):
            raise InputError(
                f"eps_schedule: expected (eps, steps) pairs like [(2/255, 10), (8/255, 30)], got {stage!r}"
            ) from None
        stages.append((check_positive(eps, "eps_schedule"), check_int(steps, "eps_schedule", 1)))
    if not stages:
        raise InputError("eps_schedule: expected at least one (eps, steps) stage")
    return stages
