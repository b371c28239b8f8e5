"""CLIP fine-tuning recipes (ucat, tecoa, fare) on a tiny open_clip model and real digits."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

pytest.importorskip("open_clip")

from advcal.cli import main
from advcal.clip import ZeroShotClassifier, tiny_clip
from advcal.clip.dirichlet import concentrations, default_kl_weight, dirichlet_kl
from advcal.data import load_data
from advcal.errors import ConfigError
from advcal.models import DigitsCNN
from advcal.training import Recipe, train

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
UCAT = Recipe("ucat", eps=1 / 255, steps=2, alpha=1 / 255)


def zero_shot() -> ZeroShotClassifier:
    clip_model, tokenizer = tiny_clip(seed=0)
    return ZeroShotClassifier(clip_model, tokenizer, DIGITS)


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", split="train", limit=64), load_data("digits", split="calibration", limit=32)


def drifted_and_reference() -> tuple[ZeroShotClassifier, ZeroShotClassifier]:
    """A model whose image tower has moved away from its frozen reference, as after some fine-tuning."""
    model = zero_shot()
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(1)
        for parameter in model.model.visual.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    return model, reference


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def objective(model, reference, recipe, batch) -> torch.Tensor:
    x, y, index = batch
    return recipe.batch_loss(model, x, y, index, 0, 1, reference)[0]


@pytest.mark.parametrize("recipe", [UCAT, Recipe("tecoa", eps=1 / 255, steps=2, alpha=1 / 255),
                                    Recipe("fare", eps=1 / 255, steps=2, alpha=1 / 255)],
                         ids=["ucat", "tecoa", "fare"])
def test_a_step_lowers_the_objective_and_touches_only_the_visual_tower(recipe, digits):
    model, reference = drifted_and_reference()
    before, reference_before = state(model), state(reference)
    data = digits[0]
    batch = (data.x[:32], data.y[:32], data.index[:32])
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all("visual" in name for name, p in model.named_parameters() if p.requires_grad)
    optimiser = torch.optim.SGD(trainable, lr=1e-3)
    model.train()
    first = objective(model, reference, recipe, batch)
    first.backward()
    optimiser.step()
    optimiser.zero_grad()
    second = objective(model, reference, recipe, batch)  # same random starts, moved weights
    assert float(second.detach()) < float(first.detach())
    after = state(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("visual" in k for k in changed), sorted(changed)[:5]
    assert all(torch.equal(v, state(reference)[k]) for k, v in reference_before.items())


def test_the_ucat_term_is_the_dirichlet_kl_of_the_adversarial_against_the_clean_reference(digits):
    model, reference = drifted_and_reference()
    data = digits[0]
    x, y, index = data.x[:8], data.y[:8], data.index[:8]
    tecoa = Recipe("tecoa", eps=1 / 255, steps=2, alpha=1 / 255)
    loss, adv_logits = UCAT.batch_loss(model, x, y, index, 0, 1, reference)
    ce, same_logits = tecoa.batch_loss(model, x, y, index, 0, 1, reference)
    assert torch.equal(adv_logits, same_logits)  # the same attack, so the same adversarial images
    scale = model.logit_scale
    with torch.no_grad():
        kl = dirichlet_kl(concentrations(adv_logits, scale), concentrations(reference(x), scale)).mean()
    assert float(kl) > 0
    assert float((loss - ce).detach()) == pytest.approx(float(default_kl_weight(0.07) * kl), rel=1e-6)


def test_ucat_through_train_keeps_the_reference_and_resumes_exactly(digits, tmp_path):
    train_data, validation = digits
    settings = {"epochs": 2, "batch_size": 32, "lr": 1e-3, "optimizer": "sgd", "schedule": "cosine",
                "warmup_epochs": 0.5, "val_eps": 1 / 255, "val_steps": 2}
    whole = train(zero_shot(), train_data, validation, UCAT, out=tmp_path / "a", **settings)
    reference = load_file(tmp_path / "a" / "reference.safetensors")
    untrained = zero_shot().state_dict()
    assert all(torch.equal(value, untrained[key]) for key, value in reference.items())

    class Killed(Exception):
        pass

    def kill(row: dict[str, float]) -> None:
        raise Killed

    with pytest.raises(Killed):
        train(zero_shot(), train_data, validation, UCAT, out=tmp_path / "b", on_epoch=kill, **settings)
    resumed = train(zero_shot(), train_data, validation, UCAT, out=tmp_path / "b", resume=True, **settings)
    trained = whole.model.state_dict()
    assert all(torch.equal(value, trained[key]) for key, value in resumed.model.state_dict().items())
    assert [row["train_loss"] for row in whole.log] == [row["train_loss"] for row in resumed.log]


def test_clip_recipes_refuse_models_without_what_they_need(digits, tmp_path):
    train_data, validation = digits
    with pytest.raises(ConfigError, match="logit_scale"):
        train(DigitsCNN(), train_data, validation, UCAT, epochs=1, out=tmp_path / "u")
    with pytest.raises(ConfigError, match="encode_image"):
        train(DigitsCNN(), train_data, validation, Recipe("fare", eps=1 / 255, steps=1), epochs=1,
              out=tmp_path / "f")
    with pytest.raises(ConfigError, match="kl_weight"):
        Recipe("ucat", kl_weight=-1.0)


def test_advcal_train_ucat_on_a_clip_checkpoint(tmp_path, capsys):
    clip_model, _ = tiny_clip(seed=0)
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in clip_model.state_dict().items()}, str(weights))
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(DIGITS) + "\n")
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as done:
        main(["train", "--recipe", "ucat", "--model", "clip:advcal-tiny", "--weights", str(weights),
              "--classes", str(classes), "--data", "digits", "--epochs", "1",
              "--lr", "1e-3", "--val-limit", "32", "--out", str(out)])
    assert done.value.code == 0
    assert (out / "model.safetensors").exists() and (out / "reference.safetensors").exists()
    assert "ucat" in capsys.readouterr().out
    settings = json.loads((out / "run.json").read_text())  # UCAT's attack and optimiser by default
    assert settings["optimizer"] == "sgd" and settings["schedule"] == "cosine"
    assert settings["recipe"]["eps"] == pytest.approx(1 / 255) and settings["recipe"]["steps"] == 2
    assert settings["recipe"]["alpha"] == pytest.approx(1 / 255)
