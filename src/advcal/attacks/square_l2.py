"""The L2 proposals of the Square attack (Andriushchenko et al. 2020, Section 3.2 and Algorithm 3).

An L2 perturbation of norm ε is a sum of "pyramids" — a window whose upper half rises and lower
half falls towards its centre line, each ring weighted 1 / (ring + 1)² — with a random sign per
channel. A proposal picks two windows: the second one's mass is removed, the first one is
rewritten as its old content (normalised) plus a fresh pyramid, rescaled to carry the mass both
windows held plus an equal share of any unused budget; the whole perturbation is then rescaled
to norm ε and the point clipped to [0, 1] (which only shortens it).
"""

from __future__ import annotations

import math

import torch

from advcal._core.rng import keyed_uniform


def _rings(rows: int, cols: int) -> torch.Tensor:
    """A ``rows x cols`` block of concentric rings around its centre, ring k weighted 1 / (k + 1)²,
    summed over the rings that cover a cell, normalised to unit L2 norm."""
    r = torch.arange(rows, dtype=torch.float64)[:, None]
    c = torch.arange(cols, dtype=torch.float64)[None, :]
    centre_r, centre_c = rows // 2, cols // 2
    # A cell lies in ring k (a square of side 2k + 1 around the centre) for every k >= its distance.
    distance = torch.maximum((r - centre_r).abs(), (c - centre_c).abs())
    rings = max(centre_r, centre_c) + 1
    weights = 1.0 / torch.arange(1, rings + 1, dtype=torch.float64) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[k] = sum of weights of rings k, k+1, ...
    block = tail[distance.long()]
    return block / block.norm()


def pyramid(side: int) -> torch.Tensor:
    """The ``side x side`` proposal pattern: rings on the upper half, negated rings on the lower half,
    unit L2 norm."""
    top = side // 2
    block = torch.cat([_rings(top, side), -_rings(side - top, side)]) if top else -_rings(side, side)
    return block / block.norm()


def place(pattern: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: int, width: int
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample, ``pattern`` (``(n, s, s)`` or ``(s, s)``) written into an ``height x width`` zero
    image at ``(top, left)``, and the window's mask; both ``(n, 1, height, width)``."""
    s = pattern.shape[-1]
    rows = torch.arange(height, device=top.device)[None, :] - top[:, None]
    cols = torch.arange(width, device=top.device)[None, :] - left[:, None]
    inside_r, inside_c = (rows >= 0) & (rows < s), (cols >= 0) & (cols < s)
    mask = inside_r[:, :, None] & inside_c[:, None, :]
    r, c = rows.clamp(0, s - 1), cols.clamp(0, s - 1)
    n = len(top)
    batch = pattern if pattern.ndim == 3 else pattern.expand(n, s, s)
    values = batch[torch.arange(n, device=top.device)[:, None, None], r[:, :, None], c[:, None, :]]
    return (values * mask).unsqueeze(1), mask.unsqueeze(1)


def _norm(t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return t.pow(2).sum(dims, keepdim=True).sqrt()


def initial_perturbation(seed: int, index: torch.Tensor, shape: tuple[int, int, int], eps: float,
                         stream: int) -> torch.Tensor:
    """The start: a grid of pyramids of side ``height // 5`` with a random sign per window and
    channel (and a random orientation per window), rescaled to L2 norm ``eps``."""
    c, h, w = shape
    s = max(h // 5, 1)
    offset = (h - 5 * s) // 2
    corners = [(offset + i * s, offset + j * s) for i in range(h // s) for j in range(w // s)
               if offset + i * s + s <= h and offset + j * s + s <= w]
    u = keyed_uniform(seed, index, (len(corners), 1 + c), stream).to(torch.float64)
    delta = torch.zeros(len(index), c, h, w, dtype=torch.float64)
    base = pyramid(s)
    for k, (top, left) in enumerate(corners):
        block = torch.where(u[:, k, 0, None, None] < 0.5, base, base.T)  # (n, s, s)
        signs = torch.where(u[:, k, 1:] < 0.5, 1.0, -1.0)  # (n, c)
        delta[:, :, top:top + s, left:left + s] += block[:, None] * signs[:, :, None, None]
    return delta / _norm(delta, (1, 2, 3)).clamp_min(1e-12) * eps


def propose(delta: torch.Tensor, side: int, eps: float, u: torch.Tensor) -> torch.Tensor:
    """One L2 proposal from the current perturbation ``delta`` (``(n, c, h, w)``, float64), with
    uniforms ``u`` (``(n, 5 + c)``: two window corners, the orientation, a sign per channel).
    Returns the new perturbation, of L2 norm ``eps`` (before clipping to the box)."""
    n, c, h, w = delta.shape
    top1 = (u[:, 0] * (h - side + 1)).floor().long().clamp_(max=h - side)
    left1 = (u[:, 1] * (w - side + 1)).floor().long().clamp_(max=w - side)
    top2 = (u[:, 2] * (h - side + 1)).floor().long().clamp_(max=h - side)
    left2 = (u[:, 3] * (w - side + 1)).floor().long().clamp_(max=w - side)
    base = pyramid(side).to(delta)
    oriented = torch.where(u[:, 4, None, None] < 0.5, base, base.T)
    fresh, first = place(oriented, top1, left1, h, w)
    _, second = place(base, top2, left2, h, w)
    signs = torch.where(u[:, 5:] < 0.5, 1.0, -1.0).to(delta).view(n, c, 1, 1)
    both = first | second
    unused = (eps**2 - _norm(delta, (1, 2, 3)).pow(2)).clamp_min(0)  # (n, 1, 1, 1)
    held = _norm(delta * both, (2, 3))  # per channel, the mass of both windows
    old = delta * first / _norm(delta * first, (2, 3)).clamp_min(1e-12)
    new = fresh * signs + old
    new = new / _norm(new, (2, 3)).clamp_min(1e-12) * (unused / c + held.pow(2)).sqrt()
    out = torch.where(both, 0.0, delta) + torch.where(first, new, 0.0)
    return out / _norm(out, (1, 2, 3)).clamp_min(1e-12) * eps


def side(fraction: float, height: int, width: int) -> int:
    """The odd window side of a proposal covering ``fraction`` of the pixels: at least 3."""
    s = max(round(math.sqrt(fraction * height * width)), 3)
    s += s % 2 == 0
    return min(s, height, width)
