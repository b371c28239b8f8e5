"""PGD, FGSM and the confidence attacks: agreement with torchattacks and advcal's guarantees."""

from __future__ import annotations

import copy

import pytest
import torch
import torchattacks
from hypothesis import given, settings
from hypothesis import strategies as st

from advcal.attacks import APGD, FGSM, PGD, ConfidenceAttack, Square, available_attacks, get_attack
from advcal.errors import ConfigError, InputError
from advcal.metrics import calibration_report

SUBSET = 256


@pytest.fixture(scope="module")
def batch(digits_data):
    _, _, x_test, y_test = digits_data
    return x_test[:SUBSET], y_test[:SUBSET]


def _state(model: torch.nn.Module) -> dict[str, object]:
    return {
        "tensors": {k: v.clone() for k, v in model.state_dict().items()},
        "modes": [m.training for m in model.modules()],
        "flags": [p.requires_grad for p in model.parameters()],
    }


def _inside(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> bool:
    delta = (x_adv - x).flatten(1)
    size = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
    return bool((size <= eps * (1 + 1e-6) + 1e-7).all() and x_adv.min() >= 0 and x_adv.max() <= 1)


# ----------------------------------------------------------------------------- peers
def test_fgsm_is_identical_to_torchattacks(digits_model, batch):
    x, y = batch
    ours = FGSM(eps=0.1)(digits_model, x, y)
    theirs = torchattacks.FGSM(digits_model, eps=0.1)(x, y)
    assert torch.equal(ours.x_adv, theirs)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_without_random_start_matches_torchattacks(digits_model, batch, norm):
    x, y = batch
    if norm == "linf":
        ours = PGD(eps=0.1, steps=10, alpha=0.02, random_start=False)(digits_model, x, y)
        theirs = torchattacks.PGD(digits_model, eps=0.1, alpha=0.02, steps=10, random_start=False)(x, y)
        assert torch.equal(ours.x_adv, theirs)
    else:
        # torchattacks averages the loss over the batch and adds 1e-10 to the gradient norm,
        # which shrinks steps on confidently right samples (gradient norms ~1e-12 after the
        # 1/N): compare on an untrained model, where no gradient is that small. A smooth one:
        # the two losses round differently (sum against mean), and at a ReLU or max-pool kink a
        # 1e-7 difference in the iterate changes the gradient, so a CNN's paths can part.
        with torch.random.fork_rng():
            torch.manual_seed(1)
            model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.Tanh(),
                                        torch.nn.Linear(32, 10)).eval()
        ours = PGD(eps=1.0, steps=10, alpha=0.2, norm="l2", random_start=False)(model, x, y)
        theirs = torchattacks.PGDL2(model, eps=1.0, alpha=0.2, steps=10, random_start=False)(x, y)
        torch.testing.assert_close(ours.x_adv, theirs, atol=1e-5, rtol=0)


def test_pgd_with_random_start_matches_torchattacks_robust_accuracy(digits_model, batch):
    x, y = batch
    ours = PGD(eps=0.1, steps=20, alpha=0.01)(digits_model, x, y)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        theirs = torchattacks.PGD(digits_model, eps=0.1, alpha=0.01, steps=20, random_start=True)(x, y)
    their_accuracy = float((digits_model(theirs).argmax(1) == y).float().mean())
    assert ours.robust_accuracy == pytest.approx(their_accuracy, abs=0.03)
    assert ours.robust_accuracy < float((digits_model(x).argmax(1) == y).float().mean()) - 0.2


# ----------------------------------------------------------------------------- geometry
@settings(max_examples=40, deadline=None)
@given(
    eps=st.floats(0.001, 0.5),
    steps=st.integers(1, 4),
    alpha_ratio=st.floats(0.05, 3.0),
    norm=st.sampled_from(["linf", "l2"]),
    kind=st.sampled_from(["pgd", "fgsm", "confidence", "apgd", "square"]),
    seed=st.integers(0, 1000),
)
def test_every_adversarial_input_stays_in_its_ball_and_in_unit_range(
    digits_model, batch, eps, steps, alpha_ratio, norm, kind, seed
):
    x, y = batch[0][:32], batch[1][:32]
    if norm == "l2":
        eps *= 8  # L2 budgets of a 64-pixel image are larger
    alpha = alpha_ratio * eps
    if kind == "square":
        norm = "linf"
        eps = min(eps, 0.5)
        attack = Square(eps=eps, queries=5 * steps, seed=seed)
    elif kind == "apgd":
        attack = APGD(eps=eps, steps=steps, norm=norm, seed=seed)
    elif kind == "pgd":
        attack = PGD(eps=eps, steps=steps, alpha=alpha, norm=norm, seed=seed)
    elif kind == "fgsm":
        attack = FGSM(eps=eps, norm=norm, seed=seed, random_start=seed % 2 == 0)
    else:
        attack = ConfidenceAttack(eps=eps, steps=steps, alpha=alpha, norm=norm, seed=seed, random_start=True)
    result = attack(digits_model, x, y)
    assert _inside(result.x_adv, x, eps, norm)
    torch.testing.assert_close(result.logits, digits_model(result.x_adv), rtol=0, atol=1e-5)


