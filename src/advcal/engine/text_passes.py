"""The text modality of the engine: batches of texts, attacked at every budget by the text
attacks (:mod:`advcal.text.attack_table`), keeping example adversarial texts to show."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from advcal.engine.passes import BatchPasses
from advcal.models import check_logits, frozen
from advcal.text.data import TextDataset
from advcal.text.embedding_pgd import EmbeddingPGD
from advcal.text.words import word_diff


@dataclass
class TextAttacks:
    """Clean logits per batch of texts, then every budget's attack; keeps the first ``wanted``
    successful examples of the last (normally largest) budget and counts the score queries."""

    data: TextDataset
    attackers: Sequence[object]
    budgets: Sequence[float]
    batch_size: int
    wanted: int
    examples: list[dict[str, object]] = field(default_factory=list)
    queries: int = 0

    @property
    def n_samples(self) -> int:
        return len(self.data)

    def passes(self, name: str, model: nn.Module) -> Iterator[BatchPasses]:
        data = self.data
        for start in range(0, len(data), self.batch_size):
            batch = data.subset(np.arange(start, min(start + self.batch_size, len(data))))
            y, index = torch.from_numpy(batch.labels), torch.from_numpy(batch.index)
            began = time.perf_counter()
            with frozen(model), torch.no_grad():
                clean_logits = check_logits(model(batch.texts), len(batch), "text classifier").cpu()
            clean_seconds = time.perf_counter() - began
            began = time.perf_counter()
            adversarial, forward, backward = [], 1, 0
            for budget, attacker in zip(self.budgets, self.attackers, strict=True):
                result = attacker(model, batch.texts, y, index=index)
                adversarial.append(result.logits.detach().cpu())
                if isinstance(attacker, EmbeddingPGD):
                    forward, backward = forward + result.forward_passes, backward + result.backward_passes
                else:  # score-based attacks: every text scored is one query
                    self.queries += int(result.queries.sum())
                    if budget == self.budgets[-1]:
                        self._keep_examples(batch, clean_logits, result, budget)
            yield BatchPasses(index, y, clean_logits, adversarial, forward, backward, clean_seconds,
                              time.perf_counter() - began)

    def _keep_examples(self, batch: TextDataset, clean_logits: torch.Tensor, result: object,
                       budget: float) -> None:
        """The first correctly classified texts, in data order, that ``result`` flipped."""
        clean_probs = clean_logits.softmax(1)
        adv_probs = result.logits.detach().cpu().softmax(1)
        for i, (original, perturbed) in enumerate(zip(result.original, result.perturbed, strict=True)):
            if len(self.examples) >= self.wanted:
                return
            label = int(batch.labels[i])
            if original == perturbed or int(clean_probs[i].argmax()) != label or not bool(result.success[i]):
                continue
            self.examples.append({
                "index": int(batch.index[i]), "budget": budget, "label": batch.classes[label],
                "clean_prediction": batch.classes[int(clean_probs[i].argmax())],
                "clean_confidence": float(clean_probs[i].max()),
                "adversarial_prediction": batch.classes[int(adv_probs[i].argmax())],
                "adversarial_confidence": float(adv_probs[i].max()),
                "original": original, "perturbed": perturbed,
                "diff": [[word, changed] for word, changed in word_diff(original, perturbed)],
            })
