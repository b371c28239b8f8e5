"""advcal's AutoAttack against the original AutoAttack code (pyautoattack 0.2.0), in one run.

    python benchmarks/bench_autoattack.py [--n 500] [--eps 0.1] [--out docs/benchmarks.md]

Both run the standard L∞ ensemble (APGD-CE, APGD-T, FAB-T, Square-5000; seed 0) on the same
first ``n`` images of scikit-learn's digits (advcal's ``digits`` source, split ``all``), against
the shipped standard and adversarially trained CNNs, in one batch. Reported: robust accuracy,
the samples one breaks and the other leaves standing, advcal's forward/backward passes, and the
wall time of each (one run each; the time ratio is advcal / original). The table is the
comparison that docs/attacks.md quotes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from _sections import cpu_name, write_section
from advcal.attacks import get_attack
from advcal.data import load_data
from advcal.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    from pyautoattack import AutoAttack as Original

    data = load_data("digits", split="all")
    x, y, index = data.x[: args.n], data.y[: args.n], data.index[: args.n]
    rows = []
    for name in ("digits-cnn", "digits-cnn-at"):
        model = load_model(name)
        start = time.perf_counter()
        ours = get_attack("autoattack", eps=args.eps, seed=0)(model, x, y, index=index)
        ours_seconds = time.perf_counter() - start
        start = time.perf_counter()
        with torch.random.fork_rng():
            x_adv, _ = Original(model, norm="Linf", eps=args.eps, version="standard", seed=0
                                ).run_standard_evaluation(x, y, batch_size=len(x))
        theirs_seconds = time.perf_counter() - start
        with torch.no_grad():
            theirs = model(x_adv).argmax(1) == y
        ours_robust = ~ours.success
        rows.append(f"| {name} | {ours_robust.double().mean():.4f} | {theirs.double().mean():.4f} | "
                    f"{int((ours_robust & ~theirs).sum())} | {int((~ours_robust & theirs).sum())} | "
                    f"{ours.forward_passes} / {ours.backward_passes} | {ours_seconds:.1f} | "
                    f"{theirs_seconds:.1f} | {ours_seconds / theirs_seconds:.2f} |")
        print(rows[-1], flush=True)
    body = "\n".join([
        "## AutoAttack against the original code",
        "",
        f"`python benchmarks/bench_autoattack.py --n {args.n} --eps {args.eps:g}` on {cpu_name()}: the "
        "standard L∞ ensemble, seed 0, the first "
        f"{args.n} digits (split `all`), one batch. *only advcal / only original*: samples robust "
        "under one and broken by the other.",
        "",
        "| model | advcal robust acc. | original robust acc. | robust only under advcal | robust only under "
        "the original | advcal passes (fwd / bwd) | advcal s | original s | time ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ])
    write_section(args.out, "autoattack", body)
    print(f"Wrote the autoattack section of {args.out}")


if __name__ == "__main__":
    main()