def test_eps_schedule_matches_a_hand_written_stepped_pgd(digits_model, batch):
    """The seed's schedule: 2/255 for the first 10 steps, then 8/255 for the remaining 30."""
    x, y = batch
    attack = PGD(eps_schedule=[(2 / 255, 10), (8 / 255, 30)], alpha=0.5 / 255, random_start=False)
    assert attack.steps == 40 and attack.eps_values == (8 / 255,)
    result = attack(digits_model, x, y)
    x_adv = x.clone()
    for t in range(40):
        eps = 2 / 255 if t < 10 else 8 / 255
        x_adv.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(digits_model(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = (x + (x_adv + 0.5 / 255 * grad.sign() - x).clamp(-eps, eps)).clamp(0, 1)
    assert torch.equal(result.x_adv, x_adv)
    first_stage = PGD(eps_schedule=[(2 / 255, 10)], alpha=0.5 / 255, random_start=False)(digits_model, x, y)
    assert _inside(first_stage.x_adv, x, 2 / 255, "linf")
    with pytest.raises(ConfigError, match="eps_schedule: cannot be combined with a list"):
        PGD(eps=[0.1, 0.2], eps_schedule=[(0.1, 5)])
    with pytest.raises(InputError, match="eps_schedule: expected"):
        PGD(eps_schedule=[(0.1,)])


def test_an_eps_sweep_is_one_call_equal_to_separate_runs(digits_model, batch):
    x, y = batch
    sweep = PGD(eps=[0.05, 0.1, 0.2], steps=5, seed=3)(digits_model, x, y)
    assert [r.eps for r in sweep] == [0.05, 0.1, 0.2]
    for result in sweep:
        single = PGD(eps=result.eps, steps=5, seed=3)(digits_model, x, y)
        assert torch.equal(result.x_adv, single.x_adv)
        assert result.forward_passes == 6 and result.backward_passes == 5
    accuracies = [r.robust_accuracy for r in sweep]
    assert accuracies == sorted(accuracies, reverse=True)


# ----------------------------------------------------------------------------- determinism
def test_adversarial_inputs_do_not_depend_on_batch_size_or_order(digits_model, batch):
    x, y = batch
    index = torch.arange(1000, 1000 + len(x))
    attack = PGD(eps=0.1, steps=5, seed=11)
    whole = attack(digits_model, x, y, index=index).x_adv
    for size in (7, 64):
        parts = [
            attack(digits_model, x[i : i + size], y[i : i + size], index=index[i : i + size]).x_adv
            for i in range(0, len(x), size)
        ]
        # L-inf steps take the gradient's sign, which the last bits of a batch-size-dependent
        # matrix product do not change: equality is exact here.
        assert torch.equal(torch.cat(parts), whole)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    assert torch.equal(attack(digits_model, x[order], y[order], index=index[order]).x_adv, whole[order])
    assert not torch.equal(PGD(eps=0.1, steps=5, seed=12)(digits_model, x, y, index=index).x_adv, whole)


def test_attacks_never_touch_the_global_rng(digits_model, batch):
    x, y = batch
    state = torch.random.get_rng_state()
    for attack in (PGD(eps=0.1, steps=3, restarts=2), PGD(eps=1.0, steps=3, norm="l2"),
                   ConfidenceAttack(eps=0.1, steps=3, random_start=True)):
        attack(digits_model, x, y)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_the_model_is_never_changed(digits_model, batch):
    x, y = batch
    model = copy.deepcopy(digits_model).train()
    model.head.weight.requires_grad_(False)  # a partly frozen model keeps its own flags
    before = _state(model)
    for attack in (PGD(eps=0.1, steps=3), FGSM(eps=0.1), ConfidenceAttack(eps=0.1, steps=3)):
        attack(model, x, y)
    after = _state(model)
    assert after["modes"] == before["modes"] and all(after["modes"])
    assert after["flags"] == before["flags"]
    for name, tensor in before["tensors"].items():
        assert torch.equal(after["tensors"][name], tensor), name  # BatchNorm buffers included


def test_loss_runs_in_float32_inside_a_reduced_precision_autocast_region(digits_model, batch):
    x, y = batch
    plain = PGD(eps=8 / 255, steps=5, seed=0)(digits_model, x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        guarded = PGD(eps=8 / 255, steps=5, seed=0)(digits_model, x, y)
        unguarded = PGD(eps=8 / 255, steps=5, seed=0, precision="autocast")(digits_model, x, y)
    assert torch.equal(guarded.x_adv, plain.x_adv)
    assert guarded.logits.dtype == torch.float32
    assert not torch.equal(unguarded.x_adv, plain.x_adv)  # bfloat16 gradients differ


# ----------------------------------------------------------------------------- options
def test_best_iterate_has_at_least_the_final_iterates_loss(digits_model, batch):
    x, y = batch
    final = PGD(eps=0.1, steps=8, alpha=0.05, select="final")(digits_model, x, y)
    best = PGD(eps=0.1, steps=8, alpha=0.05, select="best")(digits_model, x, y)
    def loss(logits):
        return torch.nn.functional.cross_entropy(logits, y, reduction="none")

    assert bool((loss(best.logits) >= loss(final.logits) - 1e-6).all())


def test_restarts_keep_the_highest_loss_per_sample(digits_model, batch):
    x, y = batch
    one = PGD(eps=0.05, steps=3, restarts=1)(digits_model, x, y)
    three = PGD(eps=0.05, steps=3, restarts=3)(digits_model, x, y)
    def loss(logits):
        return torch.nn.functional.cross_entropy(logits, y, reduction="none")

    assert bool((loss(three.logits) >= loss(one.logits) - 1e-6).all())
    assert three.forward_passes == 3 * 4 and three.backward_passes == 3 * 3


def test_loss_temperature_masks_cross_entropy_but_not_the_margin(digits_model, batch):
    x, y = batch
    cold = PGD(eps=0.1, steps=10, loss="ce", loss_temperature=1e-3)(digits_model, x, y)
    warm = PGD(eps=0.1, steps=10, loss="ce")(digits_model, x, y)
    # A saturated softmax loss has exactly zero gradient on confidently right samples.
    assert cold.robust_accuracy > warm.robust_accuracy + 0.1
    margin_cold = PGD(eps=0.05, steps=10, loss="margin", loss_temperature=1e-3)(digits_model, x, y)
    margin_warm = PGD(eps=0.05, steps=10, loss="margin")(digits_model, x, y)
    assert torch.equal(margin_cold.x_adv, margin_warm.x_adv)


# ----------------------------------------------------------------------------- confidence attacks
def test_confidence_attack_moves_confidence_but_never_a_prediction(digits_model, batch):
    x, y = batch
    clean = digits_model(x)
    correct = clean.argmax(1) == y
    both = ConfidenceAttack(eps=0.1, steps=10)(digits_model, x, y)
    assert torch.equal(both.logits.argmax(1), clean.argmax(1))
    assert calibration_report(both.logits, y)["ece"] > calibration_report(clean.detach(), y)["ece"] + 0.1
    confidence = torch.softmax(both.logits.double(), 1).max(1).values
    clean_confidence = torch.softmax(clean.detach().double(), 1).max(1).values
    assert bool((confidence[correct] <= clean_confidence[correct]).all())
    assert bool((confidence[~correct] >= clean_confidence[~correct]).all())
    assert both.success[correct].float().mean() > 0.9

    down = ConfidenceAttack(eps=0.1, steps=10, direction="down")(digits_model, x, y)
    assert torch.equal(down.x_adv[~correct], x[~correct]) and not bool(down.success[~correct].any())
    up = ConfidenceAttack(eps=0.1, steps=10, direction="up")(digits_model, x, y)
    assert torch.equal(up.x_adv[correct], x[correct]) and not bool(up.success[correct].any())


# ----------------------------------------------------------------------------- bad input
class _Softmaxed(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), 1)


@pytest.mark.parametrize(
    ("make", "x_change", "y_change", "error", "match"),
    [
        (lambda m: PGD(eps=8.0), None, None, InputError, r"did you mean 8/255 \(= 0\.0314\)"),
        (lambda m: PGD(eps=0.1), lambda x: x * 255, None, InputError, r"x: values must lie in \[0, 1\]"),
        (lambda m: PGD(eps=0.1), lambda x: x.long(), None, InputError, "x: expected floating-point"),
        (lambda m: PGD(eps=0.1), None, lambda y: y[:-1], InputError, "y: expected a 1-D array of 256"),
        (lambda m: PGD(eps=0.1), None, lambda y: y + 10, InputError,
         "y: class index 19 is out of range for a model with 10 outputs"),
        (lambda m: PGD(eps=0.1, steps=0), None, None, InputError, "steps: expected an integer >= 1"),
        (lambda m: PGD(eps=-0.1), None, None, InputError, "eps: expected non-negative finite numbers"),
        (lambda m: PGD(eps=0.1, norm="l3"), None, None, ConfigError, "norm: expected one of linf, l2"),
        (lambda m: PGD(eps=0.1, loss="hinge"), None, None, ConfigError, "loss: expected one of"),
        (lambda m: PGD(eps=0.1, loss_temperature=0), None, None, InputError, "loss_temperature"),
        (lambda m: PGD(eps=100.0, norm="l2"), None, None, InputError, "covers the whole"),
    ],
)
def test_bad_input_is_refused_with_the_argument_named(
    digits_model, batch, make, x_change, y_change, error, match
):
    x, y = batch
    x = x_change(x) if x_change else x
    y = y_change(y) if y_change else y
    with pytest.raises(error, match=match):
        make(digits_model)(digits_model, x, y)


def test_a_model_returning_probabilities_is_refused(digits_model, batch):
    x, y = batch
    with pytest.raises(InputError, match="the model returns probabilities"):
        PGD(eps=0.1)(_Softmaxed(digits_model), x, y)


def test_clean_logits_from_the_caller_spare_the_clean_pass(digits_model, batch):
    x, y = batch
    calls = []
    handle = digits_model.register_forward_hook(lambda *_: calls.append(1))
    try:
        own = PGD(eps=0.1, steps=3)(digits_model, x, y)
        n_own = len(calls)
        given = PGD(eps=0.1, steps=3)(digits_model, x, y, clean_logits=own.clean_logits)
    finally:
        handle.remove()
    assert n_own == 1 + 4 and len(calls) - n_own == 4  # 3 steps + the final iterate
    assert torch.equal(given.x_adv, own.x_adv)
    with pytest.raises(InputError, match=r"clean_logits: expected logits of shape \(256"):
        PGD(eps=0.1)(digits_model, x, y, clean_logits=own.clean_logits[:10])


def test_registry(digits_model, batch):
    assert {"fgsm", "pgd", "pgd-l2", "apgd", "apgd-ce", "apgd-dlr", "square", "confidence"} <= set(
        available_attacks()
    )
    assert get_attack("apgd-dlr").loss == "dlr" and get_attack("square").loss == "margin"
    attack = get_attack("PGD-L2", eps=0.5, steps=2)
    assert isinstance(attack, PGD) and attack.norm == "l2" and attack.params()["eps"] == 0.5
    with pytest.raises(ConfigError, match="unknown attack 'pgdd'"):
        get_attack("pgdd")
    with pytest.raises(ConfigError, match=r"attack 'pgd'.*unexpected keyword argument 'stepz'"):
        get_attack("pgd", stepz=3)


# Cheap settings per attack (the ensembles are these attacks in turn).
QUICK = {"apgd": {"steps": 3}, "apgd-ce": {"steps": 3}, "apgd-dlr": {"steps": 3}, "apgd-t": {"steps": 3},
         "fab-t": {"steps": 3}, "square": {"queries": 20}, "pgd": {"steps": 3}, "pgd-l2": {"steps": 3},
         "confidence": {"steps": 3}, "confidence-down": {"steps": 3}, "confidence-up": {"steps": 3}}


@pytest.mark.parametrize("context", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("name", [name for name in available_attacks() if not name.startswith("autoattack")])
def test_an_attack_inside_no_grad_or_inference_mode_is_the_same_attack(name, context, digits_model, batch):
    """Evaluation code wraps everything in no_grad; the attack switches gradients on itself."""
    model, (x, y) = digits_model, (batch[0][:32], batch[1][:32])
    eps = 0.5 if name in ("pgd-l2", "fab-t") else 0.1
    attack = get_attack(name, eps=eps, seed=0, **QUICK.get(name, {}))
    outside = attack(model, x, y, index=torch.arange(len(x)))
    with getattr(torch, context)():
        inner_x = x.clone()  # under inference_mode: an inference tensor
        inside = attack(model, inner_x, y, index=torch.arange(len(x)))
    assert torch.equal(inside.x_adv, outside.x_adv) and torch.equal(inside.logits, outside.logits)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()  # the caller's state is back
