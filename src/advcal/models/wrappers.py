"""Small model wrappers: input normalisation and a temperature on the logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from advcal.errors import InputError


class Normalized(nn.Module):
    """``model((x - mean) / std)``: attacks act on [0, 1] inputs, normalisation is the model's."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or not len(mean):
            raise InputError(f"std: expected as many values as mean ({len(mean)}), got {len(std)}")
        if any(s <= 0 for s in std):
            raise InputError(f"std: expected positive values, got {list(std)}")
        self.model = model
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean, self.std
        if x.ndim == 2:  # flat inputs: one value per feature, no channel axis
            mean, std = mean.view(1, -1), std.view(1, -1)
        return self.model((x - mean.to(x.dtype)) / std.to(x.dtype))


class TemperatureScaled(nn.Module):
    """``model(x) / temperature``: the served model of post-hoc temperature scaling."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        if not temperature > 0:
            raise InputError(f"temperature: expected a positive number, got {temperature!r}")
        self.model = model
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) / self.temperature
