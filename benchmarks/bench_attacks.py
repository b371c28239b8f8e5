"""advcal's PGD against the floor and against torchattacks, foolbox and ART, in one run.

    python benchmarks/bench_attacks.py [--steps 10 20] [--repeats 3] [--out docs/benchmarks.md]

The floor is ``steps`` plain forward+backward passes with respect to the input on the same
model and batch (parameters frozen, as advcal's guard freezes them). Each tool runs PGD-L∞
with ε = 8/255, step 2/255 and a random start; peers get the model as a user would hand it
over (parameters with ``requires_grad=True``). foolbox and ART are timed only if they import.
An ε sweep of 3 values in one advcal call is timed against 3 separate advcal calls.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

import advcal
from _sections import cpu_name, write_section
from advcal._core.torchvision_compat import ensure_torchvision_importable
from advcal.attacks import PGD

EPS, ALPHA, BATCH, SEED = 8 / 255, 2 / 255, 256, 0


def make_model() -> nn.Module:
    """A CIFAR-sized CNN with BatchNorm (about 0.3M parameters), deterministic weights."""
    with torch.random.fork_rng():
        torch.manual_seed(SEED)

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)
            )

        model = nn.Sequential(block(3, 32), block(32, 64), block(64, 128), nn.Flatten(), nn.Linear(2048, 10))
    return model.eval()


def timed_round_robin(runs: dict[str, Callable[[], object]], repeats: int) -> list[tuple[str, float]]:
    """Median time of each run over ``repeats`` rounds, the runs interleaved within a round.

    Interleaving spreads the machine's drift (frequency, other load) over every tool alike.
    """
    for run in runs.values():
        run()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return [(name, statistics.median(values)) for name, values in times.items()]


def floor_passes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    """``steps`` forward+backward passes with respect to the input: what PGD cannot avoid."""
    flags = [p.requires_grad_(False) for p in model.parameters()]
    try:
        for _ in range(steps):
            x_in = x.detach().requires_grad_(True)
            loss = nn.functional.cross_entropy(model(x_in), y, reduction="sum")
            torch.autograd.grad(loss, x_in)
    finally:
        for p in flags:
            p.requires_grad_(True)


def peers(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> dict[str, Callable[[], object]]:
    found: dict[str, Callable[[], object]] = {}
    ensure_torchvision_importable()  # torchattacks, foolbox and ART may import torchvision
    try:
        import torchattacks

        attack = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=steps, random_start=True)
        found["torchattacks PGD"] = lambda: attack(x, y)

        def with_logits() -> torch.Tensor:
            # What a calibration audit needs and torchattacks does not return: the logits at
            # the adversarial inputs (one more forward pass).
            x_adv = attack(x, y)
            with torch.no_grad():
                return model(x_adv)

        found["torchattacks PGD + forward pass for the logits"] = with_logits
    except ImportError:
        pass
    try:
        import foolbox

        fmodel = foolbox.PyTorchModel(model, bounds=(0, 1))
        fattack = foolbox.attacks.LinfPGD(abs_stepsize=ALPHA, steps=steps, random_start=True)
        found["foolbox LinfPGD"] = lambda: fattack(fmodel, x, y, epsilons=[EPS])
    except ImportError:
        pass
    try:
        from art.attacks.evasion import ProjectedGradientDescentPyTorch
        from art.estimators.classification import PyTorchClassifier

        classifier = PyTorchClassifier(
            model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10,
            clip_values=(0.0, 1.0), device_type="cpu",
        )
        art_attack = ProjectedGradientDescentPyTorch(
            classifier, norm=np.inf, eps=EPS, eps_step=ALPHA, max_iter=steps, num_random_init=1,
            batch_size=len(x), verbose=False,
        )
        x_np, y_np = x.numpy(), y.numpy()
        found["ART ProjectedGradientDescentPyTorch"] = lambda: art_attack.generate(x_np, y_np)
    except ImportError:
        pass
    return found


def bench(steps: int, repeats: int) -> list[tuple[str, float]]:
    model = make_model()
    generator = torch.Generator().manual_seed(SEED)
    x = torch.rand(BATCH, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (BATCH,), generator=generator)
    ours = PGD(eps=EPS, steps=steps, alpha=ALPHA)
    with torch.no_grad():
        clean = model(x)
    sweep = PGD(eps=[2 / 255, 4 / 255, 8 / 255], steps=steps, alpha=ALPHA)
    singles = [PGD(eps=e, steps=steps, alpha=ALPHA) for e in (2 / 255, 4 / 255, 8 / 255)]
    runs: dict[str, Callable[[], object]] = {
        "floor: forward+backward w.r.t. the input, x steps": lambda: floor_passes(model, x, y, steps),
        "advcal PGD": lambda: ours(model, x, y),
        "advcal PGD, clean logits given (as the audit calls it)":
            lambda: ours(model, x, y, clean_logits=clean),
        **peers(model, x, y, steps),
        "advcal PGD, sweep of 3 eps in one call": lambda: sweep(model, x, y),
        "advcal PGD, 3 separate calls": lambda: [a(model, x, y) for a in singles],
    }
    return timed_round_robin(runs, repeats)


def render(results: dict[int, list[tuple[str, float]]], repeats: int) -> str:
    versions = [f"advcal {advcal.__version__}", f"torch {torch.__version__}"]
    for module in ("torchattacks", "foolbox", "art"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            versions.append(f"{module} not installed")
    lines = [
        "## Attacks",
        "",
        f"Made by `python benchmarks/bench_attacks.py` (median of {repeats} interleaved rounds after "
        "a warm-up).",
        "",
        f"- Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}",
        f"- Versions: {', '.join(versions)}",
        f"- Model: a 3-block CNN with BatchNorm on a batch of {BATCH} 3x32x32 inputs; PGD-L∞, "
        "ε = 8/255, step 2/255, random start. *ratio* = time / floor.",
        "",
    ]
    for steps, rows in results.items():
        floor = rows[0][1]
        lines += [f"### {steps} steps", "", "| what | seconds | ratio to floor |", "| --- | ---: | ---: |"]
        for name, seconds in rows:
            lines.append(f"| {name} | {seconds:.3f} | {seconds / floor:.3f} |")
        lines.append("")
    lines += [
        "advcal's PGD-k makes k forward+backward passes plus two forward passes: one at the clean "
        "inputs (shared by every ε of a call; it gives the clean logits and checks that the model "
        "returns logits) and one at the final iterate, whose logits are what a calibration audit "
        "measures. On this model a forward pass costs about half a forward+backward (max-pooling "
        "is expensive forward), so the two cost about 1/k of the floor; with the clean logits "
        "given, as the audit calls it, one remains. Peers return no logits: a user who wants "
        "them pays that final forward pass on top of the peer's time (the row with the forward "
        "pass for the logits is the like-for-like comparison). On this shared 2-core machine, "
        "differences below about 10% are within run-to-run noise (a tool doing strictly more "
        "work can time faster than the floor).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    results = {}
    for steps in args.steps:
        results[steps] = bench(steps, args.repeats)
        floor = results[steps][0][1]
        for name, seconds in results[steps]:
            print(f"steps={steps:3d}  {name:<55} {seconds:8.3f}s  ratio {seconds / floor:.3f}")
    write_section(args.out, "bench_attacks", render(results, args.repeats))
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
