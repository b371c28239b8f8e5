"""The one loop of an audit: batches → clean logits → the attack at every budget → logits →
streaming statistics, reduced exactly across processes.

A *modality* is how one kind of input is batched and attacked: it yields one
:class:`BatchPasses` per batch (clean logits, the logits at each budget, what they cost).
:func:`stream` turns any modality's passes into merged statistics, per-sample records and
cost, so the analyses never loop over batches themselves; :func:`collect` gives the whole
split's logits instead, for the analyses that fit on them (the fixes, the illusion checks, the
zero-shot suite) and for the making of stored adversarial sets. The image modalities (a live
attack, a stored adversarial set) are here; text's is :mod:`advcal.engine.text_passes`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from advcal._core.devices import module_device
from advcal._core.errors import InputError
from advcal.attacks import Attack, AttackResult
from advcal.calibration import CalibratedModel, attack_calibrated
from advcal.data import AdversarialSet, DataSource
from advcal.engine.distributed import World, agree, all_gather_arrays, concatenate_by_index, gather_stats
from advcal.metrics import CalibrationStats
from advcal.metrics.binning import equal_width_bin_index
from advcal.models import check_logits, frozen

ProgressFn = Callable[[str, int, int], None]


@dataclass
class BatchPasses:
    """One batch's model outputs: clean logits and logits per budget (on the CPU), and their cost."""

    index: torch.Tensor
    y: torch.Tensor
    clean_logits: torch.Tensor
    adversarial_logits: list[torch.Tensor]
    forward: int
    backward: int
    clean_seconds: float
    attack_seconds: float
    # The perturbed inputs per budget, when the modality was asked to keep them.
    adversarial_inputs: list[torch.Tensor] | None = None


class Modality(Protocol):
    """How one kind of input is batched and attacked at each budget of a sweep."""

    n_samples: int  # the samples this process's passes cover

    def passes(self, name: str, model: nn.Module) -> Iterator[BatchPasses]:
        """One :class:`BatchPasses` per batch of ``model``'s outputs (``name`` is for messages)."""
        ...


@dataclass
class ImageAttack:
    """Image batches attacked live: clean logits (one forward pass per batch), then the attack
    at every ε from them (no second clean pass). Without an attacker, clean logits only; with
    ``keep_inputs``, the adversarial images too (on the CPU)."""

    data: DataSource
    attacker: Attack | None
    batch_size: int
    keep_inputs: bool = False

    @property
    def n_samples(self) -> int:
        return len(self.data)

    def passes(self, name: str, model: nn.Module) -> Iterator[BatchPasses]:
        device = module_device(model)
        for index, x, y in self.data.batches(self.batch_size):
            start = time.perf_counter()
            x_dev, y_dev = x.to(device), y.to(device)
            with frozen(model), torch.no_grad():
                clean_logits = check_logits(model(x_dev), len(x), f"model {name}")
            clean_seconds = time.perf_counter() - start
            start = time.perf_counter()
            if self.attacker is None:
                results = []
            elif isinstance(model, CalibratedModel):  # end to end, or BPDA for non-differentiable calibrators
                results = attack_calibrated(self.attacker, model, x_dev, y_dev, index, clean_logits)
            else:
                results = self.attacker(model, x_dev, y_dev, index=index, clean_logits=clean_logits)
            if isinstance(results, AttackResult):  # an attack at one ε gives one result, not a list
                results = [results]
            yield BatchPasses(
                index, y, clean_logits.cpu(), [result.logits.detach().cpu() for result in results],
                1 + sum(r.forward_passes for r in results), sum(r.backward_passes for r in results),
                clean_seconds, time.perf_counter() - start,
                [result.x_adv.cpu() for result in results] if self.keep_inputs else None,
            )


@dataclass
class StoredSet:
    """A stored adversarial set's clean and adversarial inputs, evaluated as they are: forward
    passes only (``positions``: the shards this process reads)."""

    adv: AdversarialSet
    positions: Sequence[int]
    batch_size: int

    @property
    def n_samples(self) -> int:
        return sum(self.adv.shard_size(k) for k in self.positions)

    def passes(self, name: str, model: nn.Module) -> Iterator[BatchPasses]:
        device = module_device(model)
        for index, x, y, adversarial in self.adv.batches(self.batch_size, self.positions):
            start = time.perf_counter()
            with frozen(model), torch.no_grad():
                clean_logits = check_logits(model(x.to(device)), len(x), f"model {name}").cpu()
                clean_seconds = time.perf_counter() - start
                start = time.perf_counter()
                logits = [check_logits(model(x_adv.to(device)), len(x), f"model {name}").cpu()
                          for x_adv in adversarial]
            yield BatchPasses(index, y, clean_logits, logits, 1 + len(logits), 0, clean_seconds,
                              time.perf_counter() - start)


