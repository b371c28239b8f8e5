"""The digits reproduction of the illusion paper's Table 2, written into docs/illusion.md.

    python scripts/illusion_table.py [--out docs/illusion.md]

``digits-cnn`` is served at inference temperatures 1e-3 … 1e4 (its predictions never change)
and checked with :func:`advcal.analyses.illusion.check_illusion` (``full=True``) at ε = 0.1: the
served model's PGD-20 accuracy, then after ``cal`` (PGD through the NLL-fitted temperature)
and after ``opt`` (PGD through the temperature found by adversarial temperature
optimisation), with the verdict and what it cost. ``digits-cnn-at`` closes the table as the
genuinely robust control. About three minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import advcal
from advcal.analyses.illusion import check_illusion
from advcal.data import load_data
from advcal.models import TemperatureScaled, load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _sections import write_section  # a sibling folder of helpers, not a package

SERVING_TEMPERATURES = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4]
EPS, STEPS, SEED, SQUARE_QUERIES = 0.1, 20, 0, 300


def served_models() -> list[tuple[str, torch.nn.Module]]:
    """The table's rows: digits-cnn at every serving temperature, then the robust control."""
    models = [(f"digits-cnn served at T = {t:g}", TemperatureScaled(load_model("digits-cnn"), t))
              for t in SERVING_TEMPERATURES]
    models.append(("digits-cnn-at (adversarially trained)", load_model("digits-cnn-at")))
    return models


def row(name: str, model: torch.nn.Module, test: object, calibration: object) -> str:
    """One row of the table: the cheap checks and every check on one served model."""
    quick = check_illusion(model, test, calibration, EPS, steps=STEPS, seed=SEED)
    found = check_illusion(model, test, calibration, EPS, steps=STEPS, seed=SEED, full=True,
                           square_queries=SQUARE_QUERIES)
    checks = found.checks
    return (
        f"| {name} | {checks['served']['mean_confidence']:.3f} | {found.served_adv_accuracy:.3f} | "
        f"{checks['cal']['adv_accuracy']:.3f} (T = {checks['cal']['temperature']:.3g}) | "
        f"{checks['opt']['adv_accuracy']:.3f} (T = {checks['opt']['temperature']:.3g}, "
        f"{checks['opt']['search']['evaluations']} runs) | "
        f"{found.best_adv_accuracy:.3f} ({found.best_check}) | "
        f"{quick.verdict} ({quick.cost['runs_of_served_pgd']:.1f}) | {found.verdict} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/illusion.md"))
    args = parser.parse_args()
    test, calibration = load_data("digits", split="test"), load_data("digits", split="calibration")
    rows = []
    for name, model in served_models():
        rows.append(row(name, model, test, calibration))
        print(rows[-1])
    lines = [
        f"Made by `python scripts/illusion_table.py` (advcal {advcal.__version__}, "
        f"torch {torch.__version__}); "
        f"digits test split ({len(test)} images), calibration split ({len(calibration)}), L∞ ε = {EPS}, "
        f"PGD-{STEPS}, seed {SEED}, Square with {SQUARE_QUERIES} queries.",
        "",
        "| served model | mean confidence | PGD (served) | after cal | after opt | best of all checks | "
        "verdict of the cheap checks (cost in PGD runs) | verdict with every check |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
        *rows,
    ]
    write_section(args.out, "illusion_table", "\n".join(lines))
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
