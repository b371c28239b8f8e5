"""Dirichlet distributions built from a zero-shot CLIP head's logits (UCAT, arXiv 2512.12997).

CLIP's logits are ``s · cos(image, class prompt)`` with the learned logit scale ``s``. UCAT reads
the cosines as the concentrations of a Dirichlet over the class probabilities,

    α_k = 1e-6 + exp((cos_k + 1) / τ′),   τ′ = 0.07,

so that both the relative similarities (which class) and their magnitude (how sure) shape the
distribution, and aligns the fine-tuned model's Dirichlet on an adversarial image with the frozen
original's on the clean image by the closed-form KL divergence. Everything here is computed in
float64 and outside any autocast: the concentrations reach exp(2 / 0.07) ≈ 2.6e12, whose log-gamma
and digamma differences lose every digit in half precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from advcal._core.validation import check_positive

TAU = 0.07
FLOOR = 1e-6


def _float64(tensor: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(tensor).to(torch.float64)


def concentrations(
    logits: torch.Tensor, logit_scale: float | torch.Tensor, tau: float = TAU, floor: float = FLOOR
) -> torch.Tensor:
    """UCAT's Dirichlet concentrations ``α = floor + exp((logits / logit_scale + 1) / tau)``, float64.

    ``logits / logit_scale`` are the cosine similarities in [-1, 1], so α lies in
    ``[floor + 1, floor + exp(2 / tau)]``: finite and positive for every image.
    """
    check_positive(tau, "tau")
    with torch.autocast(device_type=torch.as_tensor(logits).device.type, enabled=False):
        cosine = _float64(logits) / _float64(logit_scale)
        return floor + torch.exp((cosine + 1.0) / tau)


def dirichlet_kl(alpha_p: torch.Tensor, alpha_q: torch.Tensor) -> torch.Tensor:
    """``KL(Dir(α_p) ‖ Dir(α_q))`` per row, in closed form (float64):

    ``ln Γ(α_p0) − Σ ln Γ(α_pk) − ln Γ(α_q0) + Σ ln Γ(α_qk) + Σ (α_pk − α_qk)(ψ(α_pk) − ψ(α_p0))``,

    with ``α_0 = Σ_k α_k``. UCAT calls it with the adversarial distribution first (the reverse KL).
    """
    with torch.autocast(device_type=torch.as_tensor(alpha_p).device.type, enabled=False):
        p, q = _float64(alpha_p), _float64(alpha_q)
        p0, q0 = p.sum(-1), q.sum(-1)
        return (torch.lgamma(p0) - torch.lgamma(p).sum(-1) - torch.lgamma(q0) + torch.lgamma(q).sum(-1)
                + ((p - q) * (torch.digamma(p) - torch.digamma(p0)[..., None])).sum(-1))


def default_kl_weight(tau: float = TAU) -> float:
    """UCAT's default λ = 1e5 / exp(softplus(2 / τ′)) (about 3.9e-8 at τ′ = 0.07).

    The KL grows with the concentrations, whose largest value is exp(2 / τ′); dividing by
    exp(softplus(2 / τ′)) ≈ exp(2 / τ′) keeps the term on the scale of the cross-entropy.
    """
    x = 2.0 / check_positive(tau, "tau")
    softplus = x + math.log1p(math.exp(-x))  # stable for large x
    return math.exp(math.log(1e5) - softplus)  # underflows to 0, never overflows, for tiny τ′


@dataclass(frozen=True)
class DirichletUncertainty:
    """Per-sample uncertainties (nats) of ``Dir(α)``, as in Malinin & Gales (2018):

    * ``predictive`` — the entropy of the mean prediction ``p̄ = α / α_0``: ``H(p̄)``;
    * ``aleatoric`` — the expected entropy of a categorical drawn from the Dirichlet,
      ``E[H(p)] = Σ_k p̄_k (ψ(α_0 + 1) − ψ(α_k + 1))``: the data's own ambiguity;
    * ``epistemic`` — their difference, the mutual information between the label and ``p``
      (≥ 0): what more evidence would resolve;
    * ``vacuity`` — ``K / α_0``, subjective logic's lack of evidence (1 at the flat Dirichlet
      with α = 1, towards 0 as evidence accumulates).
    """

    predictive: torch.Tensor
    aleatoric: torch.Tensor
    epistemic: torch.Tensor
    vacuity: torch.Tensor

    def means(self) -> dict[str, float]:
        """The mean of each uncertainty over the samples, for reports."""
        return {name: float(getattr(self, name).mean()) for name in
                ("predictive", "aleatoric", "epistemic", "vacuity")}


def dirichlet_uncertainty(alpha: torch.Tensor) -> DirichletUncertainty:
    """The predictive, aleatoric and epistemic uncertainty and the vacuity of ``Dir(α)`` per row."""
    with torch.autocast(device_type=torch.as_tensor(alpha).device.type, enabled=False):
        a = _float64(alpha)
        a0 = a.sum(-1)
        mean = a / a0[..., None]
        predictive = -(mean * torch.log(mean.clamp_min(torch.finfo(torch.float64).tiny))).sum(-1)
        aleatoric = (mean * (torch.digamma(a0 + 1.0)[..., None] - torch.digamma(a + 1.0))).sum(-1)
        # The mutual information is >= 0, but for sharp Dirichlets (α ~ 1e12) both entropies are
        # ~1e-11 and their rounded difference can dip below 0.
        epistemic = (predictive - aleatoric).clamp_min(0.0)
        return DirichletUncertainty(predictive, aleatoric, epistemic, a.shape[-1] / a0)
