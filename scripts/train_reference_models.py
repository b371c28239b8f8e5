"""Make advcal's shipped reference models from a fixed seed.

    python scripts/train_reference_models.py [--only NAME[,NAME...]] [--threads N]

- ``digits-cnn`` (standard training) and ``digits-cnn-at`` (PGD adversarial training, L∞
  ε = 0.1, 7 steps of 0.025, random start): 30 epochs of Adam on the ``digits`` training split
  with the core loop (:func:`advcal.training.train_classifier`); about a minute.
- ``fashion-cnn`` (standard training) and ``fashion-cnn-at`` (PGD adversarial training, L∞
  ε = 0.1, 5 steps, ε ramped up over the first 20%): Adam with a cosine schedule on the 55,000
  images of the ``fashion-mnist`` training split, through :func:`advcal.training.train`, which
  also tracks calibration every epoch (the log goes into the model's JSON record). Needs
  Debian's ``dataset-fashion-mnist``; about 15 and 60 minutes on one CPU core.

Each model is written to ``src/advcal/models/weights/<name>.safetensors`` with ``<name>.json``:
the recipe, seed, versions, accuracy on the whole test split clean and under PGD-20 at the
training ε, and the sha256 of the weights. Deterministic on a given machine and torch version.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import torch
from safetensors.torch import save_file
from torch import nn

import advcal
from advcal.attacks import PGD
from advcal.data import load_data
from advcal.models import DigitsCNN, FashionCNN
from advcal.models.loading import BUILTIN_MODELS, WEIGHTS_DIR
from advcal.training import Recipe, train, train_classifier

SEED = 0
EVAL_ATTACK = {"steps": 20, "alpha": 0.01}  # PGD-20 at the training ε
CHECK_LIMIT = 500  # the test suite re-measures the first 500 test images of the stratified order


@dataclass(frozen=True)
class Plan:
    """How one reference model is made."""

    architecture: Callable[[], nn.Module]
    data: str
    recipe: Recipe
    epochs: int
    optimiser: dict[str, object]


PLANS = {
    "digits-cnn": Plan(DigitsCNN, "digits", Recipe("standard", seed=SEED), 30,
                       {"optimizer": "adam", "lr": 3e-3, "batch_size": 64, "loop": "train_classifier"}),
    "digits-cnn-at": Plan(DigitsCNN, "digits", Recipe("pgd-at", eps=0.1, steps=7, seed=SEED), 30,
                          {"optimizer": "adam", "lr": 3e-3, "batch_size": 64, "loop": "train_classifier"}),
    "fashion-cnn": Plan(FashionCNN, "fashion-mnist", Recipe("standard", seed=SEED), 6,
                        {"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "schedule": "cosine",
                         "loop": "train"}),
    "fashion-cnn-at": Plan(FashionCNN, "fashion-mnist", Recipe("pgd-at", eps=0.1, steps=5, eps_warmup=0.2,
                                                               seed=SEED), 5,
                           {"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "schedule": "cosine",
                            "loop": "train"}),
}


def measure(model: nn.Module, data: str, eps: float, limit: int | None = None) -> tuple[float, float]:
    """Clean and PGD-20 accuracy on the test split (its first ``limit`` images when given)."""
    test = load_data(data, split="test", limit=limit)
    with torch.no_grad():
        clean = float((model(test.x).argmax(1) == test.y).float().mean())
    attack = PGD(eps=eps, seed=SEED, **EVAL_ATTACK)
    return clean, attack(model, test.x, test.y, index=test.index).robust_accuracy


def make(name: str, plan: Plan) -> dict[str, object]:
    """Train ``name`` by its plan, save its weights, and return its record."""
    train_data = load_data(plan.data, split="train")
    with torch.random.fork_rng():
        torch.manual_seed(SEED)  # weight initialisation
        model = plan.architecture()
    settings = dict(plan.optimiser)
    log: list[dict[str, float]] = []
    if settings.pop("loop") == "train_classifier":
        # The digits models predate advcal.training.train; this loop made the shipped weights.
        # PGD's default step for 7 steps at ε = 0.1 is 0.025.
        recipe = plan.recipe
        trainer = None if recipe.name == "standard" else PGD(eps=recipe.eps, steps=recipe.steps, alpha=0.025,
                                                              seed=SEED)
        epochs = train_classifier(model, train_data.x, train_data.y, epochs=plan.epochs, seed=SEED,
                                  attack=trainer, lr=settings["lr"], batch_size=settings["batch_size"])
        final_loss = epochs[-1].loss
    else:
        validation = load_data(plan.data, split="calibration", limit=512)
        with tempfile.TemporaryDirectory() as folder:
            run = train(model, train_data, validation, plan.recipe, epochs=plan.epochs, out=folder,
                        on_epoch=lambda row: print(f"  {name} epoch {int(row['epoch'])}: {row}", flush=True),
                        **settings)
        model, log = run.model, run.log
        final_loss = log[-1]["train_loss"]
    model.eval()
    path = WEIGHTS_DIR / BUILTIN_MODELS[name].weights
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    eps = plan.recipe.eps
    clean, robust = measure(model, plan.data, eps)
    checked = measure(model, plan.data, eps, CHECK_LIMIT)
    record = {
        "name": name,
        "description": BUILTIN_MODELS[name].description,
        "advcal_version": advcal.__version__,
        "torch_version": torch.__version__,
        "data": f"{plan.data} (train split, {len(train_data)} images)",
        "seed": SEED,
        "epochs": plan.epochs,
        "recipe": plan.recipe.as_dict(),
        "optimiser": plan.optimiser,
        "final_train_loss": final_loss,
        "test_accuracy": clean,
        "test_robust_accuracy": {"attack": "pgd", "eps": eps, **EVAL_ATTACK, "value": robust},
        "check": {"limit": CHECK_LIMIT, **dict(zip(("test_accuracy", "test_robust_accuracy"), checked,
                                                   strict=True))},
        "training_log": log,
        "weights_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "command": f"python scripts/train_reference_models.py --only {name}",
    }
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{name}: test accuracy {clean:.3f}, PGD-20 (ε = {eps}) accuracy {robust:.3f} -> {path}")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PLANS), help="models to make (comma-separated)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(names) - set(PLANS))
    if unknown:
        parser.error(f"--only: unknown model(s) {', '.join(unknown)}; expected some of {', '.join(PLANS)}")
    for name in names:
        make(name, PLANS[name])


if __name__ == "__main__":
    main()
