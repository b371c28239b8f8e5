"""APGD (Croce & Hein 2020): strength against its reference implementation, geometry, determinism,
the model and RNG guards, the step-size schedule, the loss temperature and configuration errors."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import torchattacks

from advcal.attacks import PGD
from advcal.attacks.apgd import APGD, checkpoints, halve_step
from advcal.attacks.base import Counter
from advcal.errors import ConfigError, InputError

EPS = 0.1
STEPS = 50


@pytest.fixture(scope="module")
def attack_set(digits_data) -> tuple[torch.Tensor, torch.Tensor]:
    """300 real test digits (the model classifies about 98% of them correctly)."""
    _, _, x_test, y_test = digits_data
    return x_test[:300], y_test[:300]


def _robust_accuracy(model: torch.nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


# ---------------------------------------------------------------- 1. strength
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_matches_torchattacks_and_is_at_least_as_strong_as_pgd(digits_model, attack_set, loss):
    x, y = attack_set
    ours = APGD(EPS, steps=STEPS, loss=loss)(digits_model, x, y)
    # torchattacks' APGD re-seeds torch's global RNG (and draws its random start from it).
    with torch.random.fork_rng():
        reference = torchattacks.APGD(
            digits_model, norm="Linf", eps=EPS, steps=STEPS, n_restarts=1, loss=loss, seed=0
        )(x, y)
    theirs = _robust_accuracy(digits_model, reference, y)
    pgd = PGD(EPS, steps=STEPS, loss=loss)(digits_model, x, y).robust_accuracy
    clean = _robust_accuracy(digits_model, x, y)
    assert ours.robust_accuracy < clean - 0.2  # the attack bites at this budget
    assert abs(ours.robust_accuracy - theirs) <= 0.03, (ours.robust_accuracy, theirs)
    assert ours.robust_accuracy <= pgd + 0.02, (ours.robust_accuracy, pgd)


# ---------------------------------------------------------------- 2. threat model
@pytest.mark.parametrize("select", ["final", "best"])
@pytest.mark.parametrize(("norm", "eps"), [("linf", EPS), ("l2", 1.0)])
def test_returns_points_of_the_ball_and_their_logits(digits_model, attack_set, norm, eps, select):
    x, y = attack_set[0][:64], attack_set[1][:64]
    result = APGD(eps, steps=20, norm=norm, select=select)(digits_model, x, y)
    delta = (result.x_adv - x).flatten(1)
    if norm == "linf":
        assert float(delta.abs().max()) <= eps + 1e-6
    else:
        assert float(delta.norm(dim=1).max()) <= eps + 1e-5
        assert float(delta.norm(dim=1).max()) > 0.5 * eps  # L2 steps really move
    assert float(result.x_adv.min()) >= 0 and float(result.x_adv.max()) <= 1
    # The logits reported are the model's at the returned inputs.
    with torch.no_grad():
        torch.testing.assert_close(result.logits, digits_model(result.x_adv), atol=1e-5, rtol=1e-5)
    assert result.robust_accuracy < _robust_accuracy(digits_model, x, y)


# ---------------------------------------------------------------- 3. determinism
def test_deterministic_and_independent_of_batching(digits_model, attack_set):
    x, y = attack_set[0][:63], attack_set[1][:63]
    index = torch.arange(1000, 1063)  # arbitrary sample ids: the randomness is keyed on them
    attack = APGD(EPS, steps=20, restarts=2, loss="dlr")
    whole = attack(digits_model, x, y, index=index)
    again = attack(digits_model, x, y, index=index)
    assert torch.equal(whole.x_adv, again.x_adv)
    assert torch.equal(whole.logits, again.logits)
    chunks = [
        attack(digits_model, xs, ys, index=ids)
        for xs, ys, ids in zip(x.split(7), y.split(7), index.split(7), strict=True)
    ]
    # The model's own floating point depends on the batch size here (its logits at the same
    # inputs differ by a few float32 ulps, ~1e-5, between a batch of 63 and one of 7), so the
    # logits can only agree to that level. The attack adds no batch dependence of its own: the
    # sign steps are unaffected by those ulps, the adversarial inputs are bit-identical, and each
    # chunk's logits are exactly the model's at its inputs in a batch of that chunk's size.
    assert torch.equal(torch.cat([c.x_adv for c in chunks]), whole.x_adv)
    with torch.no_grad():
        assert all(torch.equal(c.logits, digits_model(c.x_adv)) for c in chunks)
    torch.testing.assert_close(torch.cat([c.logits for c in chunks]), whole.logits, rtol=1e-6, atol=1e-5)
    # A different seed gives different random starts, hence different points.
    other = APGD(EPS, steps=20, restarts=2, loss="dlr", seed=1)(digits_model, x, y, index=index)
    assert not torch.equal(other.x_adv, whole.x_adv)


def test_restarts_keep_the_highest_loss(digits_model, attack_set):
    x, y = attack_set[0][:40], attack_set[1][:40]
    one = APGD(EPS, steps=10, select="best")(digits_model, x, y)
    three = APGD(EPS, steps=10, restarts=3, select="best")(digits_model, x, y)
    ce = torch.nn.functional.cross_entropy
    # Restart 0 is the same run in both; later restarts only replace it where they beat it.
    assert bool((ce(three.logits, y, reduction="none") >= ce(one.logits, y, reduction="none")).all())
    assert three.forward_passes == three.backward_passes == 30


# ---------------------------------------------------------------- 4. guards
def test_leaves_rng_and_model_state_untouched(digits_model, attack_set):
    x, y = attack_set[0][:32], attack_set[1][:32]
    eval_result = APGD(EPS, steps=10)(digits_model, x, y)
    digits_model.train()
    try:
        state = {k: v.clone() for k, v in digits_model.state_dict().items()}
        rng = torch.random.get_rng_state()
        result = APGD(EPS, steps=10)(digits_model, x, y)
        assert torch.equal(torch.random.get_rng_state(), rng)
        assert all(module.training for module in digits_model.modules())
        assert all(param.requires_grad for param in digits_model.parameters())
        after = digits_model.state_dict()
        assert all(torch.equal(after[k], v) for k, v in state.items())  # weights and BN buffers
        # The attack ran the model in eval mode although it was handed over in train mode.
        assert torch.equal(result.x_adv, eval_result.x_adv)
    finally:
        digits_model.eval()


# ---------------------------------------------------------------- 5. step-size schedule
def _paper_checkpoints(n_iter: int) -> list[int]:
    """w_j = ceil(p_j N), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)."""
    p = [Fraction(0), Fraction(22, 100)]
    while (following := p[-1] + max(p[-1] - p[-2] - Fraction(3, 100), Fraction(6, 100))) <= 1:
        p.append(following)
    return sorted({math.ceil(pj * n_iter) for pj in p})


def test_checkpoints_follow_the_paper():
    # p_j = 0, .22, .41, .57, .70, .80, .87, .93, .99 (the next, 1.05, is past the budget).
    assert checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99] == _paper_checkpoints(100)
    for n_iter in (1, 5, 10, 37, 50, 250, 1000):
        assert checkpoints(n_iter) == _paper_checkpoints(n_iter), n_iter


def test_halving_conditions():
    # Window of 22 steps, rho = 0.75: condition 1 needs fewer than 16.5 increasing steps.
    halve = halve_step(
        increases=torch.tensor([16, 17, 17, 17]),
        window=22,
        rho=0.75,
        reduced_last=torch.tensor([False, False, False, True]),
        best_loss=torch.tensor([1.0, 1.0, 0.5, 0.5]),
        best_loss_last=torch.tensor([0.0, 0.0, 0.5, 0.5]),
    )
    # 0: oscillates (condition 1); 1: steady progress; 2: stalled with an unchanged step
    # (condition 2); 3: stalled but the step was just halved, so it gets another window.
    assert halve.tolist() == [True, False, True, False]


class _Constant(torch.nn.Module):
    """Fixed logits whatever the input: the loss can never increase (gradients are zero)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.tensor([[2.0, 0.5, -1.0]], device=x.device).expand(len(x), 3)
        return logits + 0 * x.flatten(1).sum(1, keepdim=True)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_step_size_halves_at_every_checkpoint_when_the_loss_stalls(norm):
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1])
    attack = APGD(EPS, steps=100, norm=norm, select="best")
    counter = Counter()
    x_start = x.clone()
    run = attack._run(_Constant(), x, y, x_start, EPS, counter)
    # The 8 checkpoints 22, 41, ..., 99 all fall inside the 100 steps; η starts at 2ε.
    assert run.halvings.tolist() == [8] * 5
    torch.testing.assert_close(run.step_size, torch.full((5,), 2 * EPS / 2**8))
    assert torch.equal(run.x_adv, x_start)  # no iterate beat the start
    assert counter.forward == counter.backward == 100  # one forward+backward per step
    final = APGD(EPS, steps=100, norm=norm, select="final")(_Constant(), x, y)
    assert final.forward_passes == 101 and final.backward_passes == 100
    best = APGD(EPS, steps=100, norm=norm)(_Constant(), x, y)  # the default: the best iterate
    assert best.forward_passes == best.backward_passes == 100