class SampleRecords:
    """Per-sample predictions, confidences and bins, clean and at each ε, for the tails."""

    def __init__(self, n_bins: int) -> None:
        self.n_bins = n_bins
        self.parts: dict[str, list[np.ndarray]] = {}

    def add(self, condition: str, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> None:
        confidence, prediction = torch.softmax(logits.double(), 1).max(1)
        columns = {
            "index": index.numpy(),
            "label": y.numpy(),
            f"{condition}/prediction": prediction.numpy(),
            f"{condition}/confidence": confidence.numpy(),
            f"{condition}/bin": equal_width_bin_index(confidence, self.n_bins).numpy(),
            f"{condition}/correct": (prediction == y).numpy(),
        }
        for name, column in columns.items():
            if name in ("index", "label") and condition != "clean":
                continue
            self.parts.setdefault(name, []).append(column)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts) for name, parts in self.parts.items()}


@dataclass
class Streamed:
    """What one model's passes add up to, over every process: statistics clean and per budget,
    the per-sample records (``clean/...``, ``eps=<budget>/...``) and the cost."""

    clean: CalibrationStats
    adversarial: list[CalibrationStats]
    samples: dict[str, np.ndarray]
    forward: int
    backward: int
    clean_seconds: float
    attack_seconds: float


def stream(
    name: str, model: nn.Module, modality: Modality, budgets: Sequence[float], n_bins: int, bootstrap: int,
    seed: int, progress: ProgressFn | None, ranks: World,
) -> Streamed:
    """Run ``model`` through ``modality``'s passes, feeding streaming statistics per batch;
    under several processes every rank's part is gathered (statistics merged exactly)."""
    def new_stats() -> CalibrationStats:
        return CalibrationStats(n_bins=n_bins, bootstrap=bootstrap, seed=seed)

    clean_stats = new_stats()
    records = SampleRecords(n_bins)
    adversarial = [new_stats() for _ in budgets]
    clean_time = attack_time = 0.0
    forward = backward = 0
    done = 0
    failure = None
    try:
        for batch in modality.passes(name, model):
            start = time.perf_counter()
            clean_stats.update(batch.clean_logits, batch.y, index=batch.index)
            records.add("clean", batch.clean_logits, batch.y, batch.index)
            clean_time += batch.clean_seconds + time.perf_counter() - start
            start = time.perf_counter()
            for budget, stats, logits in zip(budgets, adversarial, batch.adversarial_logits, strict=True):
                stats.update(logits, batch.y, index=batch.index)
                records.add(f"eps={budget:g}", logits, batch.y, batch.index)
            attack_time += batch.attack_seconds + time.perf_counter() - start
            forward += batch.forward
            backward += batch.backward
            done += len(batch.y)
            if progress is not None:
                progress(name, done, modality.n_samples)
    except BaseException as error:  # every rank must learn of it; agree re-raises it
        failure = error
    agree(failure, ranks)  # one process: re-raises; several: all raise if any rank failed
    samples = records.arrays()
    if ranks.size > 1:
        clean_stats = gather_stats(clean_stats, ranks)
        adversarial = [gather_stats(stats, ranks) for stats in adversarial]
        samples = concatenate_by_index(all_gather_arrays(samples, ranks))
        costs = all_gather_arrays({"passes": np.array([forward, backward]),
                                   "seconds": np.array([clean_time, attack_time])}, ranks)
        forward, backward = (int(sum(c["passes"][k] for c in costs)) for k in (0, 1))
        # Wall time of the slowest rank: the ranks ran side by side.
        clean_time, attack_time = (float(max(c["seconds"][k] for c in costs)) for k in (0, 1))
    return Streamed(clean_stats, adversarial, samples, forward, backward, clean_time, attack_time)


@dataclass
class Collected:
    """A whole split's outputs from one model, in data order: the sample ids and labels, clean
    logits, logits (and, when kept, inputs) per budget, and what they cost."""

    index: torch.Tensor
    y: torch.Tensor
    clean_logits: torch.Tensor
    adversarial_logits: list[torch.Tensor]
    adversarial_inputs: list[torch.Tensor] | None
    forward: int
    backward: int
    seconds: float


def collect(name: str, model: nn.Module, modality: Modality) -> Collected:
    """Every batch of ``modality``'s passes, concatenated: for the analyses that need the
    logits themselves (to fit calibrators or temperatures on them) rather than statistics."""
    batches = list(modality.passes(name, model))
    if not batches:
        raise InputError(f"data: expected at least one sample for model {name or 'the model'}, got none")

    budgets = range(len(batches[0].adversarial_logits))
    inputs = None
    if batches[0].adversarial_inputs is not None:
        inputs = [torch.cat([b.adversarial_inputs[k] for b in batches]) for k in budgets]
    return Collected(
        index=torch.cat([b.index for b in batches]),
        y=torch.cat([b.y for b in batches]),
        clean_logits=torch.cat([b.clean_logits for b in batches]),
        adversarial_logits=[torch.cat([b.adversarial_logits[k] for b in batches]) for k in budgets],
        adversarial_inputs=inputs,
        forward=sum(b.forward for b in batches),
        backward=sum(b.backward for b in batches),
        seconds=sum(b.clean_seconds + b.attack_seconds for b in batches),
    )
