"""The training loop: standard or adversarial training of a classifier on in-memory data.

Deterministic given ``seed``: batches are shuffled with a local generator, and an attack's
random starts are keyed on ``(attack seed, sample index + epoch * N)``, so every epoch draws
fresh perturbations that do not depend on batch composition. (Weight initialisation is the
caller's: build the model under a seeded ``torch.random.fork_rng()``.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from advcal._core.validation import check_int, check_positive, check_seed
from advcal.attacks.base import Attack


@dataclass
class EpochLog:
    """What one epoch did: mean training loss and accuracy on the (possibly attacked) batches."""

    epoch: int
    loss: float
    accuracy: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def train_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    attack: Attack | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> list[EpochLog]:
    """Train ``model`` with Adam on cross-entropy; with ``attack``, on its adversarial inputs.

    Returns one :class:`EpochLog` per epoch; ``on_epoch`` is called after each. The model is
    left in eval mode.
    """
    check_int(epochs, "epochs", 1)
    check_int(batch_size, "batch_size", 1)
    check_positive(lr, "lr")
    generator = torch.Generator().manual_seed(check_seed(seed))
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    logs = []
    for epoch in range(epochs):
        model.train()
        total_loss = total_correct = 0.0
        for batch in torch.randperm(len(x), generator=generator).split(batch_size):
            inputs = x[batch]
            if attack is not None:
                inputs = attack(model, inputs, y[batch], index=batch + epoch * len(x)).x_adv
            optimiser.zero_grad()
            logits = model(inputs)
            loss = nn.functional.cross_entropy(logits, y[batch])
            loss.backward()
            optimiser.step()
            total_loss += loss.item() * len(batch)
            total_correct += float((logits.argmax(1) == y[batch]).sum())
        log = EpochLog(epoch, total_loss / len(x), total_correct / len(x))
        logs.append(log)
        if on_epoch is not None:
            on_epoch(log)
    model.eval()
    return logs
