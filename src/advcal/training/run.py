"""A training run: a recipe, calibration tracked every epoch, checkpoints, resume.

Every epoch, on a fixed validation subset: accuracy, ECE, Brier and NLL on clean inputs, under a
fresh PGD attack (per-sample seeds keyed on the epoch) and on a **frozen** adversarial
validation set crafted once at the start (against ``frozen_from``, by default the model as it
is before training), so epochs compare like with like. The log is ``log.csv`` (and
``training-report.html``, and TensorBoard when installed); the model, the
optimiser and the shuffling generator are checkpointed as safetensors (plus JSON) after every
epoch, atomically. ``resume=True`` continues a killed run from its last checkpoint and ends with
the weights and log of an uninterrupted run: each epoch's randomness (shuffling, dropout, the
training attack) is keyed on ``(seed, epoch)``, never on what ran before.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save as save_safetensors
from torch import nn

import advcal
from advcal._core.atomic import remove_stale_temporaries, write_bytes_atomic, write_json_atomic
from advcal._core.errors import ConfigError, InputError
from advcal._core.rng import torch_seeded
from advcal._core.tensor_files import read_safetensors, read_safetensors_metadata
from advcal._core.validation import check_choice, check_int, check_positive
from advcal.data import DataSource
from advcal.metrics import calibration_report
from advcal.models import frozen
from advcal.models.state import load_state, unique_state_dict
from advcal.training.inputs import (
    AdversarialInputs,
    TrainingSet,
    check_model_for,
    logits_of,
    perturb,
    training_set,
)
from advcal.training.recipes import (
    PreHeadTemperature,
    Recipe,
    classification_head,
    normalise_gradients,
    set_bn_frozen,
)
from advcal.training.report import tensorboard_writer, write_training_report

if TYPE_CHECKING:
    from advcal.text import TextDataset

CHECKPOINT, STATE, LOG = "checkpoint.safetensors", "checkpoint.json", "log.csv"
STATE_KEY = "advcal_checkpoint"  # the checkpoint's record, in its safetensors header
FROZEN_SET, REPORT = "frozen-validation.safetensors", "training-report.html"
REFERENCE = "reference.safetensors"  # the model as training began, for recipes that compare with it
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")
TRACKED = ("accuracy", "ece", "brier", "nll")
COLUMNS = ("epoch", "train_loss", "train_accuracy", "lr", "eps", "bn_frozen", "grad_norm",
           "pre_head_temperature", *(f"{where}_{m}" for where in ("clean", "adv", "frozen") for m in TRACKED),
           "seconds")


@dataclass
class TrainingRun:
    """What :func:`train` leaves: the trained model and one log row per epoch."""

    model: nn.Module
    log: list[dict[str, float]]
    folder: Path


def train(
    model: nn.Module,
    train_data: DataSource | TextDataset,
    validation: DataSource | TextDataset,
    recipe: Recipe,
    *,
    epochs: int,
    out: str | Path,
    batch_size: int = 64,
    lr: float = 3e-3,
    optimizer: str = "adam",
    schedule: str = "constant",
    warmup_epochs: float = 0.0,
    val_eps: float | None = None,
    val_steps: int = 10,
    frozen_from: nn.Module | None = None,
    resume: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainingRun:
    """Train ``model`` with ``recipe`` (Adam), tracking calibration every epoch, into ``out``.

    Args:
        model: the classifier (logits); with ``recipe.pre_head_temperature`` it is wrapped in
            :class:`~advcal.training.recipes.PreHeadTemperature` (the returned model).
        train_data, validation: the training split and the fixed validation subset: images
            (:class:`~advcal.data.DataSource`), or texts (:class:`~advcal.text.TextDataset`)
            for a :class:`~advcal.text.TextClassifier`, whose attacks (training and tracking)
            are PGD on the input embeddings with a per-token L2 ε
            (:func:`~advcal.training.inputs.perturb`).
        recipe: how to train (:class:`~advcal.training.recipes.Recipe`). ``ucat`` and ``fare``
            compare with a frozen copy of the model as the run starts, kept in
            ``reference.safetensors`` so that a resumed run compares with the same model.
        epochs, batch_size, lr: the schedule.
        optimizer: ``adam``, or ``sgd`` (momentum 0.9). Adam divides every step by a running
            gradient scale, which undoes most of ``gradnorm``'s rescaling; SGD does not.
        schedule, warmup_epochs: the learning rate per step (:func:`learning_rate`):
            ``constant``, or ``cosine`` decay to 0 over the run; both after a linear warm-up
            over the first ``warmup_epochs`` (may be fractional).
        out: the run's folder (log.csv, checkpoint.safetensors, checkpoint.json, run.json).
        val_eps, val_steps: the tracking attack (default ε: the recipe's).
        frozen_from: the model the frozen validation set is crafted against (default: this
            model before training).
        resume: continue from the checkpoint in ``out`` (refused if the recipe differs).
        on_epoch: called with each epoch's log row.
    """
    check_int(epochs, "epochs", 1)
    check_int(batch_size, "batch_size", 1)
    check_positive(lr, "lr")
    folder = Path(out)
    train_data, validation = training_set(train_data, "train_data"), training_set(validation, "validation")
    if train_data.is_text != validation.is_text:
        raise ConfigError("validation: expected the same kind of data as train_data (images or texts)")
    check_model_for(model, train_data)
    if recipe.pre_head_temperature:
        if train_data.is_text:
            raise ConfigError("pre_head_temperature: not available for text classifiers (their "
                              "temperature is the TextClassifier's own)")
        model = PreHeadTemperature(model)
    check_choice(optimizer, "optimizer", OPTIMIZERS)
    check_choice(schedule, "schedule", SCHEDULES)
    if not 0 <= warmup_epochs < epochs:
        raise ConfigError(f"warmup_epochs: expected a number in [0, epochs={epochs}), got {warmup_epochs!r}")
    trainable = _trainable_flags(model, recipe.head_only)
    optimiser = (torch.optim.Adam(model.parameters(), lr=lr) if optimizer == "adam"
                 else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    settings = {"advcal_version": advcal.__version__, "recipe": recipe.as_dict(), "epochs": epochs,
                "batch_size": batch_size, "lr": lr, "optimizer": optimizer,
                "schedule": schedule, "warmup_epochs": warmup_epochs, "val_eps": val_eps or recipe.eps,
                "val_steps": val_steps,
                "train": {"spec": train_data.name, "split": train_data.split, "n_samples": len(train_data)},
                "validation": {"spec": validation.name, "split": validation.split,
                               "n_samples": len(validation)}}
    start, log = 0, []
    remove_stale_temporaries(folder)  # of a run killed mid-write
    if (folder / CHECKPOINT).exists():
        if not resume:
            raise ConfigError(f"out: {folder} already holds a training run; pass resume to continue it, "
                              "or choose another folder")
        start, log = _restore(folder, model, optimiser, settings)
    elif resume and folder.exists() and any(folder.iterdir()) and not (folder / "run.json").exists():
        raise ConfigError(f"out: {folder} holds no checkpoint to resume")
    else:  # a fresh run (or one killed before its first checkpoint: its files are stale)
        (folder / FROZEN_SET).unlink(missing_ok=True)
        (folder / REFERENCE).unlink(missing_ok=True)
    write_json_atomic(folder / "run.json", settings)  # first: it marks the folder as this run's
    reference = _reference(model, folder / REFERENCE) if recipe.needs_reference else None
    board = tensorboard_writer(folder)
    tracker = _Tracker(validation, val_eps or recipe.eps, val_steps, recipe.seed,
                       frozen_from if frozen_from is not None else model, folder / FROZEN_SET)
    rates = _Rates(lr, schedule, warmup_epochs, epochs, steps_per_epoch=-(-len(train_data) // batch_size))
    for epoch in range(start, epochs):
        began = time.perf_counter()
        row = _epoch(model, optimiser, train_data, recipe, epoch, epochs, batch_size, rates, reference)
        row.update(tracker.evaluate(model, epoch))
        row["seconds"] = time.perf_counter() - began
        log.append(row)
        _checkpoint(folder, model, optimiser, epoch, log, settings)
        write_training_report(folder / REPORT, log, settings)
        if board is not None:
            for key in COLUMNS[1:]:
                board.add_scalar(key, row[key], epoch)
            board.flush()
        if on_epoch is not None:
            on_epoch(row)
    if board is not None:
        board.close()
    for parameter, flag in trainable.items():
        parameter.requires_grad_(flag)
    model.eval()
    return TrainingRun(model=model, log=log, folder=folder)


def _reference(model: nn.Module, path: Path) -> nn.Module:
    """A frozen copy of ``model`` as training began: made now and saved to ``path``, or, when a run
    resumes, read back from it (the model itself has moved on by then)."""
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    folder = path.parent
    if path.exists():
        load_state(reference, read_safetensors(path, "out"))
    else:
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, save_safetensors(unique_state_dict(reference)))
    return reference


def _trainable_flags(model: nn.Module, head_only: bool) -> dict[nn.Parameter, bool]:
    """With ``head_only``, turn off gradients outside the classification head; returns every
    parameter's own flag, restored when training ends."""
    flags = {parameter: parameter.requires_grad for parameter in model.parameters()}
    if head_only:
        head = set(classification_head(model, "head_only").parameters())
        for parameter in flags:
            parameter.requires_grad_(parameter in head and flags[parameter])
    return flags


def learning_rate(step: float, total: float, lr: float, schedule: str, warmup: float) -> float:
    """The learning rate at optimiser step ``step`` (0-based) of ``total``, warm-up ``warmup`` steps.

    The warm-up rises linearly to ``lr`` (the first step uses ``lr / warmup``); ``cosine`` then
    decays as ``lr · (1 + cos(π · progress)) / 2`` over the remaining steps. A pure function of
    the step, so a resumed run sets exactly the rates an uninterrupted one did.
    """
    if step < warmup:  # (a fractional warm-up's last step would overshoot lr without the min)
        return lr * min(1.0, (step + 1) / warmup)
    if schedule == "constant":
        return lr
    progress = (step - warmup) / max(total - warmup, 1.0)
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class _Rates:
    lr: float
    schedule: str
    warmup_epochs: float
    epochs: int
    steps_per_epoch: int

    def at(self, epoch: int, step: int) -> float:
        return learning_rate(epoch * self.steps_per_epoch + step, self.epochs * self.steps_per_epoch, self.lr,
                             self.schedule, self.warmup_epochs * self.steps_per_epoch)


def _epoch(
    model: nn.Module, optimiser: torch.optim.Optimizer, data: TrainingSet, recipe: Recipe, epoch: int,
    epochs: int, batch_size: int, rates: _Rates, reference: nn.Module | None,
) -> dict[str, float]:
    """One epoch of the recipe; its randomness (shuffle, dropout) is keyed on (seed, epoch)."""
    generator = torch.Generator().manual_seed(recipe.seed * 1_000_003 + epoch)
    order = torch.randperm(len(data), generator=generator)
    total_loss = total_correct = total_norm = 0.0
    steps = 0
    bn_frozen = recipe.frozen_bn(epoch, epochs)
    with torch_seeded(recipe.seed * 7919 + epoch):
        model.train()
        set_bn_frozen(model, bn_frozen)
        for step, batch in enumerate(order.split(batch_size)):
            x, y, index = data.take(batch)
            for group in optimiser.param_groups:
                group["lr"] = rates.at(epoch, step)
            optimiser.zero_grad()
            loss, logits = recipe.batch_loss(model, x, y, index + epoch * len(data), epoch, epochs, reference)
            loss.backward()
            if recipe.gradnorm:
                total_norm += normalise_gradients(model)
            optimiser.step()
            total_loss += loss.item() * len(batch)
            total_correct += float((logits.argmax(1) == y).sum())
            steps += 1
    model.eval()
    nan = float("nan")
    learned = isinstance(model, PreHeadTemperature)
    temperature = float(model.log_temperature.detach().exp()) if learned else nan
    return {"epoch": epoch, "train_loss": total_loss / len(data), "train_accuracy": total_correct / len(data),
            "lr": rates.at(epoch, steps - 1),
            "eps": recipe.eps_at(epoch, epochs) if recipe.name != "standard" else 0.0,
            "bn_frozen": float(bn_frozen), "grad_norm": total_norm / steps if recipe.gradnorm else nan,
            "pre_head_temperature": temperature}


class _Tracker:
    """Calibration on the validation subset: clean, fresh PGD, and a frozen adversarial set.

    The frozen set holds adversarial images; for texts, the perturbation of each token's input
    embedding, added to the embeddings of the model being evaluated (an embedding layer that is
    trained moves the clean point, so stored adversarial embeddings would go stale).
    """

    def __init__(self, data: TrainingSet, eps: float, steps: int, seed: int, frozen_from: nn.Module,
                 path: Path):
        self.data, self.eps, self.steps, self.seed = data, eps, steps, seed
        if path.exists():  # a resumed run: the set crafted when the run began
            self.frozen = read_safetensors(path, "out")
        else:
            self.frozen = self._craft_frozen(frozen_from)
            write_bytes_atomic(path, save_safetensors({k: v.contiguous() for k, v in self.frozen.items()}))

    def _attack(self, model: nn.Module, seed: int) -> AdversarialInputs:
        with frozen(model):
            return perturb(model, self.data.inputs, self.data.y, self.data.index, eps=self.eps,
                           steps=self.steps, alpha=None, seed=seed)

    def _craft_frozen(self, model: nn.Module) -> dict[str, torch.Tensor]:
        adversarial = self._attack(model, self.seed)
        if not isinstance(adversarial, tuple):
            return {"x": adversarial}
        with frozen(model), torch.no_grad():
            clean = model.embed(self.data.inputs)[0]
        return {"delta": (adversarial[0] - clean).detach(), "mask": adversarial[1]}

    def _frozen_inputs(self, model: nn.Module) -> AdversarialInputs:
        if "x" in self.frozen:
            return self.frozen["x"]
        inputs_embeds, attention_mask = model.embed(self.data.inputs)
        return inputs_embeds + self.frozen["delta"], attention_mask

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, float]:
        fresh = self._attack(model, self.seed * 1_000_003 + 10_000 + epoch)
        with frozen(model), torch.no_grad():
            logits = {where: logits_of(model, inputs) for where, inputs in
                      (("clean", self.data.inputs), ("adv", fresh), ("frozen", self._frozen_inputs(model)))}
        row = {}
        for where, values in logits.items():
            report = calibration_report(values.detach(), self.data.y)
            row.update({f"{where}_{m}": float(report[m]) for m in TRACKED})
        return row


