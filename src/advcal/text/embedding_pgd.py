"""Projected gradient ascent in a text classifier's input-embedding space.

Texts are discrete, so a gradient attack perturbs the token embeddings instead: each token's
embedding vector ``e_t`` may move to ``e_t + delta_t`` with ``||delta_t||_2 <= eps``. The budget
is per token, not per sentence, so a long text is not allowed a larger move per word than a
short one, and padding positions are never perturbed. The result is not a text any more, but it
bounds what a word-substitution attack could do with substitutes within ``eps`` of the original
embedding, and it is the inner maximisation of embedding-space adversarial training.

As with the image attacks (DESIGN invariants 3 and 4): the random start of sample ``i`` depends
only on ``(seed, index[i])``, never on the batch it comes in or the global RNG, and
:meth:`EmbeddingPGD.__call__` runs the model frozen (eval mode, no parameter gradients) and
restores it afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from advcal._core.errors import InputError, describe
from advcal._core.rng import keyed_uniform
from advcal._core.validation import check_choice, check_int, check_positive, check_seed
from advcal.attacks.losses import get_loss
from advcal.models.guard import frozen
from advcal.text.models import TextClassifier, check_texts

# The keyed-randomness stream of the random start, apart from the streams other attacks use
# for the same sample indices.
START_STREAM = 11


@dataclass
class EmbeddingAttackResult:
    """One embedding-space attack on a batch of texts.

    Attributes:
        inputs_embeds_adv: adversarial input embeddings ``(N, L, D)`` (detached).
        attention_mask: the texts' attention mask ``(N, L)``; padding was not perturbed.
        logits: the classifier's logits at ``inputs_embeds_adv``.
        clean_logits: the classifier's logits at the clean embeddings.
        success: per sample, whether the adversarial logits misclassify.
        eps: the per-token L2 budget.
        labels: the labels the attack was run with.
        index: the sample indices the randomness was keyed on.
        forward_passes, backward_passes: batch passes of the model, the clean pass excluded.
        params: the attack's settings.
    """

    inputs_embeds_adv: torch.Tensor
    attention_mask: torch.Tensor
    logits: torch.Tensor
    clean_logits: torch.Tensor
    success: torch.Tensor
    eps: float
    labels: torch.Tensor
    index: torch.Tensor
    forward_passes: int = 0
    backward_passes: int = 0
    params: dict[str, object] = field(default_factory=dict)

    @property
    def robust_accuracy(self) -> float:
        """Fraction of samples still classified correctly under attack."""
        return float((self.logits.argmax(1) == self.labels).float().mean())


def _token_norm(t: torch.Tensor) -> torch.Tensor:
    """L2 norm of each token's vector ``(N, L, 1)``."""
    return t.norm(dim=-1, keepdim=True)


