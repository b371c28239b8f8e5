"""Guards that keep a model untouched while advcal evaluates or attacks it (invariant 4).

:func:`frozen` puts every submodule in eval mode and turns parameter gradients off for the
duration of a block, then restores each submodule's own mode and each parameter's own
``requires_grad`` flag — a model handed over in train mode comes back in train mode, with
BatchNorm running statistics and weights bit-identical. Frozen parameters also spare an
attack the weight gradients it would never use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from advcal._core.contract import looks_like_probabilities
from advcal._core.errors import InputError


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients inside the block; the exact prior state after."""
    if not isinstance(model, nn.Module):
        raise InputError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    model.eval()
    for param, _ in flags:
        param.requires_grad_(False)
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
        for param, requires_grad in flags:
            param.requires_grad_(requires_grad)


def check_logits(output: object, n_samples: int, name: str = "model") -> torch.Tensor:
    """The model's output checked as a ``(n_samples, classes)`` matrix of logits."""
    if not isinstance(output, torch.Tensor):
        raise InputError(f"{name}: expected the forward pass to return a tensor of logits, "
                         f"got {type(output).__name__}")
    if not output.is_floating_point():
        raise InputError(f"{name}: returned logits of dtype {output.dtype}, expected floating-point logits")
    if output.device.type == "meta":
        raise InputError(f"{name}: returned logits on the meta device (no values): its weights were "
                         "never materialised")
    if output.ndim != 2 or output.shape[0] != n_samples or output.shape[1] < 2:
        raise InputError(
            f"{name}: expected logits of shape ({n_samples}, classes >= 2), got {tuple(output.shape)}"
        )
    if not bool(torch.isfinite(output).all()):
        raise InputError(f"{name}: returned NaN or inf logits")
    if looks_like_probabilities(output.detach()):
        raise InputError(
            f"{name}: the model returns probabilities (rows are non-negative and sum to 1), not "
            "logits; remove the final softmax, or wrap the model so it returns log-probabilities"
        )
    return output