def _checkpoint(folder: Path, model: nn.Module, optimiser: torch.optim.Optimizer, epoch: int,
                log: list[dict[str, float]], settings: dict[str, object]) -> None:
    """Weights and optimiser state (safetensors), then the log, then the state naming them."""
    tensors = {f"model.{k}": v for k, v in unique_state_dict(model).items()}
    state = optimiser.state_dict()
    for pid, slots in state["state"].items():
        for name, value in slots.items():
            tensors[f"optim.{pid}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    record = {"epoch": epoch, "settings": settings, "param_groups": state["param_groups"],
              "log": [{k: _json_number(row[k]) for k in COLUMNS} for row in log]}
    # The checkpoint carries its own record, so that one rename commits an epoch: a kill after
    # it and before the copies below resumes from this epoch, not from weights and a record of
    # two different epochs.
    metadata = {STATE_KEY: json.dumps(record, allow_nan=False)}
    write_bytes_atomic(folder / CHECKPOINT, save_safetensors(tensors, metadata=metadata))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: row[k] for k in COLUMNS} for row in log)
    write_bytes_atomic(folder / LOG, buffer.getvalue().encode("utf-8"))
    write_json_atomic(folder / STATE, record)  # the same record, for people and older advcal


def _json_number(value: float) -> float | None:
    return None if value != value else value  # NaN is not JSON


