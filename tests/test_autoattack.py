"""AutoAttack at full strength: APGD-T, FAB-T and the standard ensemble, against the original
AutoAttack code (pyautoattack 0.2.0, Croce & Hein's implementation) and torchattacks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from advcal.attacks import APGD, APGDT, FAB, AutoAttack, Square, get_attack
from advcal.attacks.fab import project_onto_boundary
from advcal.attacks.targeted import targeted_dlr
from advcal.data import load_data
from advcal.errors import ConfigError
from advcal.models import load_model

EPS = 0.1


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """500 real digits (from all of scikit-learn's 1,797) with their sample indices."""
    data = load_data("digits", split="all")
    return data.x[:500], data.y[:500], data.index[:500]


def robust(model: torch.nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


# ----------------------------------------------------------------------------- pieces
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_boundary_projection_is_the_smallest_feasible_step(norm):
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(6, 5, generator=generator, dtype=torch.float64)
    w = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    b = (w * x).sum(1) + 0.3 * torch.randn(6, generator=generator, dtype=torch.float64)
    d = project_onto_boundary(x, w, b, norm)
    assert torch.allclose((w * (x + d)).sum(1), b, atol=1e-9)  # on the hyperplane
    assert bool(((x + d) >= -1e-12).all() and ((x + d) <= 1 + 1e-12).all())  # inside the box
    for row in range(6):
        if norm == "linf":  # min t s.t. |d_i| <= t, w.d = b - w.x, 0 <= x + d <= 1
            n = 5
            cost = np.r_[np.zeros(n), 1.0]
            bounds = [(-x[row, i].item(), 1 - x[row, i].item()) for i in range(n)] + [(0, None)]
            a_ub = np.block([[np.eye(n), -np.ones((n, 1))], [-np.eye(n), -np.ones((n, 1))]])
            found = linprog(cost, A_ub=a_ub, b_ub=np.zeros(2 * n), A_eq=np.r_[w[row].numpy(), 0][None],
                            b_eq=[(b[row] - w[row] @ x[row]).item()], bounds=bounds)
            assert found.status == 0 and d[row].abs().max().item() == pytest.approx(found.fun, abs=1e-9)
        else:  # the KKT point of min |d|_2: no feasible step along the hyperplane is shorter
            others = torch.randn(200, 5, generator=generator, dtype=torch.float64) * 0.05
            others -= (others @ w[row])[:, None] * w[row] / (w[row] @ w[row])  # keep w.d fixed
            moved = d[row] + others
            inside = ((x[row] + moved) >= 0).all(1) & ((x[row] + moved) <= 1).all(1)
            assert bool((moved[inside].norm(dim=1) >= d[row].norm() - 1e-9).all())


def test_targeted_dlr_is_positive_once_the_target_wins_and_scale_invariant():
    z = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0], [1.0, 4.0, 0.5, 0.0, -1.0]])
    y, target = torch.tensor([0, 0]), torch.tensor([1, 1])
    loss = targeted_dlr(target)(z, y)
    assert loss[0] < 0 < loss[1]
    assert torch.allclose(targeted_dlr(target)(7 * z + 3, y), loss)


def test_apgd_keeps_its_best_iterate_by_default():
    assert APGD().select == "best" and get_attack("apgd-ce").select == "best"
    assert get_attack("apgd-dlr").select == "best" and get_attack("pgd").select == "final"


def test_apgd_t_and_fab_t_break_samples_within_the_budget(digits):
    x, y, index = (t[:150] for t in digits)
    model = load_model("digits-cnn")
    apgd = APGD(EPS, steps=50)(model, x, y, index=index)
    targeted = APGDT(EPS, steps=50, target_classes=3)(model, x, y, index=index)
    fab = FAB(EPS, steps=50, target_classes=3)(model, x, y, index=index)
    for result in (targeted, fab):
        assert (result.x_adv - x).abs().flatten(1).amax(1).max() <= EPS + 1e-6
        assert bool(((result.x_adv >= 0) & (result.x_adv <= 1)).all())
        assert torch.equal(result.logits.argmax(1), model(result.x_adv).argmax(1))
    assert targeted.robust_accuracy <= apgd.robust_accuracy + 0.02
    assert fab.robust_accuracy < robust(model, x, y).float().mean() - 0.2
    # FAB leaves the samples it cannot break within ε exactly as they were.
    unbroken = ~fab.success
    assert torch.equal(fab.x_adv[unbroken], x[unbroken])
    with pytest.raises(ConfigError, match="needs at least 4 classes"):
        APGDT(EPS, steps=2)(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)), x, y % 3)


