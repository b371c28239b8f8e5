"""State dicts of models with tied weights (one tensor under several keys).

A text classifier holds its input-embedding layer twice (as the layer attacks perturb, and inside
its body), and safetensors refuses to write one tensor twice. These helpers store each tensor
once, under its first key, and load such a state back strictly: every key must match, except
the later keys of a tied tensor, which the first one fills.
"""

from __future__ import annotations

import torch
from torch import nn


def tied_keys(model: nn.Module) -> set[str]:
    """Keys of ``model.state_dict()`` whose tensor is the same as an earlier key's."""
    seen, tied = set(), set()
    for key, value in model.state_dict().items():
        where = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape))
        if where in seen:
            tied.add(key)
        seen.add(where)
    return tied


def unique_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict, detached, contiguous and on the CPU, each tied tensor under its first key only."""
    tied = tied_keys(model)
    return {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()
            if key not in tied}


def load_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` into ``model``: strict, but a tied tensor's later keys may be absent.

    Raises RuntimeError (as ``load_state_dict`` does) naming the keys that do not match.
    """
    missing, unexpected = model.load_state_dict(state, strict=False)
    absent = sorted(set(missing) - tied_keys(model))
    if absent or unexpected:
        raise RuntimeError(f"missing keys {absent[:5]}, unexpected keys {sorted(unexpected)[:5]}")