def project_per_token(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Each token's vector scaled into the L2 ball of radius ``eps`` (unchanged if inside)."""
    return delta * (eps / (_token_norm(delta) + 1e-12)).clamp(max=1.0)


def per_token_random_start(
    attention_mask: torch.Tensor, dim: int, eps: float, seed: int, index: torch.Tensor
) -> torch.Tensor:
    """A uniform random point of each real token's ``eps``-ball, zero at padding ``(N, L, dim)``.

    Draws are addressed by a token's rank among the real tokens of its text, so the start of a
    text is the same whatever padding length (or padding side) its batch has.
    """
    n, length = attention_mask.shape
    u = keyed_uniform(seed, index, (length, 2 * dim + 1), START_STREAM).to(torch.float64)
    # Box-Muller gives a Gaussian direction; the radius eps * U^(1/dim) makes the point uniform
    # in the ball.
    gauss = torch.sqrt(-2 * torch.log1p(-u[..., :dim])) * torch.cos(2 * math.pi * u[..., dim : 2 * dim])
    direction = gauss / gauss.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    draws = direction * (eps * u[..., 2 * dim :] ** (1.0 / dim))
    mask = attention_mask.cpu().bool()
    rank = (mask.long().cumsum(1) - 1).clamp(min=0)
    start = draws.gather(1, rank[..., None].expand(n, length, dim)) * mask[..., None]
    return start.to(torch.float32)


class EmbeddingPGD:
    """PGD on input embeddings with a per-token L2 budget.

    Args:
        eps: L2 radius of each token's perturbation, in embedding units (compare it with the
            norms of :meth:`TextClassifier.embedding_matrix` rows).
        steps: gradient steps.
        alpha: step size; default ``2.5 * eps / steps`` (so the walk can cross the ball).
        loss: ``"ce"``, ``"margin"``/``"cw"`` or ``"dlr"`` (see :mod:`advcal.attacks.losses`).
        loss_temperature: divides the logits inside the loss only.
        seed: seed of the random start (keyed per sample index).
        random_start: start at a uniform random point of each token's ball; else at zero.

    Each step moves every token along its own L2-normalised gradient, then projects it back
    into its ball. The last iterate is returned. Cost: ``steps`` forward and backward passes,
    plus one forward pass at the end.
    """

    name = "embedding-pgd"

    def __init__(
        self,
        eps: float,
        steps: int = 10,
        alpha: float | None = None,
        *,
        loss: str = "ce",
        loss_temperature: float = 1.0,
        seed: int = 0,
        random_start: bool = True,
    ) -> None:
        self.eps = check_positive(eps, "eps")
        self.steps = check_int(steps, "steps", 1)
        self.alpha = 2.5 * self.eps / self.steps if alpha is None else check_positive(alpha, "alpha")
        self.loss = check_choice(loss, "loss", ("ce", "margin", "cw", "dlr"))
        self.loss_temperature = check_positive(loss_temperature, "loss_temperature")
        self.loss_fn = get_loss(self.loss, self.loss_temperature)
        self.seed = check_seed(seed)
        self.random_start = bool(random_start)

    @property
    def params(self) -> dict[str, object]:
        """The settings, for reports."""
        return {
            "eps": self.eps, "steps": self.steps, "alpha": self.alpha, "norm": "l2-per-token",
            "loss": self.loss, "loss_temperature": self.loss_temperature, "seed": self.seed,
            "random_start": self.random_start,
        }

    def perturb(
        self,
        classifier: TextClassifier,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        index: torch.Tensor | np.ndarray | Sequence[int],
    ) -> torch.Tensor:
        """Adversarial embeddings ``inputs_embeds + delta`` with ``delta`` found by PGD.

        Works in whatever mode the classifier is in (train mode for adversarial training).
        Only ``delta`` is differentiated (``torch.autograd.grad``), so no parameter's ``.grad``
        is touched. ``delta`` is detached, but the sum keeps ``inputs_embeds``' graph: a loss
        on the result still trains the embedding layer.
        """
        if not isinstance(inputs_embeds, torch.Tensor) or inputs_embeds.ndim != 3:
            raise InputError(f"inputs_embeds: expected a (N, L, D) tensor, got {describe(inputs_embeds)}")
        n, length, dim = inputs_embeds.shape
        if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != (n, length):
            raise InputError(
                f"attention_mask: expected a tensor of shape {(n, length)}, got {describe(attention_mask)}"
            )
        labels = _as_labels(labels, n, classifier.num_classes, inputs_embeds.device)
        index = _as_index(index, n)
        clean = inputs_embeds.detach()
        keep = attention_mask[..., None].to(clean.dtype)
        if self.random_start:
            delta = per_token_random_start(attention_mask, dim, self.eps, self.seed, index).to(clean)
        else:
            delta = torch.zeros_like(clean)
        for _ in range(self.steps):
            delta.requires_grad_(True)
            # Enabled explicitly: adversarial training may call this from inside a no_grad
            # evaluation block, and the attack needs its gradient regardless.
            with torch.enable_grad():
                logits = classifier.forward_embeddings(clean + delta, attention_mask)
                loss = self.loss_fn(logits.float(), labels).sum()
                (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                step = grad * keep / (_token_norm(grad) + 1e-12)
                delta = project_per_token(delta + self.alpha * step, self.eps) * keep
        return inputs_embeds + delta.detach()

    def __call__(
        self,
        classifier: TextClassifier,
        texts: Sequence[str],
        labels: torch.Tensor | np.ndarray | Sequence[int],
        index: torch.Tensor | np.ndarray | Sequence[int] | None = None,
    ) -> EmbeddingAttackResult:
        """Attack ``texts`` with true ``labels``; ``index`` keys the randomness (default 0..N-1)."""
        if not isinstance(classifier, TextClassifier):
            raise InputError(f"classifier: expected a TextClassifier, got {type(classifier).__name__}")
        texts = check_texts(texts)
        n = len(texts)
        index = _as_index(torch.arange(n) if index is None else index, n)
        with frozen(classifier):
            with torch.no_grad():
                inputs_embeds, attention_mask = classifier.embed(texts)
                clean_logits = classifier.forward_embeddings(inputs_embeds, attention_mask)
            labels = _as_labels(labels, n, classifier.num_classes, inputs_embeds.device)
            adv = self.perturb(classifier, inputs_embeds, attention_mask, labels, index)
            with torch.no_grad():
                logits = classifier.forward_embeddings(adv, attention_mask)
        return EmbeddingAttackResult(
            inputs_embeds_adv=adv.detach(),
            attention_mask=attention_mask,
            logits=logits.detach(),
            clean_logits=clean_logits.detach(),
            success=logits.argmax(1) != labels,
            eps=self.eps,
            labels=labels,
            index=index,
            forward_passes=self.steps + 1,
            backward_passes=self.steps,
            params=self.params,
        )


def _as_labels(labels: object, n: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """``labels`` as an int64 tensor of ``n`` class indices below ``num_classes``."""
    try:
        tensor = torch.as_tensor(np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels))
    except (TypeError, ValueError):
        raise InputError(f"labels: expected {n} integer class indices, got {describe(labels)}") from None
    integer = not (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool)
    if tensor.shape != (n,) or not integer:
        raise InputError(f"labels: expected {n} integer class indices, got {describe(labels)}")
    if n and (int(tensor.min()) < 0 or int(tensor.max()) >= num_classes):
        raise InputError(
            f"labels: expected class indices in 0..{num_classes - 1}, got values "
            f"{int(tensor.min())}..{int(tensor.max())}"
        )
    return tensor.long().to(device)


def _as_index(index: object, n: int) -> torch.Tensor:
    """``index`` as an int64 CPU tensor of ``n`` non-negative sample indices."""
    try:
        tensor = torch.as_tensor(np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index))
    except (TypeError, ValueError):
        raise InputError(f"index: expected {n} sample indices, got {describe(index)}") from None
    if tensor.shape != (n,) or tensor.is_floating_point() or tensor.dtype == torch.bool:
        raise InputError(f"index: expected {n} integer sample indices, got {describe(index)}")
    if n and int(tensor.min()) < 0:
        raise InputError(f"index: expected non-negative sample indices, got minimum {int(tensor.min())}")
    return tensor.long()