def _checkpoint_record(folder: Path) -> dict[str, object]:
    """The record of the last committed epoch: the checkpoint's own (checkpoint.json for runs
    checkpointed before checkpoints carried it)."""
    metadata = read_safetensors_metadata(folder / CHECKPOINT, "out")
    try:
        if STATE_KEY in metadata:
            return json.loads(metadata[STATE_KEY])
        return json.loads((folder / STATE).read_text("utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"out: {folder} holds a checkpoint whose record cannot be read ({error}); "
                         "delete the folder to start again") from None


def _restore(folder: Path, model: nn.Module, optimiser: torch.optim.Optimizer,
             settings: dict[str, object]) -> tuple[int, list[dict[str, float]]]:
    state = _checkpoint_record(folder)
    resumable = ("recipe", "epochs", "optimizer", "lr", "schedule", "warmup_epochs")
    # Runs checkpointed before schedules existed ran at a constant rate without warm-up.
    saved = {"schedule": "constant", "warmup_epochs": 0.0, **state["settings"]}
    # nor the recipe fields added since (their defaults are what those runs did)
    saved["recipe"] = {**{f.name: f.default for f in fields(Recipe)}, **saved["recipe"]}
    if any(saved.get(key) != settings[key] for key in resumable):
        raise ConfigError(f"out: {folder} holds a run with another recipe or schedule; it cannot be resumed "
                          "with these options")
    tensors = read_safetensors(folder / CHECKPOINT, "out")
    load_state(model, {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            slots.setdefault(int(pid), {})[name] = value
    optimiser.load_state_dict({"state": slots, "param_groups": state["param_groups"]})
    log = [{k: float("nan") if v is None else v for k, v in row.items()} for row in state["log"]]
    return int(state["epoch"]) + 1, log
