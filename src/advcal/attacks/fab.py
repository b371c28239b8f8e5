"""FAB-T: the targeted Fast Adaptive Boundary attack (Croce & Hein, ICML 2020, arXiv 1907.02044).

A minimum-norm attack: from the clean input it walks to the linearised decision boundary
between the true class and a target class, each step a convex combination of the projections
of the current point and of the original input onto that boundary (intersected with the box
[0, 1]), with overshoot ``eta``; once a point is misclassified it steps back towards the
original by ``beta``. The smallest misclassified point found counts only if it lies within ε:
in an ε-bounded evaluation FAB succeeds where it finds an adversarial input of norm ≤ ε.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from advcal._core.errors import ConfigError
from advcal._core.validation import check_choice, check_fraction, check_int, check_positive
from advcal.attacks.base import Attack, Counter
from advcal.attacks.geometry import NORMS
from advcal.attacks.targeted import target_ranks

# Bisection steps of the projection: the step length is found to 2**-60 of its range.
_BISECTIONS = 60


def project_onto_boundary(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, norm: str) -> torch.Tensor:
    """Per row, the smallest step ``d`` (in ``norm``) with ``w·(x + d) = b`` and ``x + d`` in [0, 1].

    ``x``, ``w`` are ``(n, d)``, ``b`` is ``(n,)``. Along the direction that changes ``w·x``
    towards ``b``, each coordinate can move until it hits its bound. Under L∞ the step is
    ``sign · min(t, room)`` for the smallest length ``t`` that reaches ``b``; under L2 it is
    ``clip(λ w, bounds)`` for the smallest ``λ`` that does (the KKT point). Both reaches are
    monotone in their parameter, found by bisection. Where the box cannot reach ``b`` the step
    goes as far towards it as the box allows.
    """
    gap = b - (w * x).sum(1)  # what w·d must equal
    direction = torch.where(gap[:, None] >= 0, w.sign(), -w.sign())  # per coordinate, towards b
    room = torch.where(direction > 0, 1 - x, x)  # how far each coordinate may move that way
    need = gap.abs()

    if norm == "linf":
        def step(t: torch.Tensor) -> torch.Tensor:
            return direction * torch.minimum(t[:, None], room)
        high = room.amax(1)
    else:
        def step(t: torch.Tensor) -> torch.Tensor:
            return direction * torch.minimum(t[:, None] * w.abs(), room)
        high = (room / w.abs().clamp_min(1e-30)).amax(1).clamp_max(1e30)
    low = torch.zeros_like(high)
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        reached = (w * step(middle)).sum(1).abs() >= need
        high, low = torch.where(reached, middle, high), torch.where(reached, low, middle)
    return step(high)


class FAB(Attack):
    """FAB-T (targeted FAB): minimum-norm adversarial inputs, kept where they lie within ε.

    Args:
        eps: budget (input units) or a list of budgets; a sample counts as broken when the
            smallest misclassified point found is within ``eps`` of it.
        steps: iterations per target (AutoAttack: 100).
        norm: ``"linf"`` or ``"l2"``.
        target_classes: the top other classes targeted in turn (AutoAttack: 9).
        alpha_max, eta, beta: the paper's maximal weight of the original point (0.1), overshoot
            (1.05) and backward step (0.9).
        **common: ``seed`` (FAB-T as AutoAttack runs it — one restart, from the clean input — is
            deterministic), ``precision``.

    Success is misclassification within ε; a sample that stays robust is returned unchanged (FAB
    only ever reports the points it must, minimal ones). Cost per target: ``steps`` forward and
    backward passes (the boundary's gradient) and ``steps`` forward passes (the prediction at
    the new point), counted as batch passes while any sample is attacked.
    """

    name = "fab-t"

    def __init__(
        self,
        eps: float | Sequence[float] = 8 / 255,
        steps: int = 100,
        *,
        norm: str = "linf",
        target_classes: int = 9,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        **common: object,
    ) -> None:
        if "loss" in common or "loss_temperature" in common:
            raise ConfigError("loss: FAB follows the decision boundary itself and takes no loss")
        super().__init__(eps, **common)
        self.steps = check_int(steps, "steps", 1)
        self.norm = check_choice(norm, "norm", NORMS)
        self.target_classes = check_int(target_classes, "target_classes", 1)
        self.alpha_max = check_fraction(alpha_max, "alpha_max")
        self.eta = check_positive(eta, "eta")
        self.beta = check_fraction(beta, "beta")

    def _extra_params(self) -> dict[str, object]:
        return {"steps": self.steps, "target_classes": self.target_classes, "alpha_max": self.alpha_max,
                "eta": self.eta, "beta": self.beta, "loss": "none", "loss_temperature": None}

    def _distance(self, delta: torch.Tensor) -> torch.Tensor:
        flat = delta.flatten(1)
        return flat.abs().amax(1) if self.norm == "linf" else flat.norm(dim=1)

    def _attack(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
        eps: float, clean_logits: torch.Tensor, counter: Counter,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x_adv, logits = x.clone(), clean_logits.clone()
        fooled = clean_logits.argmax(1) != y
        for target in target_ranks(clean_logits, min(self.target_classes, clean_logits.shape[1] - 1)):
            todo = (~fooled).nonzero().flatten()
            if len(todo) == 0:
                break
            found, found_logits, distance = self._run(model, x[todo], y[todo], target[todo],
                                                      clean_logits[todo], counter)
            broken = distance <= eps * (1 + 1e-6)  # the found point is within the budget
            chosen = todo[broken]
            x_adv[chosen], logits[chosen] = found[broken], found_logits[broken]
            fooled[chosen] = True
        return x_adv, logits

    def _run(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor,
        clean_logits: torch.Tensor, counter: Counter,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One FAB-T run towards ``target``: the smallest misclassified point found per sample, its
        logits and its distance (infinite where none was found)."""
        n = len(x)
        flat_x = x.flatten(1)
        rows = torch.arange(n, device=x.device)
        best, best_logits = x.clone(), clean_logits.clone()
        best_distance = torch.full((n,), torch.inf, dtype=x.dtype, device=x.device)

        def boundary(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return z[rows, target] - z[rows, labels]  # > 0 once the target beats the true class

        current = x.clone()
        for _ in range(self.steps):
            value, grad, _ = self.loss_and_grad(model, current, y, counter, boundary)
            w = grad.flatten(1)
            b = (w * current.flatten(1)).sum(1) - value  # the linearised boundary: w·z = b
            both = project_onto_boundary(torch.cat([current.flatten(1), flat_x]), torch.cat([w, w]),
                                         torch.cat([b, b]), self.norm)
            d_current, d_original = both[:n], both[n:]
            a_current = self._distance(d_current).clamp_min(1e-8)
            a_original = self._distance(d_original).clamp_min(1e-8)
            alpha = (a_current / (a_current + a_original)).clamp(0, self.alpha_max)[:, None]
            moved = ((current.flatten(1) + self.eta * d_current) * (1 - alpha)
                     + (flat_x + self.eta * d_original) * alpha).clamp(0, 1).view_as(x)
            with torch.no_grad():
                moved_logits = model(moved).detach()
            counter.forward += 1
            wrong = moved_logits.argmax(1) != y
            distance = self._distance(moved - x)
            better = wrong & (distance < best_distance)
            best = torch.where(better.view(-1, *([1] * (x.ndim - 1))), moved, best)
            best_logits = torch.where(better[:, None], moved_logits, best_logits)
            best_distance = torch.where(better, distance, best_distance)
            # A misclassified point steps back towards the original: the search for a smaller one.
            back = x + self.beta * (moved - x)
            current = torch.where(wrong.view(-1, *([1] * (x.ndim - 1))), back, moved)
        return best, best_logits, best_distance
