"""The one loop of an audit: any modality's passes stream into the same statistics, records
and cost, and what the image and text audits report comes out of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from advcal.engine.distributed import world
from advcal.engine.passes import BatchPasses, stream
from advcal.metrics import calibration_report


class GivenLogits:
    """A modality whose 'attack' returns logits fixed in advance, in batches of 32."""

    def __init__(self, clean: torch.Tensor, attacked: torch.Tensor, labels: torch.Tensor,
                 fail_at: int | None = None) -> None:
        self.clean, self.attacked, self.labels, self.fail_at = clean, attacked, labels, fail_at
        self.n_samples = len(labels)

    def passes(self, name: str, model: nn.Module):
        for first in range(0, self.n_samples, 32):
            if first == self.fail_at:
                raise RuntimeError(f"{name}: batch at {first} failed")
            index = torch.arange(first, min(first + 32, self.n_samples))
            yield BatchPasses(index, self.labels[index], self.clean[index], [self.attacked[index]],
                              forward=1, backward=2, clean_seconds=0.0, attack_seconds=0.0)


def _logits(seed: int) -> torch.Tensor:
    return torch.randn(100, 4, generator=torch.Generator().manual_seed(seed)) * 3


def test_a_modality_of_ones_own_feeds_the_loop_and_the_figures_are_the_reports():
    labels = torch.randint(0, 4, (100,), generator=torch.Generator().manual_seed(0))
    clean, attacked = _logits(1), _logits(2)
    seen = []
    streamed = stream("given", nn.Identity(), GivenLogits(clean, attacked, labels), [0.1], n_bins=10,
                      bootstrap=0, seed=0, progress=lambda *a: seen.append(a), ranks=world())
    for stats, logits in ((streamed.clean, clean), (streamed.adversarial[0], attacked)):
        found, expected = stats.compute(), calibration_report(logits, labels, n_bins=10)
        for key in ("ece", "brier", "nll", "accuracy"):
            assert found[key] == pytest.approx(expected[key], rel=1e-12), key
    confidence = attacked.double().softmax(1).max(1).values.numpy()
    np.testing.assert_allclose(streamed.samples["eps=0.1/confidence"], confidence)
    np.testing.assert_array_equal(streamed.samples["index"], np.arange(100))
    assert (streamed.forward, streamed.backward) == (4, 8)
    assert seen == [("given", done, 100) for done in (32, 64, 96, 100)]


def test_a_failing_batch_is_raised_not_swallowed():
    labels = torch.zeros(100, dtype=torch.long)
    with pytest.raises(RuntimeError, match="given: batch at 64 failed"):
        stream("given", nn.Identity(), GivenLogits(_logits(1), _logits(2), labels, fail_at=64), [0.1],
               n_bins=10, bootstrap=0, seed=0, progress=None, ranks=world())