# ---------------------------------------------------------------- 6. loss temperature
def test_loss_temperature_masks_ce_but_not_dlr(digits_model, attack_set):
    x, y = attack_set[0][:150], attack_set[1][:150]

    def robust(loss: str, temperature: float) -> float:
        attack = APGD(EPS, steps=30, loss=loss, loss_temperature=temperature)
        return attack(digits_model, x, y).robust_accuracy

    # A cold CE saturates: correct, confident samples get a zero gradient and never move.
    ce_cold, ce = robust("ce", 1e-3), robust("ce", 1.0)
    assert ce_cold > ce + 0.1, (ce_cold, ce)
    # DLR is invariant to scaling the logits.
    assert abs(robust("dlr", 1e-3) - robust("dlr", 1.0)) <= 0.01


# ---------------------------------------------------------------- 7. configuration
@pytest.mark.parametrize(
    ("options", "error", "argument"),
    [
        ({"steps": 0}, InputError, "steps"),
        ({"steps": 2.5}, InputError, "steps"),
        ({"rho": 0.0}, InputError, "rho"),
        ({"rho": 1.0}, InputError, "rho"),
        ({"rho": -0.5}, InputError, "rho"),
        ({"norm": "l3"}, ConfigError, "norm"),
        ({"restarts": 0}, InputError, "restarts"),
        ({"loss": "hinge"}, ConfigError, "loss"),
        ({"select": "worst"}, ConfigError, "select"),
    ],
)
def test_bad_configuration_names_the_argument(options, error, argument):
    with pytest.raises(error, match=rf"^{argument}\b"):
        APGD(EPS, **options)


def test_params_are_recorded():
    params = APGD(EPS, steps=40, norm="l2", restarts=2, rho=0.6, loss="dlr", select="best").params()
    assert params["attack"] == "apgd" and params["norm"] == "l2" and params["loss"] == "dlr"
    assert (params["steps"], params["restarts"], params["rho"], params["select"]) == (40, 2, 0.6, "best")
