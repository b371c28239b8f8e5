"""The reproductions of docs/training.md: recipes and calibration, high temperature.

    python scripts/training_study.py [--epochs 10] [--out docs/training.md]
    python scripts/training_study.py --data fashion-mnist --train-limit 5000 --epochs 3 \
        --eval-steps 10 --parts recipes

Trains ``DigitsCNN`` from seed 0 on the digits training split (1,078 images) with every recipe
(± BatchNorm freeze for the last 20%, ± pre-head temperature), then high-temperature PGD-AT at
T ∈ {1, 10, 100, 200} ± gradient normalisation, and measures on the whole digits test split
(359 images): clean and PGD-20 (ε = 0.1) accuracy and ECE; for the temperature study also,
after test-time temperature calibration (the illusion check's ``cal``), APGD-DLR and Square —
attacks not used in training — and the illusion verdict. About 10 minutes on 2 CPU cores.

With ``--data fashion-mnist`` the same recipes table is made with ``FashionCNN`` on the first
``--train-limit`` images of the stratified Fashion-MNIST training split (what fits in CPU time)
and scored on the whole 10,000-image test set (about an hour on one core).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

import advcal
from advcal.analyses.illusion import check_illusion
from advcal.attacks import APGD, PGD, Square
from advcal.calibration import TemperatureScaling
from advcal.data import load_data
from advcal.metrics import calibration_report
from advcal.models import DigitsCNN, FashionCNN
from advcal.training import Recipe, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _sections import write_section  # a sibling folder of helpers, not a package

EPS, TRAIN_STEPS, SEED = 0.1, 5, 0
SGD_LR = 0.05
ARCHITECTURES = {"digits": DigitsCNN, "fashion-mnist": FashionCNN}
# Set from the command line: the data, the training subset and the evaluation attack's steps.
DATA, TRAIN_LIMIT, EVAL_STEPS = "digits", None, 20
RECIPES = ["standard", "pgd-at", "trades", "fgsm-rs"]


def fit(recipe: Recipe, epochs: int, optimizer: str = "adam", lr: float = 3e-3) -> torch.nn.Module:
    train_data = load_data(DATA, split="train", limit=TRAIN_LIMIT)
    validation = load_data(DATA, split="calibration", limit=120)
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        model = ARCHITECTURES[DATA]()
    with tempfile.TemporaryDirectory() as folder:
        return train(model, train_data, validation, recipe, epochs=epochs, out=folder, optimizer=optimizer,
                     lr=lr).model


def scores(model: torch.nn.Module, attack: object | None = None) -> tuple[float, float, float]:
    """Accuracy, ECE and mean confidence on the test split, clean or under ``attack``."""
    test = load_data(DATA, split="test")
    with torch.no_grad():
        logits = model(test.x) if attack is None else None
    if attack is not None:
        logits = attack(model, test.x, test.y, index=test.index).logits
    report = calibration_report(logits.detach(), test.y)
    return report["accuracy"], report["ece"], report["confidence_mean"]


def recipes_table(epochs: int) -> list[str]:
    lines = ["| recipe | BN freeze | pre-head T | clean acc | clean ECE | "
             f"PGD-{EVAL_STEPS} acc | PGD-{EVAL_STEPS} ECE |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for name in RECIPES:
        for freeze in (0.0, 0.2):
            for head in (False, True):
                model = fit(Recipe(name, eps=EPS, steps=TRAIN_STEPS, freeze_bn_last=freeze,
                                   pre_head_temperature=head, seed=SEED), epochs)
                clean, adv = scores(model), scores(model, PGD(eps=EPS, steps=EVAL_STEPS, seed=SEED))
                lines.append(f"| {name} | {'yes' if freeze else 'no'} | {'yes' if head else 'no'} | "
                             f"{clean[0]:.3f} | {clean[1]:.3f} | {adv[0]:.3f} | {adv[1]:.3f} |")
                print(lines[-1], flush=True)
    return lines


def after_calibration(model: torch.nn.Module) -> tuple[TemperatureScaling, torch.nn.Module, str]:
    """The NLL-fitted temperature, the model served through it, and the illusion verdict."""
    calibration = load_data(DATA, split="calibration")
    with torch.no_grad():
        calibrator = TemperatureScaling().fit(model(calibration.x), calibration.y)
    verdict = check_illusion(model, load_data(DATA, split="test"), calibration, EPS).verdict
    return calibrator, calibrator.wrap(model), verdict


def temperature_table(epochs: int) -> list[str]:
    lines = ["| training T | gradnorm | clean mean confidence | PGD-20 acc (served) | cal T | APGD-DLR acc "
             "(after cal) | Square acc (after cal) | illusion verdict |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for temperature in (1.0, 10.0, 100.0, 200.0):
        for gradnorm in (False, True):
            model = fit(Recipe("pgd-at", eps=EPS, steps=TRAIN_STEPS, train_temperature=temperature,
                               gradnorm=gradnorm, seed=SEED), epochs)
            calibrator, calibrated, verdict = after_calibration(model)
            served = scores(model, PGD(eps=EPS, steps=20, seed=SEED))
            dlr = scores(calibrated, APGD(eps=EPS, steps=20, seed=SEED, loss="dlr"))
            square = scores(calibrated, Square(eps=EPS, queries=300, seed=SEED))
            lines.append(f"| {temperature:g} | {'yes' if gradnorm else 'no'} | {scores(model)[2]:.3f} | "
                         f"{served[0]:.3f} | {calibrator.temperature:.3g} | {dlr[0]:.3f} | {square[0]:.3f} | "
                         f"{verdict} |")
            print(lines[-1], flush=True)
    return lines


def gradnorm_table(epochs: int) -> list[str]:
    """Gradient normalisation under SGD (which, unlike Adam, keeps the rescaled step)."""
    lines = ["| recipe | gradnorm | clean mean confidence | clean ECE | PGD-20 acc (served) | APGD-DLR acc "
             "(after cal) | illusion verdict |", "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for name in ("standard", "pgd-at"):
        for gradnorm in (False, True):
            model = fit(Recipe(name, eps=EPS, steps=TRAIN_STEPS, gradnorm=gradnorm, seed=SEED), epochs,
                        optimizer="sgd", lr=SGD_LR)
            _, calibrated, verdict = after_calibration(model)
            clean = scores(model)
            served = scores(model, PGD(eps=EPS, steps=20, seed=SEED))
            dlr = scores(calibrated, APGD(eps=EPS, steps=20, seed=SEED, loss="dlr"))
            lines.append(f"| {name} | {'yes' if gradnorm else 'no'} | {clean[2]:.3f} | {clean[1]:.3f} | "
                         f"{served[0]:.3f} | {dlr[0]:.3f} | {verdict} |")
            print(lines[-1], flush=True)
    return lines


def main() -> None:
    global DATA, TRAIN_LIMIT, EVAL_STEPS, RECIPES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(ARCHITECTURES), default="digits")
    parser.add_argument("--train-limit", type=int, default=None, help="train on this many images")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--eval-steps", type=int, default=20,
                        help="steps of the PGD the recipes are scored by")
    parser.add_argument("--recipes", default=",".join(RECIPES),
                        help="recipes of the recipes table (comma-separated; several processes can "
                             "share the table's rows)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=Path("docs/training.md"))
    parser.add_argument("--parts", default="recipes,temperature,gradnorm",
                        help="which tables to remake (comma-separated)")
    args = parser.parse_args()
    DATA, TRAIN_LIMIT, EVAL_STEPS = args.data, args.train_limit, args.eval_steps
    RECIPES = args.recipes.split(",")
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    train_data, test = load_data(DATA, split="train", limit=TRAIN_LIMIT), load_data(DATA, split="test")
    command = " ".join(["python scripts/training_study.py", *sys.argv[1:]])
    head = (f"Made by `{command}` (advcal {advcal.__version__}, torch {torch.__version__}): "
            f"{ARCHITECTURES[DATA].__name__} from seed {SEED}, {args.epochs} epochs of Adam "
            f"(lr 3e-3, batch 64) on {len(train_data):,} {DATA} training images; training attacks at "
            f"ε = {EPS} with {TRAIN_STEPS} steps; scores on the {len(test):,} test images.")
    tables = {"recipes": recipes_table, "temperature": temperature_table, "gradnorm": gradnorm_table}
    suffix = "" if DATA == "digits" else "_" + DATA.replace("-", "_")
    for part in parts:
        write_section(args.out, f"training_{part}{suffix}", "\n".join([head, "", *tables[part](args.epochs)]))
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
