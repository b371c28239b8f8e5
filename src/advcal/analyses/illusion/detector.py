"""Is this robustness real? Checks that pierce robustness made by miscalibration.

A model served with extreme confidence (or none) can look robust because the attack's search
breaks, not because the model resists (arXiv 2402.17509). :func:`check_illusion` attacks the
served model as everyone does (PGD with cross-entropy), then tries what an adaptive adversary
would, and compares:

1. **temperature sweep**: PGD through ``loss_temperature = T`` on a log grid 1e-3 … 1e6;
2. **cal**: one temperature fitted by NLL on clean calibration data, PGD through it;
3. **opt**: the loss temperature minimising adversarial accuracy on the calibration split
   (:mod:`advcal.analyses.illusion.search`), then applied to the test split;
4. **scale-invariant losses**: PGD on the margin (CW) loss and APGD on the DLR loss;
5. **black-box**: Square at the same ε;
6. **attack sanity**: FGSM does not beat PGD, accuracy falls with ε, and an unbounded attack
   (PGD at ε = 0.5, where every input can be moved to one grey image; at least 20 steps, step
   size scaled to ε) brings accuracy to chance or below (Carlini et al. 2019);
7. **gradient evidence**: the share of samples whose input gradient is exactly zero, or too
   small to move the loss at float32 resolution anywhere in the ε-ball.

The cheap checks (2, 4, 6, 7) run first; when they settle the verdict, the expensive ones
(1, 3, 5) are skipped unless ``full=True``. Every figure is an adversarial accuracy of the
model as served (temperatures change only the attack's loss, never the predictions).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

import advcal
from advcal._core.devices import module_device
from advcal._core.errors import InputError
from advcal._core.validation import check_int
from advcal.analyses.illusion.search import log_grid, optimise_temperature
from advcal.attacks import APGD, FGSM, PGD, Attack, Square, get_attack
from advcal.calibration import fit_temperature
from advcal.data import DataSource
from advcal.engine.model_check import check_model_fits
from advcal.engine.passes import ImageAttack, collect
from advcal.models import frozen

VERDICTS = ("genuine", "suspect", "illusion")
# A check that beats the served-model PGD by this much (absolute adversarial accuracy) shows
# that PGD's failure, not the model, made the robustness: an illusion. A smaller gap between
# SUSPECT_GAP and ILLUSION_GAP is what a stronger attack (APGD over PGD) usually buys on a
# genuinely robust model; it is reported but only called suspect.
ILLUSION_GAP = 0.05
SUSPECT_GAP = 0.03
# Attack sanity: the tolerance of "FGSM no better than PGD" and "accuracy falls with ε".
SANITY_TOLERANCE = 0.02
# The unbounded attack (Carlini et al. 2019, "On Evaluating Adversarial Robustness", §5.2: an
# attack whose budget makes the task undefined must succeed). On [0, 1] inputs an L∞ budget of
# 0.5 moves every input to the one flat grey image, so no classifier can keep more than chance —
# the largest class share — and a working attack gets near 0. The attack runs every step of the
# served check (at least UNBOUNDED_MIN_STEPS) with the step size scaled to its budget.
UNBOUNDED_EPS = 0.5
UNBOUNDED_MIN_STEPS = 20
# ... and must bring accuracy to at most chance (plus this binomial slack on small test sets),
# and never needs to reach below this floor to pass.
UNBOUNDED_FLOOR = 0.05
UNBOUNDED_Z = 3.09
# Gradient evidence: above this share of samples with a vanishing gradient, gradients are masked.
VANISHING_SHARE = 0.10
TEMPERATURES = log_grid(1e-3, 1e6)
FLOAT32_RESOLUTION = float(np.finfo(np.float32).eps)


@dataclass
class IllusionReport:
    """The verdict and the evidence (see :func:`check_illusion`); ``to_dict`` is its JSON."""

    verdict: str
    served_adv_accuracy: float
    best_adv_accuracy: float
    best_check: str
    reasons: list[str]
    checks: dict[str, dict[str, object]]
    attack_runs: int
    cost: dict[str, object]
    settings: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "verdict": self.verdict,
            "served_adv_accuracy": self.served_adv_accuracy,
            "best_adv_accuracy": self.best_adv_accuracy,
            "best_check": self.best_check,
            "reasons": list(self.reasons),
            "checks": self.checks,
            "attack_runs": self.attack_runs,
            "cost": self.cost,
            "settings": self.settings,
        }


class _Runner:
    """Runs attacks over a split in batches, counting runs, passes and time."""

    def __init__(self, model: nn.Module, batch_size: int):
        self.model, self.batch_size = model, batch_size
        self.device = module_device(model)
        self.runs = self.forward = self.backward = 0
        self.seconds = 0.0

    def accuracy(self, attack: Attack, data: DataSource) -> float:
        """Adversarial accuracy of the model on ``data`` under ``attack`` (one attack run)."""
        start = time.perf_counter()
        found = collect("", self.model, ImageAttack(data, attack, self.batch_size))
        self.forward += found.forward  # the clean pass the attack starts from, and the attack's
        self.backward += found.backward
        self.runs += 1
        self.seconds += time.perf_counter() - start
        return int((found.adversarial_logits[0].argmax(1) == found.y).sum()) / len(data)

    def logits(self, data: DataSource) -> torch.Tensor:
        found = collect("", self.model, ImageAttack(data, None, self.batch_size))
        self.forward += found.forward
        return found.clean_logits.double()

    def gradient_evidence(self, data: DataSource, eps: float) -> dict[str, float]:
        """Shares of samples whose cross-entropy input gradient is exactly zero, or so small that
        ``eps · ‖g‖₁`` (the first-order change of the loss over the ε-ball) is below float32
        resolution of the loss."""
        zero = flat = 0
        with frozen(self.model):
            for _, x, y in data.batches(self.batch_size):
                x_in = x.to(self.device).requires_grad_(True)
                losses = nn.functional.cross_entropy(self.model(x_in), y.to(self.device), reduction="none")
                (grad,) = torch.autograd.grad(losses.sum(), x_in)
                grad, losses = grad.flatten(1).detach().cpu(), losses.detach().cpu()
                zero += int((grad == 0).all(1).sum())
                change = eps * grad.abs().sum(1)
                flat += int((change <= FLOAT32_RESOLUTION * losses.abs().clamp_min(1e-30)).sum())
        self.forward += -(-len(data) // self.batch_size)
        self.backward += -(-len(data) // self.batch_size)
        return {"zero_gradient_share": zero / len(data), "vanishing_gradient_share": flat / len(data)}


def check_illusion(
    model: nn.Module,
    test: DataSource,
    calibration: DataSource,
    eps: float,
    *,
    steps: int = 20,
    seed: int = 0,
    batch_size: int = 256,
    full: bool = False,
    temperatures: Sequence[float] = TEMPERATURES,
    square_queries: int = 500,
    attack: str | None = None,
) -> IllusionReport:
    """Whether ``model``'s robustness at ``eps`` is genuine, an illusion, or suspect.

    Args:
        model: the model as served (it returns logits; any temperature is part of it).
        test: the held-out split the figures are measured on.
        calibration: clean data to fit the ``cal`` temperature and to search ``opt`` on.
        eps: the L∞ budget, in input units.
        steps: PGD (and APGD) iterations of every gradient attack.
        seed: the seed of every attack's per-sample randomness.
        batch_size: samples per pass.
        full: run every check even when the cheap ones settle the verdict.
        temperatures: the grid of the temperature sweep.
        square_queries: the query budget of the black-box Square attack.
        attack: a registered attack (e.g. ``"autoattack"``) run as one more check, with its own
            defaults at ``eps`` and ``seed``.
    """
    check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 1)
    if not 0 < eps < 1:
        raise InputError(f"eps: expected a budget in (0, 1) input units, got {eps!r}")
    check_model_fits("", model, test, batch_size, needs_gradient=True)  # PGD runs on it
    runner = _Runner(model, batch_size)
    checks: dict[str, dict[str, object]] = {}

    def pgd(**options: object) -> PGD:
        return PGD(eps=eps, steps=steps, seed=seed, **options)

    clean = runner.logits(test)
    clean_accuracy = float((clean.argmax(1) == test.y).double().mean())
    served = runner.accuracy(pgd(), test)
    one_run = {"forward": runner.forward, "backward": runner.backward, "seconds": runner.seconds}
    checks["served"] = {"adv_accuracy": served, "clean_accuracy": clean_accuracy,
                        "mean_confidence": _mean_confidence(clean, 1.0), "attack": "pgd-ce"}
    checks["margin"] = {"adv_accuracy": runner.accuracy(pgd(loss="margin"), test), "attack": "pgd-margin"}
    checks["dlr"] = {"adv_accuracy": runner.accuracy(APGD(eps=eps, steps=steps, seed=seed, loss="dlr"), test),
                     "attack": "apgd-dlr"}
    temperature = fit_temperature(runner.logits(calibration), calibration.y)
    checks["cal"] = {"adv_accuracy": runner.accuracy(pgd(loss_temperature=temperature), test),
                     "temperature": temperature, "attack": "pgd-ce through the NLL-fitted temperature"}
    if attack is not None:
        checks[attack] = {"adv_accuracy": runner.accuracy(get_attack(attack, eps=eps, seed=seed), test),
                          "attack": attack}
    checks["sanity"] = _sanity(runner, test, eps, steps, seed, served)
    checks["gradients"] = runner.gradient_evidence(test, eps)

    verdict, reasons = illusion_verdict(checks)
    settled = verdict == "illusion" or (verdict == "genuine" and not illusion_doubts(checks))
    if full or not settled:
        sweep = [(t, runner.accuracy(pgd(loss_temperature=t), test), _mean_confidence(clean, t))
                 for t in temperatures]
        best_t, best_accuracy, _ = min(sweep, key=lambda row: row[1])
        checks["sweep"] = {"adv_accuracy": best_accuracy, "temperature": best_t,
                           "curve": [{"temperature": t, "adv_accuracy": a, "mean_confidence": c}
                                     for t, a, c in sweep]}
        search = optimise_temperature(lambda t: runner.accuracy(pgd(loss_temperature=t), calibration))
        opt_accuracy = runner.accuracy(pgd(loss_temperature=search.temperature), test)
        checks["opt"] = {"adv_accuracy": opt_accuracy, "temperature": search.temperature,
                         "search": search.to_dict(),
                         "agrees_with_grid": abs(opt_accuracy - best_accuracy) <= SANITY_TOLERANCE}
        checks["square"] = {"adv_accuracy": runner.accuracy(
            Square(eps=eps, queries=square_queries, seed=seed), test), "queries": square_queries}
        verdict, reasons = illusion_verdict(checks)
    best_check, best_accuracy = lowest_check(checks)
    one_run_passes = one_run["forward"] + 2 * one_run["backward"]
    return IllusionReport(
        verdict=verdict,
        served_adv_accuracy=served,
        best_adv_accuracy=best_accuracy,
        best_check=best_check,
        reasons=reasons,
        checks=checks,
        attack_runs=runner.runs,
        cost={"forward_passes": runner.forward, "backward_passes": runner.backward,
              "seconds": runner.seconds,
              # forward + 2 x backward as a unit of work, and wall time, against one served PGD run
              "runs_of_served_pgd": (runner.forward + 2 * runner.backward) / one_run_passes,
              "time_of_served_pgd": runner.seconds / one_run["seconds"],
              "settled_by_cheap_checks": settled},
        settings={"advcal_version": advcal.__version__, "eps": eps, "steps": steps, "seed": seed,
                  "attack": attack,
                  "batch_size": batch_size, "full": full, "temperatures": list(temperatures),
                  "square_queries": square_queries, "test": {"spec": test.name, "split": test.split,
                  "n_samples": len(test)}, "calibration": {"spec": calibration.name,
                  "split": calibration.split, "n_samples": len(calibration)}},
    )


# --fail-on of the illusion command: the lowest verdict that makes it exit with status 1.
FAIL_ON_VERDICTS = {"illusion": ("illusion",), "suspect": ("suspect", "illusion"), "never": ()}


def illusion_fails(verdict: str, fail_on: str) -> bool:
    """Whether ``verdict`` reaches ``fail_on`` (``illusion``, ``suspect`` or ``never``)."""
    from advcal._core.validation import check_choice

    return verdict in FAIL_ON_VERDICTS[check_choice(fail_on, "fail_on", tuple(FAIL_ON_VERDICTS))]


def lowest_check(checks: dict[str, dict[str, object]]) -> tuple[str, float]:
    """The check with the lowest adversarial accuracy (``served`` on ties) and that accuracy."""
    attacked = {name: float(c["adv_accuracy"]) for name, c in checks.items() if "adv_accuracy" in c}
    best = min(attacked, key=lambda name: (attacked[name], name != "served"))
    return best, attacked[best]


def _mean_confidence(logits: torch.Tensor, temperature: float) -> float:
    return float(torch.softmax(logits / temperature, 1).max(1).values.mean())


def unbounded_threshold(labels: torch.Tensor) -> tuple[float, float]:
    """(chance, threshold): the largest class share of ``labels``, and the accuracy an unbounded
    attack must reach — chance plus ``UNBOUNDED_Z`` binomial standard errors, at least
    ``UNBOUNDED_FLOOR``."""
    counts = torch.bincount(labels.cpu()).double()
    chance = float(counts.max() / counts.sum())
    slack = UNBOUNDED_Z * (chance * (1 - chance) / len(labels)) ** 0.5
    return chance, max(UNBOUNDED_FLOOR, chance + slack)


def _sanity(runner: _Runner, test: DataSource, eps: float, steps: int, seed: int, served: float) -> dict:
    """FGSM against PGD, PGD at half the budget (fewer steps), and the unbounded attack."""
    quick = max(1, steps // 4)
    half = runner.accuracy(PGD(eps=eps / 2, steps=quick, seed=seed), test)
    unbounded_steps = max(steps, UNBOUNDED_MIN_STEPS)
    unbounded = runner.accuracy(PGD(eps=UNBOUNDED_EPS, steps=unbounded_steps, seed=seed), test)
    chance, threshold = unbounded_threshold(test.y)
    fgsm = runner.accuracy(FGSM(eps=eps, seed=seed), test)
    return {
        "fgsm_adv_accuracy": fgsm, "half_eps_adv_accuracy": half,
        "unbounded_eps": UNBOUNDED_EPS, "unbounded_steps": unbounded_steps,
        "unbounded_step_size": 2.5 * UNBOUNDED_EPS / unbounded_steps,
        "unbounded_adv_accuracy": unbounded, "chance_accuracy": chance, "unbounded_threshold": threshold,
        "fgsm_beats_pgd": fgsm < served - SANITY_TOLERANCE,
        "not_monotone_in_eps": half < served - SANITY_TOLERANCE or unbounded > served + SANITY_TOLERANCE,
        "unbounded_attack_fails": unbounded > threshold,
    }


def illusion_doubts(checks: dict[str, dict[str, object]]) -> list[str]:
    """What the sanity, gradient (images) and saturation (text) checks found wrong, in plain words."""
    sanity = checks["sanity"]
    out = []
    if sanity.get("fgsm_beats_pgd"):
        out.append(f"one-step FGSM ({sanity['fgsm_adv_accuracy']:.3f}) beats 20-step PGD "
                   f"({checks['served']['adv_accuracy']:.3f}): PGD's iterations are misled")
    if sanity["not_monotone_in_eps"]:
        out.append("adversarial accuracy does not fall as the budget grows")
    if sanity.get("unbounded_attack_fails"):
        out.append(
            f"an unbounded attack (PGD, {sanity['unbounded_steps']} steps of "
            f"{sanity['unbounded_step_size']:.3g} at ε = {sanity['unbounded_eps']:g}, where every input can "
            "be moved to one flat grey image) "
            f"leaves adversarial accuracy {sanity['unbounded_adv_accuracy']:.3f}, above the "
            f"{sanity['unbounded_threshold']:.3f} it must reach (chance, the largest class share, is "
            f"{sanity['chance_accuracy']:.3f}): the attack is blocked (Carlini et al. 2019: an unbounded "
            "attack must succeed)")
    if "gradients" in checks and checks["gradients"]["vanishing_gradient_share"] > VANISHING_SHARE:
        share = checks["gradients"]["vanishing_gradient_share"]
        out.append(f"{share:.0%} of samples have a vanishing input gradient under the served model")
    if "saturation" in checks and checks["saturation"]["saturated_share"] > VANISHING_SHARE:
        share = checks["saturation"]["saturated_share"]
        out.append(f"{share:.0%} of samples have float32 probabilities saturated at 0 and 1 under the "
                   "served model: a score-based attack reading them gets no signal")
    square = checks.get("square", {}).get("adv_accuracy")
    if square is not None and square < checks["served"]["adv_accuracy"] - SANITY_TOLERANCE:
        out.append(f"black-box Square ({checks['square']['adv_accuracy']:.3f}) beats white-box PGD")
    return out


def illusion_verdict(checks: dict[str, dict[str, object]]) -> tuple[str, list[str]]:
    served = float(checks["served"]["adv_accuracy"])
    others = {name: float(c["adv_accuracy"]) for name, c in checks.items()
              if "adv_accuracy" in c and name != "served"}
    best = min(others, key=others.get)
    gap = served - others[best]
    doubts = illusion_doubts(checks)
    if gap >= ILLUSION_GAP:
        reasons = [f"the served model's adversarial accuracy {served:.3f} falls to {others[best]:.3f} under "
                   f"the '{best}' check: {gap:.3f} of its robustness is an artefact of how the attack "
                   "meets its confidence, not resistance", *doubts]
        return "illusion", reasons
    if gap >= SUSPECT_GAP or doubts:
        lead = (f"the '{best}' check lowers adversarial accuracy by {gap:.3f} (from {served:.3f})"
                if gap >= SUSPECT_GAP else f"no check lowers adversarial accuracy by {SUSPECT_GAP} or more")
        return "suspect", [lead, *doubts]
    return "genuine", [f"no check lowers the served model's adversarial accuracy {served:.3f} by "
                       f"{SUSPECT_GAP} or more (best: '{best}' at {others[best]:.3f}), and the attack "
                       "behaves as it should"]
