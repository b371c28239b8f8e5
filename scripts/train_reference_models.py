"""Make advcal's shipped reference models from a fixed seed.

    python scripts/train_reference_models.py

Trains ``digits-cnn`` (standard training) and ``digits-cnn-at`` (PGD adversarial training,
L∞ ε = 0.1, 7 steps of 0.025, random start) on the ``digits`` training split, and writes
``src/advcal/models/weights/<name>.safetensors`` plus ``<name>.json`` (recipe, seed, accuracy
on the test split clean and under PGD, sha256 of the weights). Deterministic on a given
machine and torch version; takes about a minute on 2 CPU cores.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

import advcal
from advcal.attacks import PGD
from advcal.data import load_data
from advcal.models import DigitsCNN
from advcal.models.loading import BUILTIN_MODELS, WEIGHTS_DIR
from advcal.training import train_classifier

SEED = 0
EPOCHS = 30
TRAIN_ATTACK = {"eps": 0.1, "steps": 7, "alpha": 0.025}
EVAL_ATTACK = {"eps": 0.1, "steps": 20, "alpha": 0.01}


def main() -> None:
    train = load_data("digits", split="train")
    test = load_data("digits", split="test")
    recipes = {"digits-cnn": None, "digits-cnn-at": PGD(**TRAIN_ATTACK, seed=SEED)}
    for name, attack in recipes.items():
        with torch.random.fork_rng():
            torch.manual_seed(SEED)  # weight initialisation
            model = DigitsCNN()
        logs = train_classifier(model, train.x, train.y, epochs=EPOCHS, seed=SEED, attack=attack)
        path = WEIGHTS_DIR / BUILTIN_MODELS[name].weights
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        clean = float((model(test.x).argmax(1) == test.y).float().mean())
        robust = PGD(**EVAL_ATTACK, seed=SEED)(model, test.x, test.y, index=test.index).robust_accuracy
        record = {
            "name": name,
            "description": BUILTIN_MODELS[name].description,
            "advcal_version": advcal.__version__,
            "torch_version": torch.__version__,
            "data": "digits (train split)",
            "seed": SEED,
            "epochs": EPOCHS,
            "optimiser": "Adam, lr 3e-3, batch 64",
            "train_attack": None if attack is None else {"attack": "pgd", **TRAIN_ATTACK},
            "final_train_loss": logs[-1].loss,
            "test_accuracy": clean,
            "test_robust_accuracy": {"attack": "pgd", **EVAL_ATTACK, "value": robust},
            "weights_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "command": "python scripts/train_reference_models.py",
        }
        Path(path.with_suffix(".json")).write_text(json.dumps(record, indent=2) + "\n")
        print(f"{name}: test accuracy {clean:.3f}, PGD(eps=0.1) accuracy {robust:.3f} -> {path}")


if __name__ == "__main__":
    main()
