"""What a training recipe reads and perturbs: image tensors or texts, behind one interface.

Images (:class:`~advcal.data.DataSource`) are attacked in input space with PGD. Texts
(:class:`~advcal.text.TextDataset`, trained through a :class:`~advcal.text.TextClassifier`) are
attacked in the classifier's input-embedding space with per-token L2 PGD
(:class:`~advcal.text.EmbeddingPGD`), the attack of embedding-space adversarial training: a
word substitution has no gradient to train on. The recipes and the training loop only see
:class:`TrainingSet` batches and the two functions below, so every recipe and option works on
both kinds of data unless it says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from advcal._core.errors import ConfigError, InputError
from advcal.attacks import PGD
from advcal.data import DataSource
from advcal.models import frozen

# A batch's inputs: an image tensor, or a list of texts.
Inputs = torch.Tensor | list[str]
# Adversarial inputs: images, or (input embeddings, attention mask) of texts.
AdversarialInputs = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TrainingSet:
    """One split for training or validation: images or texts, with labels and sample keys."""

    name: str
    split: str
    inputs: Inputs
    y: torch.Tensor
    index: torch.Tensor

    @property
    def is_text(self) -> bool:
        return isinstance(self.inputs, list)

    def __len__(self) -> int:
        return len(self.y)

    def take(self, positions: torch.Tensor) -> tuple[Inputs, torch.Tensor, torch.Tensor]:
        """``(inputs, y, index)`` of the samples at ``positions``."""
        inputs = [self.inputs[i] for i in positions.tolist()] if self.is_text else self.inputs[positions]
        return inputs, self.y[positions], self.index[positions]


def training_set(data: Any, argument: str) -> TrainingSet:
    """``data`` (a DataSource or a TextDataset) as a :class:`TrainingSet`; ``argument`` names it."""
    if isinstance(data, DataSource):
        return TrainingSet(data.name, data.split, data.x, data.y, data.index)
    texts, labels, index = (getattr(data, name, None) for name in ("texts", "labels", "index"))
    if isinstance(texts, list) and labels is not None and index is not None:
        return TrainingSet(getattr(data, "name", "texts"), "texts", texts, torch.as_tensor(labels),
                           torch.as_tensor(index))
    raise InputError(f"{argument}: expected an advcal DataSource (images) or TextDataset (texts), "
                     f"got {type(data).__name__}")


def check_model_for(model: nn.Module, data: TrainingSet) -> None:
    """Refuse a model that cannot read ``data`` (texts need a TextClassifier, split at its embeddings)."""
    if data.is_text and not callable(getattr(model, "forward_embeddings", None)):
        raise ConfigError(f"model: text data needs an advcal TextClassifier (it exposes the input embeddings "
                          f"the training attack perturbs), got {type(model).__name__}")


def perturb(
    model: nn.Module, inputs: Inputs, y: torch.Tensor, index: torch.Tensor, *, eps: float, steps: int,
    alpha: float | None, seed: int, loss_temperature: float = 1.0,
) -> AdversarialInputs:
    """Adversarial inputs that maximise the (tempered) cross-entropy, keyed on ``(seed, index)``.

    Images: PGD-L∞ in input space (``eps`` in input units). Texts: PGD with a per-token L2 ball
    of radius ``eps`` around each input embedding; the embeddings are looked up in the model's
    current mode and keep their graph, so a loss on the result also trains the embedding layer.
    Both attacks run with the model in eval mode (dropout off, BatchNorm statistics untouched).
    """
    if isinstance(inputs, torch.Tensor):
        attack = PGD(eps=eps, steps=steps, alpha=alpha, seed=seed, loss_temperature=loss_temperature)
        return attack(model, inputs, y, index=index).x_adv
    from advcal.text import EmbeddingPGD

    inputs_embeds, attention_mask = model.embed(inputs)
    attack = EmbeddingPGD(eps, steps, alpha, loss_temperature=loss_temperature, seed=seed)
    with frozen(model):
        adversarial = attack.perturb(model, inputs_embeds, attention_mask, y, index)
    return adversarial, attention_mask


def logits_of(model: nn.Module, inputs: Inputs | AdversarialInputs) -> torch.Tensor:
    """The model's logits on clean or adversarial inputs of either kind."""
    if isinstance(inputs, tuple):
        return model.forward_embeddings(*inputs)
    return model(inputs)