def test_the_ensemble_is_the_worst_case_per_sample_and_deterministic(digits):
    x, y, index = (t[:120] for t in digits)
    model = load_model("digits-cnn")
    suite = AutoAttack(EPS, steps=20, target_classes=3, queries=200, seed=3)
    result = suite(model, x, y, index=index)
    for name, attack in suite.component_attacks(10, EPS):
        alone = attack(model, x, y, index=index)
        broken_alone = alone.logits.argmax(1) != y
        assert bool((result.success | ~broken_alone).all()), name  # broken by a part: broken by all
    assert (result.x_adv - x).abs().flatten(1).amax(1).max() <= EPS + 1e-6
    assert torch.equal(result.logits.argmax(1), model(result.x_adv).argmax(1))
    again = AutoAttack(EPS, steps=20, target_classes=3, queries=200, seed=3)
    shuffled = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    twice = again(model, x[shuffled], y[shuffled], index=index[shuffled])
    assert torch.equal(twice.success, result.success[shuffled])  # per-sample keys: order-free
    params = result.params
    assert params["attack"] == "autoattack"
    assert params["components"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert "first success" in params["selection"]


def test_configuration_is_checked():
    with pytest.raises(ConfigError, match="components: expected a non-empty subset"):
        AutoAttack(components=["square", "apgd-ce"])
    with pytest.raises(ConfigError, match="loss: AutoAttack fixes"):
        get_attack("autoattack", loss="ce")
    assert AutoAttack(components=["apgd-ce", "square"]).params()["attack"] == "autoattack-custom"
    assert get_attack("autoattack-l2", eps=0.5).norm == "l2"
    assert Square(rescale_schedule=False, queries=5000).fraction(40) == 0.4  # AutoAttack's schedule


# ----------------------------------------------------------------------------- the references
def _original_autoattack(model, x, y, norm: str, eps: float) -> torch.Tensor:
    from pyautoattack import AutoAttack as Original

    attack = Original(model, norm=norm, eps=eps, version="standard", seed=0)
    x_adv, _ = attack.run_standard_evaluation(x, y, batch_size=len(x))
    return x_adv


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits-cnn", "digits-cnn-at"])
@pytest.mark.parametrize(("attack", "norm", "eps"),
                         [("autoattack", "Linf", EPS), ("autoattack-l2", "L2", 0.5)])
def test_matches_the_original_autoattack(digits, name, attack, norm, eps):
    x, y, index = digits
    model = load_model(name)
    ours = get_attack(attack, eps=eps)(model, x, y, index=index)
    if norm == "L2":
        assert (ours.x_adv - x).flatten(1).norm(dim=1).max() <= eps + 1e-5
    theirs = robust(model, _original_autoattack(model, x, y, norm, eps), y)
    ours_robust = ~ours.success
    assert ours_robust.float().mean() <= theirs.float().mean() + 0.005, ours.robust_accuracy
    # Sample for sample: the original breaks nothing that advcal's ensemble leaves standing.
    assert int((ours_robust & ~theirs).sum()) <= math.ceil(0.005 * len(y))


@pytest.mark.slow
def test_matches_torchattacks_autoattack(digits):
    import torchattacks

    x, y, index = digits
    model = load_model("digits-cnn")
    ours = get_attack("autoattack", eps=EPS)(model, x, y, index=index)
    with torch.random.fork_rng():  # torchattacks seeds torch's global RNG
        x_adv = torchattacks.AutoAttack(model, norm="Linf", eps=EPS, version="standard", n_classes=10,
                                        seed=0)(x, y)
    assert ours.robust_accuracy <= robust(model, x_adv, y).float().mean() + 0.005


def test_square_l2_keeps_its_budget_and_is_as_strong_as_the_original(digits):
    from pyautoattack.square import SquareAttack

    x, y, index = (t[:200] for t in digits)
    model = load_model("digits-cnn")
    ours = Square(0.5, queries=300, norm="l2", rescale_schedule=False)(model, x, y, index=index)
    assert (ours.x_adv - x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-5
    assert bool(((ours.x_adv >= 0) & (ours.x_adv <= 1)).all())
    with torch.random.fork_rng():
        original = SquareAttack(model, p_init=0.8, n_queries=300, eps=0.5, norm="L2", seed=0, verbose=False,
                                device="cpu", resc_schedule=False).perturb(x, y)
    assert ours.robust_accuracy <= robust(model, original, y).float().mean() + 0.02
