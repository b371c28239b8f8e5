"""Small model wrappers: input normalisation and a temperature on the logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from advcal._core.errors import InputError
from advcal._core.validation import check_positive


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
        self.model = model
        self.temperature = check_positive(temperature, "temperature")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) / self.temperature


class Ensemble(nn.Module):
    """Several models combined by averaging their probabilities (the seed's ensemble calibration).

    The output is ``log(mean_m softmax(model_m(x)))``: log-probabilities, which every advcal
    metric and attack takes as logits (their softmax is the averaged probabilities), so the
    ensemble is audited and attacked as one model, end to end.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(models) < 2:
            raise InputError(f"models: an ensemble needs at least 2 models, got {len(models)}")
        self.members = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack([torch.log_softmax(member(x), 1) for member in self.members])
        return torch.logsumexp(stacked, 0) - torch.log(torch.tensor(float(len(self.members))))
