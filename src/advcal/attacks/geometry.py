"""Threat-model geometry: random starts, steepest-ascent steps and projections (L-inf, L2).

Every function works per sample and keeps inputs in [0, 1].
"""

from __future__ import annotations

import math

import torch

from advcal._core.rng import keyed_uniform

NORMS = ("linf", "l2")


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm, shaped to broadcast against ``t``."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.ndim - 1)))


def random_start(
    x: torch.Tensor, eps: float, norm: str, seed: int, index: torch.Tensor, stream: int
) -> torch.Tensor:
    """A uniform random point of the ε-ball around each input (clipped to [0, 1]).

    Sample ``i``'s draw depends only on ``(seed, index[i], stream)``.
    """
    shape = tuple(x.shape[1:])
    if norm == "linf":
        u = keyed_uniform(seed, index, shape, stream).to(x)
        return (x + eps * (2 * u - 1)).clamp_(0, 1)
    n = math.prod(shape)
    u = keyed_uniform(seed, index, (2 * n + 1,), stream).to(torch.float64)
    # Box-Muller gives a Gaussian direction; the radius eps * U^(1/n) makes the point uniform
    # in the ball.
    gauss = torch.sqrt(-2 * torch.log1p(-u[:, :n])) * torch.cos(2 * math.pi * u[:, n : 2 * n])
    direction = gauss / gauss.norm(dim=1, keepdim=True).clamp_min(1e-12)
    radius = eps * u[:, 2 * n :] ** (1.0 / n)
    return (x + (direction * radius).view_as(x).to(x)).clamp_(0, 1)


def ascent_step(
    x_adv: torch.Tensor, grad: torch.Tensor, alpha: float | torch.Tensor, norm: str
) -> torch.Tensor:
    """One steepest-ascent step of size ``alpha`` (per sample if a tensor) in the given norm."""
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.view(-1, *([1] * (x_adv.ndim - 1)))
        if norm == "linf":
            # In place on the fresh sign tensor: the same roundings as x_adv + alpha * sign.
            return grad.sign().mul_(alpha).add_(x_adv)
    elif norm == "linf":
        # alpha * sign is exact, so the one fused op rounds as x_adv + alpha * sign does.
        return x_adv.add(grad.sign(), alpha=alpha)
    return x_adv + alpha * grad / (_flat_norm(grad) + 1e-12)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """The nearest point of the ε-ball around ``x`` (per the norm), clipped to [0, 1]."""
    delta = x_adv - x
    if norm == "linf":
        delta.clamp_(-eps, eps)
    else:
        delta *= (eps / (_flat_norm(delta) + 1e-12)).clamp(max=1.0)
    return delta.add_(x).clamp_(0, 1)  # in place: delta is this call's own tensor
