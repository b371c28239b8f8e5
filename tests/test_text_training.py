"""Text recipes in ``advcal train``: fine-tuning, embedding-space PGD-AT, gradnorm, high temperature."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from safetensors.torch import load_file

from advcal.cli import main
from advcal.errors import ConfigError, InputError
from advcal.models import DigitsCNN
from advcal.text.data import TextDataset
from advcal.text.models import TextClassifier, from_hf, tiny_text_classifier
from advcal.training import Recipe, train
from test_text_audit import NEGATIVE, POSITIVE, corpus


def untrained() -> TextClassifier:
    data = corpus()
    return tiny_text_classifier(data.texts + POSITIVE + NEGATIVE, num_classes=2, seed=0, labels=data.classes)


def halves() -> tuple[TextDataset, TextDataset]:
    data = corpus()
    return data.subset(np.arange(0, 64)), data.subset(np.arange(64, 96))


class _Killed(Exception):
    pass


def _stop_after_first(row: dict[str, float]) -> None:
    raise _Killed


def comparable(log: list[dict[str, float]]) -> list[dict[str, float | None]]:
    """A log without its timings, NaN as None (NaN != NaN)."""
    return [{k: None if v != v else v for k, v in row.items() if k != "seconds"} for row in log]


def read_log(folder) -> list[dict[str, str]]:
    with open(folder / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("recipe", [Recipe("standard"), Recipe("pgd-at", eps=0.03, steps=2),
                                    Recipe("fgsm-rs", eps=0.03), Recipe("standard", gradnorm=True),
                                    Recipe("standard", train_temperature=10.0)],
                         ids=["standard", "embedding-pgd-at", "fgsm-rs", "gradnorm", "high-temp"])
def test_text_recipes_train_and_track_calibration(recipe, tmp_path):
    train_data, validation = halves()
    run = train(untrained(), train_data, validation, recipe, epochs=3, out=tmp_path / "run", batch_size=8,
                lr=1e-2)
    assert run.log[-1]["train_loss"] < run.log[0]["train_loss"]
    last = run.log[-1]
    assert last["clean_accuracy"] > 0.8  # the two polarity words are easy to learn
    for where in ("clean", "adv", "frozen"):
        assert 0 <= last[f"{where}_ece"] <= 1 and last[f"{where}_nll"] > 0
    assert (last["grad_norm"] > 0) == recipe.gradnorm
    assert len(read_log(tmp_path / "run")) == 3
    frozen = load_file(tmp_path / "run" / "frozen-validation.safetensors")
    assert frozen["delta"].ndim == 3 and frozen["mask"].shape == frozen["delta"].shape[:2]
    token_norms = frozen["delta"].norm(dim=-1)[frozen["mask"].bool()]
    assert float(token_norms.max()) <= recipe.eps * (1 + 1e-5) + 1e-6  # the tracking attack's ball
    settings = json.loads((tmp_path / "run" / "run.json").read_text())
    assert settings["train"]["n_samples"] == 64 and settings["recipe"]["name"] == recipe.name


def test_embedding_pgd_at_is_deterministic_and_resumes_exactly(tmp_path):
    train_data, validation = halves()
    recipe = Recipe("pgd-at", eps=0.03, steps=2, seed=3)
    whole = train(untrained(), train_data, validation, recipe, epochs=2, out=tmp_path / "a", batch_size=8)
    again = train(untrained(), train_data, validation, recipe, epochs=2, out=tmp_path / "b", batch_size=8)
    # A run stopped after its first epoch (as if killed), then resumed from its checkpoint.
    with pytest.raises(_Killed):  # raised once the first epoch's checkpoint is written
        train(untrained(), train_data, validation, recipe, epochs=2, out=tmp_path / "c", batch_size=8,
              on_epoch=_stop_after_first)
    assert len(read_log(tmp_path / "c")) == 1
    resumed = train(untrained(), train_data, validation, recipe, epochs=2, out=tmp_path / "c", batch_size=8,
                    resume=True)
    assert comparable(whole.log) == comparable(again.log) == comparable(resumed.log)
    state_a = whole.model.state_dict()
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, state_a[key]), key


def test_head_only_trains_only_the_head_and_restores_the_flags(tmp_path):
    train_data, validation = halves()
    model = untrained()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run = train(model, train_data, validation, Recipe("standard", head_only=True), epochs=1,
                out=tmp_path / "run", batch_size=8, lr=1e-2)
    head = {"body.model.classifier.weight", "body.model.classifier.bias"}
    for key, value in run.model.state_dict().items():
        assert torch.equal(value, before[key]) == (key not in head), key
    assert all(p.requires_grad for p in run.model.parameters())


def test_text_training_refuses_what_it_cannot_do(tmp_path):
    train_data, validation = halves()
    with pytest.raises(ConfigError, match="trades"):
        train(untrained(), train_data, validation, Recipe("trades"), epochs=1, out=tmp_path / "t")
    with pytest.raises(ConfigError, match="pre_head_temperature"):
        train(untrained(), train_data, validation, Recipe("standard", pre_head_temperature=True), epochs=1,
              out=tmp_path / "p")
    with pytest.raises(ConfigError, match="TextClassifier"):
        train(DigitsCNN(), train_data, validation, Recipe("standard"), epochs=1, out=tmp_path / "d")
    with pytest.raises(InputError, match="train_data"):
        train(untrained(), {"texts": []}, validation, Recipe("standard"), epochs=1, out=tmp_path / "x")


def test_advcal_train_fine_tunes_a_local_hf_folder(tmp_path, capsys):
    folder = untrained().save_pretrained(tmp_path / "start")
    path = tmp_path / "reviews.jsonl"
    data = corpus()
    path.write_text("".join(json.dumps({"review": t, "stars": int(y)}) + "\n"
                            for t, y in zip(data.texts, data.labels, strict=True)))
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as done:
        main(["train", "--model", f"hf:{folder}", "--data", f"jsonl:{path}", "--text-column", "review",
              "--label-column", "stars", "--recipe", "pgd-at", "--eps", "0.03", "--steps", "2",
              "--epochs", "10", "--lr", "0.003",  # past the plateau a tiny random BERT sits on first
              "--batch-size", "8", "--val-limit", "16", "--out", str(out)])
    assert done.value.code == 0
    assert "hf:" in capsys.readouterr().out
    tuned = from_hf(out / "model")
    assert len(read_log(out)) == 10
    with torch.no_grad():
        accuracy = float((tuned(data.texts).argmax(1) == torch.from_numpy(data.labels)).float().mean())
    assert accuracy > 0.8
