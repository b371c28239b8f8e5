"""Vector scaling: a per-class scale and bias on the logits, fitted by NLL."""

from __future__ import annotations

import torch

from advcal.calibration.base import Calibrator

MAX_ITERATIONS = 200


class VectorScaling(Calibrator):
    """``logits * w + b`` with one ``w_k`` and ``b_k`` per class (Guo et al. 2017).

    The NLL is convex in ``(w, b)`` (the parameters enter the log-softmax linearly), so LBFGS
    from ``w = 1, b = 0`` finds the optimum; it runs in float64. Unlike temperature scaling it
    may change predictions.
    """

    kind = "vector"

    def __init__(self) -> None:
        super().__init__()
        self.scale: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def _fit(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        scale = torch.ones(logits.shape[1], dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(logits.shape[1], dtype=torch.float64, requires_grad=True)
        optimiser = torch.optim.LBFGS([scale, bias], lr=1.0, max_iter=MAX_ITERATIONS,
                                      tolerance_grad=1e-10, tolerance_change=1e-12,
                                      line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(logits * scale + bias, labels)
            loss.backward()
            return loss

        optimiser.step(closure)
        self.scale, self.bias = scale.detach(), bias.detach()

    def _transform(self, logits: torch.Tensor) -> torch.Tensor:
        return logits * self.scale.to(logits) + self.bias.to(logits)

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"scale": self.scale, "bias": self.bias}

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        self.scale, self.bias = tensors["scale"].double(), tensors["bias"].double()
