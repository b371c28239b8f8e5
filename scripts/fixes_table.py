"""The fixes tables of docs/calibration.md: every calibrator, fitted three ways, attacked two ways.

    python scripts/fixes_table.py [--out docs/calibration.md]

For ``digits-cnn`` and ``digits-cnn-at``: :func:`advcal.calibration.evaluate_fixes` with the
default audit's ε sweep (0.05, 0.1, 0.2), PGD-20, seed 0, calibrators fitted on the digits
calibration split and scored on the test split. About a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import advcal
from advcal.analyses.fixes import evaluate_fixes
from advcal.data import load_data
from advcal.models import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _sections import write_section  # a sibling folder of helpers, not a package

EPSILONS, STEPS, SEED = [0.05, 0.1, 0.2], 20, 0


def table(name: str) -> list[str]:
    calibration, test = load_data("digits", split="calibration"), load_data("digits", split="test")
    found = evaluate_fixes(load_model(name), calibration, test, EPSILONS, attack_params={"steps": STEPS},
                           seed=SEED)
    conditions = [f"eps={eps:g}" for eps in EPSILONS]
    lines = [f"### {name}", "",
             "| fix | clean ECE | " + " | ".join(f"{c} frozen" for c in conditions) + " | "
             + " | ".join(f"{c} adaptive" for c in conditions) + " | clean NLL | holds | helps |",
             "| --- " + "| ---: " * (1 + 2 * len(conditions) + 1) + "| --- | --- |"]

    def row(label: str, figures: dict, adaptive: dict, holds: str, helps: str) -> str:
        cells = [f"{figures['clean']['ece']:.3f}", *(f"{figures[c]['ece']:.3f}" for c in conditions),
                 *(f"{adaptive[c]['ece']:.3f}" for c in conditions), f"{figures['clean']['nll']:.3f}"]
        return f"| {label} | " + " | ".join(cells) + f" | {holds} | {helps} |"

    lines.append(row("none", found.baseline, found.baseline, "", ""))
    for fix in found.fixes:
        verdicts = ("yes" if fix.holds else "no", "yes" if fix.helps else "no")
        lines.append(row(fix.name, fix.metrics["frozen"], fix.metrics["adaptive"], *verdicts))
    lines += ["", *(f"- `{flag['code']}`: {flag['message']}" for flag in found.flags), ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/calibration.md"))
    args = parser.parse_args()
    lines = [f"Made by `python scripts/fixes_table.py` (advcal {advcal.__version__}, "
             f"torch {torch.__version__}): "
             f"PGD-{STEPS} at ε {', '.join(map(str, EPSILONS))}, seed {SEED}; ECE with 15 bins.", ""]
    for name in ("digits-cnn", "digits-cnn-at"):
        lines += table(name)
    write_section(args.out, "fixes_table", "\n".join(lines))
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
