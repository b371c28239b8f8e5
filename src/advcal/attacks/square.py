"""The Square attack (Andriushchenko et al. 2020): score-based black-box random search, L∞ and L2."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from advcal._core.errors import InputError, describe
from advcal._core.rng import keyed_uniform
from advcal._core.validation import check_choice, check_fraction, check_int
from advcal.attacks import square_l2
from advcal.attacks.base import Attack, Counter
from advcal.attacks.geometry import NORMS

# The paper's schedule of the window size: p is halved after each of these iterations of a
# 10,000-query run, and the schedule is stretched or squeezed linearly for other budgets.
P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
PAPER_BUDGET = 10_000
# Random streams: restart r uses streams r * RESTART_STREAMS + t, t = 0 for the stripes of the
# initialisation and t = 1 + i for the proposal of iteration i (queries is far below 2**32).
RESTART_STREAMS = 2**32


class Square(Attack):
    """Square attack: random search over square windows of the L∞ ball's vertices.

    The attack only reads the model's scores — no gradient is ever computed — and keeps, per
    sample, the best point found so far (Andriushchenko, Croce, Flammarion and Hein,
    "Square Attack: a query-efficient black-box adversarial attack via random search",
    ECCV 2020, L∞ version):

    1. *Start* at vertical stripes: every column of every channel of the perturbation is
       ``+eps`` or ``-eps`` with a random sign (per sample), and ``x + delta`` is clipped to
       [0, 1].
    2. *Propose*: at iteration ``i`` a window of side ``s = round(sqrt(p_i * H * W))`` (at
       least 1, at most ``min(H, W) - 1``) is placed uniformly at random among all positions
       that fit in the image, and inside it every channel of ``delta`` is set to ``+eps`` or
       ``-eps`` with one random sign per channel. ``p_i`` starts at ``p_init`` and is halved
       after iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of a 10,000-query
       run; for another budget the iteration is first rescaled to ``i * 10000 / queries``, as
       in the paper (``rescale_schedule=False`` keeps the raw iteration, as AutoAttack's
       standard 5,000-query Square does). A proposal that would leave the image unchanged (its
       window already at the drawn signs, or clipped there) is replaced by the opposite signs,
       so no query is wasted on a copy of the current point, as in the authors' implementation.
    3. *Accept* the proposal only if the loss strictly increases — or if the proposal is
       misclassified, which ends the search for that sample (with the default ``"margin"``
       loss and ``"dlr"`` the two coincide; with ``"ce"`` a misclassifying proposal is kept
       even when its cross-entropy is not higher, since misclassification is the goal).
    4. *Stop* querying a sample as soon as it is misclassified: each iteration passes only the
       samples still correctly classified to the model.

    Every coordinate of ``delta`` is ``+eps`` or ``-eps`` (before clipping to [0, 1]): the
    search moves between vertices of the L∞ ball, where the paper argues successful
    perturbations mostly lie. Samples the model already misclassifies on their clean inputs
    are returned unchanged, at no cost.

    Args:
        eps: L∞ budget (input units) or a list of budgets (one result each).
        queries: queries per sample and restart, the initial one included (the paper's
            query budget).
        p_init: initial fraction of the image's pixels a window covers, in (0, 1].
        rescale_schedule: stretch the window schedule to ``queries`` (see step 2).
        norm: ``"linf"`` (above) or ``"l2"``: the paper's L2 version, whose perturbation always
            has norm ε and whose proposals move mass between two windows of odd side at least 3
            (:mod:`advcal.attacks.square_l2`), with the same schedule, acceptance and stopping.
        restarts: independent runs with fresh random streams; only samples still correctly
            classified are attacked again, and per sample a misclassified result, else the
            highest-loss one, wins.
        **common: ``seed``, ``loss`` (default ``"margin"``, the paper's), ``loss_temperature``,
            ``select``, ``precision`` (see :class:`~advcal.attacks.base.Attack`).

    Square only moves to a point when it improves the loss, so its last iterate is its best:
    ``select="final"`` and ``"best"`` return the same inputs.

    Cost: at most ``queries`` forward passes per restart (the start, then ``queries - 1``
    proposals) and no backward pass. A forward pass is counted as one batch pass whenever any
    sample is still being attacked, although it runs only on those samples; once every
    sample is misclassified the run stops early.

    Why it matters for advcal: Square needs no gradients, so gradient masking — an extreme
    logit temperature, a non-differentiable or saturating layer, a detached output — cannot
    fool it, and the margin loss it compares is invariant to the scale of the logits. If a
    model looks robust to PGD but not to Square, its robustness (and the calibration measured
    under PGD) is an illusion: this is the black-box check of the illusion-of-robustness
    detector. Inputs must be images ``(N, C, H, W)``.
    """

    name = "square"
    needs_gradient = False
    # Replace a proposal that would not move the point by the opposite signs (see step 2).
    _avoid_no_ops: ClassVar[bool] = True

    def __init__(
        self,
        eps: float | Sequence[float] = 8 / 255,
        queries: int = 1000,
        *,
        p_init: float = 0.8,
        restarts: int = 1,
        rescale_schedule: bool = True,
        norm: str = "linf",
        **common: object,
    ) -> None:
        common.setdefault("loss", "margin")
        super().__init__(eps, **common)
        self.norm = check_choice(norm, "norm", NORMS)
        self.queries = check_int(queries, "queries", 1)
        self.p_init = check_fraction(p_init, "p_init", allow_one=True)
        self.restarts = check_int(restarts, "restarts", 1)
        self.rescale_schedule = bool(rescale_schedule)

    def _extra_params(self) -> dict[str, object]:
        return {"queries": self.queries, "p_init": self.p_init, "restarts": self.restarts,
                "rescale_schedule": self.rescale_schedule, "norm": self.norm}

    # ------------------------------------------------------------------ schedule
    def fraction(self, iteration: int) -> float:
        """The fraction ``p`` of pixels the window of (0-based) proposal ``iteration`` covers."""
        rescaled = int(iteration / self.queries * PAPER_BUDGET) if self.rescale_schedule else iteration
        return self.p_init / 2 ** sum(rescaled > t for t in P_HALVINGS)

    def side(self, iteration: int, height: int, width: int) -> int:
        """The side of the square window of proposal ``iteration`` in an ``height x width`` image."""
        s = round(math.sqrt(self.fraction(iteration) * height * width))
        return max(1, min(s, min(height, width) - 1))

    @staticmethod
    def _corner(u: torch.Tensor, length: int, s: int) -> torch.Tensor:
        """A window corner from uniforms in [0, 1): each of ``0, ..., length - s`` equally likely."""
        return (u * (length - s + 1)).floor().long().clamp_(max=length - s)

    # ------------------------------------------------------------------ attack
    def _check_inputs(
        self, x: object, y: object, index: object | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x_t, y_t, index_t = super()._check_inputs(x, y, index)
        if x_t.ndim != 4:
            raise InputError(
                f"x: Square perturbs square windows of images and needs a batch of shape "
                f"(N, C, H, W), got {describe(x_t)}"
            )
        return x_t, y_t, index_t

    def _attack(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
        eps: float, clean_logits: torch.Tensor, counter: Counter,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        best_x, best_logits = x.clone(), clean_logits.clone()
        best_loss = torch.full((len(x),), -torch.inf, dtype=x.dtype, device=x.device)
        fooled = clean_logits.argmax(1) != y
        for restart in range(self.restarts):
            todo = (~fooled).nonzero().flatten()
            if len(todo) == 0:
                break
            run_x, run_logits, run_loss = self._run(
                model, x[todo], y[todo], index[todo.cpu()], eps, counter, restart
            )
            run_fooled = run_logits.argmax(1) != y[todo]
            # Only still-robust samples are attacked again, so a success always wins; among
            # failures the higher loss wins (the first run replaces the clean input).
            take = run_fooled | (run_loss > best_loss[todo]) | (restart == 0)
            chosen = todo[take]
            best_x[chosen] = run_x[take]
            best_logits[chosen] = run_logits[take]
            best_loss[chosen] = run_loss[take].to(best_loss.dtype)
            fooled[todo] = run_fooled
        return best_x, best_logits

    def _run_l2(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
        eps: float, counter: Counter, restart: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One L2 random search from the grid of pyramids; the best inputs, their logits and losses."""
        _, c, h, w = x.shape
        stream = restart * RESTART_STREAMS
        x64 = x.double()
        start = square_l2.initial_perturbation(self.seed, index, (c, h, w), eps, stream).to(x.device)
        x_best = (x64 + start).clamp(0, 1).to(x.dtype)
        loss, logits = self.evaluate(model, x_best, y, counter)
        active = logits.argmax(1) == y
        for iteration in range(self.queries - 1):
            idx = active.nonzero().flatten()
            if len(idx) == 0:
                break
            s = square_l2.side(self.fraction(iteration), h, w)
            u = keyed_uniform(self.seed, index[idx.cpu()], (5 + c,), stream + 1 + iteration)
            delta = x_best[idx].double() - x64[idx]  # the perturbation as clipped so far
            proposal = square_l2.propose(delta, s, eps, u.to(device=x.device, dtype=torch.float64))
            x_new = (x64[idx] + proposal).clamp(0, 1).to(x.dtype)
            self._query(model, x_new, y, idx, counter, (x_best, loss, logits, active))
        return x_best, logits, loss

    def _query(
        self, model: nn.Module, x_new: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, counter: Counter,
        state: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """Score the proposals ``x_new`` of samples ``idx``; keep (in ``state``: best inputs, losses,
        logits, active flags, updated in place) those that raise the loss or misclassify, and stop
        querying the misclassified. Returns which proposals were kept."""
        x_best, loss, logits, active = state
        new_loss, new_logits = self.evaluate(model, x_new, y[idx], counter)
        new_fooled = new_logits.argmax(1) != y[idx]
        better = (new_loss > loss[idx]) | new_fooled
        kept = idx[better]
        x_best[kept] = x_new[better]
        loss[kept] = new_loss[better]
        logits[kept] = new_logits[better]
        active[idx[new_fooled]] = False
        return better

    def _run(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
        eps: float, counter: Counter, restart: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One random search from the stripes; returns the best inputs, their logits and losses."""
        if self.norm == "l2":
            return self._run_l2(model, x, y, index, eps, counter, restart)
        n, c, h, w = x.shape
        stream = restart * RESTART_STREAMS
        column_signs = _signs(keyed_uniform(self.seed, index, (c, 1, w), stream)).to(x)
        delta = (eps * column_signs).expand(n, c, h, w).contiguous()
        x_best = (x + delta).clamp(0, 1)
        loss, logits = self.evaluate(model, x_best, y, counter)
        active = logits.argmax(1) == y
        rows = torch.arange(h, device=x.device)
        cols = torch.arange(w, device=x.device)
        for iteration in range(self.queries - 1):
            idx = active.nonzero().flatten()
            if len(idx) == 0:
                break
            s = self.side(iteration, h, w)
            u = keyed_uniform(self.seed, index[idx.cpu()], (2 + c,), stream + 1 + iteration)
            u = u.to(device=x.device, dtype=torch.float64)
            top, left = self._corner(u[:, 0], h, s), self._corner(u[:, 1], w, s)
            in_rows = (rows >= top[:, None]) & (rows < top[:, None] + s)
            in_cols = (cols >= left[:, None]) & (cols < left[:, None] + s)
            window = in_rows[:, None, :, None] & in_cols[:, None, None, :]
            signs = _signs(u[:, 2:]).to(x).view(-1, c, 1, 1)
            x_cur, delta_cur, best_cur = x[idx], delta[idx], x_best[idx]
            delta_new = torch.where(window, eps * signs, delta_cur)
            x_new = (x_cur + delta_new).clamp(0, 1)
            unchanged = (x_new == best_cur).flatten(1).all(1)
            if self._avoid_no_ops and bool(unchanged.any()):
                # At most one sign pattern leaves the window unchanged (the two signs of a
                # pixel never clip to the same value), so the opposite pattern always moves.
                flip = window & unchanged.view(-1, 1, 1, 1)
                delta_new = torch.where(flip, -delta_new, delta_new)
                x_new = (x_cur + delta_new).clamp(0, 1)
            better = self._query(model, x_new, y, idx, counter, (x_best, loss, logits, active))
            delta[idx[better]] = delta_new[better]
        return x_best, logits, loss


def _signs(u: torch.Tensor) -> torch.Tensor:
    """±1 from uniforms in [0, 1): +1 below one half."""
    return torch.where(u < 0.5, 1.0, -1.0)
