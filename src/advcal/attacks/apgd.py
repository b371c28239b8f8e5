"""Auto-PGD (Croce & Hein 2020): projected gradient ascent with momentum and a self-tuning step.

Reference: F. Croce and M. Hein, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", ICML 2020 (arXiv 2003.01690), Algorithm 1 and Section 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from advcal._core.validation import check_choice, check_fraction, check_int
from advcal.attacks.base import Attack, Counter
from advcal.attacks.geometry import NORMS, ascent_step, project, random_start
from advcal.attacks.losses import LossFn

#: The momentum weight α of Algorithm 1 (the paper fixes it to 0.75).
MOMENTUM = 0.75


def checkpoints(steps: int) -> list[int]:
    """The iterations ``w_j = ceil(p_j * steps)`` at which APGD may halve its step size.

    ``p_0 = 0``, ``p_1 = 0.22`` and ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` while
    ``p_j <= 1``: the intervals between checkpoints shrink from 22% of the budget by 3% at a time
    down to 6%. The ``p_j`` are kept in exact hundredths, so that ``ceil`` does not round a
    floating-point ``0.57 * 100 = 56.99999999999999`` (or an ``x.000...01``) the wrong way.
    Checkpoints that coincide (few steps) are listed once. The first entry is always ``0``.
    """
    hundredths = [0, 22]
    while True:
        following = hundredths[-1] + max(hundredths[-1] - hundredths[-2] - 3, 6)
        if following > 100:
            break
        hundredths.append(following)
    marks: list[int] = []
    for p in hundredths:
        mark = -(-p * steps // 100)  # exact ceil(p / 100 * steps)
        if not marks or mark != marks[-1]:
            marks.append(mark)
    return marks


def halve_step(
    increases: torch.Tensor,
    window: int,
    rho: float,
    reduced_last: torch.Tensor,
    best_loss: torch.Tensor,
    best_loss_last: torch.Tensor,
) -> torch.Tensor:
    """Per sample, whether APGD halves its step size at a checkpoint (Section 3.1).

    Args:
        increases: how many of the ``window`` steps since the last checkpoint raised the loss.
        window: the steps since the last checkpoint, ``w_j - w_{j-1}``.
        rho: the fraction of increasing steps below which the step size is too large.
        reduced_last: whether the step size was halved at the last checkpoint.
        best_loss, best_loss_last: the highest loss so far, now and at the last checkpoint.

    Condition 1: fewer than ``rho * window`` steps increased the loss (the iterates oscillate).
    Condition 2: the step size was not halved at the last checkpoint and the best loss has not
    improved since then (the search stalls).
    """
    oscillating = increases < rho * window
    stalled = ~reduced_last & (best_loss <= best_loss_last)
    return oscillating | stalled


class APGDRun(NamedTuple):
    """One run of Algorithm 1 from one starting point (per sample)."""

    x_adv: torch.Tensor
    logits: torch.Tensor
    loss: torch.Tensor
    step_size: torch.Tensor  # the step size η each sample ended with
    halvings: torch.Tensor  # how many times each sample's η was halved
    # AutoAttack's record: per sample, whether any evaluated iterate was misclassified, and the
    # last such iterate with its logits (the selected point where none was).
    fooled: torch.Tensor
    fooled_x: torch.Tensor
    fooled_logits: torch.Tensor


class APGD(Attack):
    """Auto-PGD: gradient ascent with momentum whose step size tunes itself, per sample.

    Algorithm 1 of Croce & Hein (2020). From ``x0`` (a random point of the ε-ball, or ``x``)
    with step size ``η = 2ε``, the first step is ``x1 = P(x0 + η·s(∇f(x0)))``; later steps are

        ``z = P(x_k + η·s(∇f(x_k)))``,
        ``x_{k+1} = P(x_k + α(z − x_k) + (1 − α)(x_k − x_{k−1}))``,  ``α = 0.75``,

    where ``s`` is the steepest-ascent direction of the norm (the sign of the gradient for L∞,
    the normalised gradient for L2) and ``P`` the projection onto the ε-ball ∩ [0, 1]. At the
    checkpoints ``w_j = ceil(p_j·steps)`` (:func:`checkpoints`) a sample's η is halved if fewer
    than ``rho`` of the steps since the last checkpoint increased its loss, or if η was not
    halved at the last checkpoint and its best loss has not improved since; a sample whose η is
    halved continues from its highest-loss point ``x_max`` (:func:`halve_step`). Everything is
    per sample: each sample has its own η and checkpoint decisions.

    Args:
        eps: budget (input units) or a list of budgets (one result each).
        steps: gradient steps per restart (the paper's ``N_iter``).
        norm: ``"linf"`` or ``"l2"`` (the same algorithm with L2 steps and projection).
        restarts: independent runs, restart ``r`` starting from the random point of stream
            ``r``; per sample the run whose selected point has the highest loss wins.
        rho: the threshold of condition 1, in (0, 1) (the paper's 0.75).
        random_start: start from a uniform random point of the ball (keyed per sample);
            otherwise from ``x`` itself.
        **common: ``seed``, ``loss`` (default ``"ce"``: APGD-CE; ``loss="dlr"`` is APGD-DLR),
            ``loss_temperature``, ``select``, ``precision`` (see
            :class:`~advcal.attacks.base.Attack`).

    ``select="best"`` (the default, as APGD is defined) returns the highest-loss point visited
    (the paper's ``x_max``); ``"final"`` returns the last iterate. Unlike AutoAttack, samples
    are not dropped once misclassified: the attack keeps maximising the loss, so the confidence
    it reaches is the attack's, not the first point that crossed the boundary. (The AutoAttack
    ensemble, :class:`~advcal.attacks.autoattack.AutoAttack`, reads each run's record of the
    misclassified iterates instead, as AutoAttack does.)

    The schedule follows the paper's text, which the authors' code approximates: checkpoints
    are ``ceil(p_j·steps)`` exactly, condition 1 is a strict ``<``, and condition 2 already
    applies at the first checkpoint (the best loss compared with ``f(x0)``).

    Cost: ``steps`` forward and backward passes per restart (one per step, the loss and its
    gradient at ``x_0 … x_{steps−1}``); ``select="final"`` adds one forward pass per restart to
    evaluate the last iterate ``x_steps``.
    """

    name = "apgd"

    def __init__(
        self,
        eps: float | Sequence[float] = 8 / 255,
        steps: int = 100,
        *,
        norm: str = "linf",
        restarts: int = 1,
        rho: float = 0.75,
        random_start: bool = True,
        **common: object,
    ) -> None:
        common.setdefault("select", "best")
        super().__init__(eps, **common)
        self.steps = check_int(steps, "steps", 1)
        self.norm = check_choice(norm, "norm", NORMS)
        self.restarts = check_int(restarts, "restarts", 1)
        self.rho = check_fraction(rho, "rho")
        self.random_start = bool(random_start)

    def _extra_params(self) -> dict[str, object]:
        return {
            "steps": self.steps, "restarts": self.restarts, "rho": self.rho,
            "random_start": self.random_start, "momentum": MOMENTUM,
        }

    def _attack(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
        eps: float, clean_logits: torch.Tensor, counter: Counter,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = self.runs(model, x, y, index, eps, counter)
        return chosen.x_adv, chosen.logits

    def runs(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, eps: float,
        counter: Counter, loss_fn: LossFn | None = None, stream: int = 0,
    ) -> APGDRun:
        """Every restart from its random start (streams ``stream``, ``stream + 1``, ...), the
        highest-loss run kept per sample (a misclassified iterate of any restart is kept too)."""
        chosen: APGDRun | None = None
        for restart in range(self.restarts):
            if self.random_start:
                x_start = random_start(x, eps, self.norm, self.seed, index, stream + restart)
            else:
                x_start = x.clone()
            run = self._run(model, x, y, x_start, eps, counter, loss_fn)
            if chosen is None:
                chosen = run
            else:
                better = run.loss > chosen.loss  # ties keep the earlier restart
                first_fooled = run.fooled & ~chosen.fooled
                kept = (_where(better, new, old) for new, old in zip(run[:5], chosen[:5], strict=True))
                chosen = APGDRun(*kept, chosen.fooled | run.fooled,
                                 _where(first_fooled, run.fooled_x, chosen.fooled_x),
                                 _where(first_fooled, run.fooled_logits, chosen.fooled_logits))
        return chosen

    def _run(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_start: torch.Tensor,
        eps: float, counter: Counter, loss_fn: LossFn | None = None,
    ) -> APGDRun:
        """Algorithm 1 from ``x_start``: ``steps`` forward and backward passes (+1 forward if final)."""
        n = len(x)
        marks = [w for w in checkpoints(self.steps)[1:] if w < self.steps]
        eta = torch.full((n,), 2.0 * eps, dtype=x.dtype, device=x.device)
        halvings = torch.zeros(n, dtype=torch.long, device=x.device)
        increases = torch.zeros(n, dtype=torch.long, device=x.device)
        reduced_last = torch.zeros(n, dtype=torch.bool, device=x.device)
        last_mark = 0
        # Step 0: the loss and gradient at x_0, and x_1 = P(x_0 + η·s(∇f(x_0))).
        x_cur = x_start
        loss, grad, logits = self.loss_and_grad(model, x_cur, y, counter, loss_fn)
        best_x, best_loss, best_grad, best_logits = x_cur, loss, grad, logits
        fooled = logits.argmax(1) != y
        fooled_x, fooled_logits = x_cur, logits
        best_loss_last = prev_loss = loss  # f_max at the checkpoint w_0 = 0
        x_next = project(ascent_step(x_cur, grad, eta, self.norm), x, eps, self.norm)
        for k in range(1, self.steps):
            x_prev, x_cur = x_cur, x_next
            loss, grad, logits = self.loss_and_grad(model, x_cur, y, counter, loss_fn)
            wrong = logits.argmax(1) != y
            fooled_x, fooled_logits = _where(wrong, x_cur, fooled_x), _where(wrong, logits, fooled_logits)
            fooled = fooled | wrong
            increases += loss > prev_loss
            better = loss > best_loss
            best_x, best_grad = _where(better, x_cur, best_x), _where(better, grad, best_grad)
            best_logits, best_loss = _where(better, logits, best_logits), _where(better, loss, best_loss)
            prev_loss = loss
            if marks and k == marks[0]:
                marks.pop(0)
                halve = halve_step(
                    increases, k - last_mark, self.rho, reduced_last, best_loss, best_loss_last
                )
                eta = torch.where(halve, eta / 2, eta)
                halvings += halve
                # A sample whose step is halved continues from its best point (its loss and
                # gradient are known: no extra pass). Its momentum term then points from the
                # previous iterate to x_max, as in the paper.
                x_cur, grad = _where(halve, best_x, x_cur), _where(halve, best_grad, grad)
                prev_loss = _where(halve, best_loss, loss)
                reduced_last, best_loss_last, last_mark = halve, best_loss, k
                increases = torch.zeros_like(increases)
            z = project(ascent_step(x_cur, grad, eta, self.norm), x, eps, self.norm)
            x_next = project(
                x_cur + MOMENTUM * (z - x_cur) + (1 - MOMENTUM) * (x_cur - x_prev), x, eps, self.norm
            )
        if self.select == "best":
            selected = (best_x, best_logits, best_loss)
        else:
            loss, logits = self.evaluate(model, x_next, y, counter, loss_fn)
            selected = (x_next, logits.detach(), loss.detach())
            wrong = logits.argmax(1) != y
            fooled_x, fooled_logits = _where(wrong, x_next, fooled_x), _where(wrong, logits, fooled_logits)
            fooled = fooled | wrong
        # Where no iterate was misclassified, the record points at the selected one.
        fooled_x = _where(fooled, fooled_x, selected[0])
        fooled_logits = _where(fooled, fooled_logits, selected[1])
        return APGDRun(*selected, eta, halvings, fooled, fooled_x, fooled_logits)


def _where(condition: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Per sample (first dimension), ``new`` where ``condition`` holds, else ``old``."""
    return torch.where(condition.view(-1, *([1] * (new.ndim - 1))), new, old)
