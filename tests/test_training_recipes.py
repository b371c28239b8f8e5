"""Training recipes: each trains, each keeps its own property, the log, and resume after a kill."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from advcal.cli import main
from advcal.data import load_data
from advcal.errors import ConfigError
from advcal.models import DigitsCNN
from advcal.training import COLUMNS, PreHeadTemperature, Recipe, learning_rate, normalise_gradients, train


@pytest.fixture(scope="module")
def small():
    return load_data("digits", split="train", limit=240), load_data("digits", split="calibration", limit=60)


def fresh() -> DigitsCNN:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return DigitsCNN()


@pytest.mark.parametrize("recipe", [Recipe("standard"), Recipe("pgd-at", steps=3), Recipe("trades", steps=3),
                                    Recipe("fgsm-rs"), Recipe("pgd-at", steps=2, train_temperature=100.0)])
def test_each_recipe_lowers_its_loss_and_logs_every_column(recipe, small, tmp_path):
    train_data, validation = small
    run = train(fresh(), train_data, validation, recipe, epochs=3, out=tmp_path / "run", batch_size=32)
    assert run.log[-1]["train_loss"] < run.log[0]["train_loss"]
    with open(tmp_path / "run" / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 3
    assert run.log[-1]["clean_accuracy"] > 0.5


def test_sgd_training_with_gradnorm_takes_unit_norm_steps(small, tmp_path):
    train_data, validation = small
    model = fresh()
    before = [p.detach().clone() for p in model.parameters()]
    # One full batch, so one SGD step: its length is the learning rate.
    run = train(model, train_data, validation, Recipe("standard", gradnorm=True), epochs=1,
                out=tmp_path / "r", batch_size=len(train_data), lr=0.1, optimizer="sgd")
    moved = [(p.detach() - b).norm() for p, b in zip(run.model.parameters(), before, strict=True)]
    assert torch.linalg.vector_norm(torch.stack(moved)).item() == pytest.approx(0.1, rel=1e-4)
    assert 0 < run.log[0]["grad_norm"] != pytest.approx(1.0)  # the norm before scaling, logged
    with pytest.raises(ConfigError, match="optimizer: expected one of adam, sgd"):
        train(fresh(), train_data, validation, Recipe("standard"), epochs=1, out=tmp_path / "x",
              optimizer="lion")


def test_the_cosine_schedule_warms_up_linearly_then_decays_to_zero(small, tmp_path):
    assert [learning_rate(s, 10, 1.0, "constant", 4) for s in (0, 3, 4, 9)] == [0.25, 1.0, 1.0, 1.0]
    assert learning_rate(4, 10, 1.0, "constant", 4.5) == 1.0  # a fractional warm-up never overshoots
    assert [learning_rate(s, 10, 1.0, "cosine", 0) for s in (0, 5)] == [1.0, pytest.approx(0.5)]
    assert learning_rate(9.999, 10, 1.0, "cosine", 0) == pytest.approx(0.0, abs=1e-6)
    train_data, validation = small  # 240 samples, batch 80: 3 steps per epoch, 12 in all
    run = train(fresh(), train_data, validation, Recipe("standard"), epochs=4, out=tmp_path / "r",
                batch_size=80, lr=0.3, optimizer="sgd", schedule="cosine", warmup_epochs=1)
    # Each row logs its epoch's last step: 2 (end of warm-up), then 5, 8, 11 of the 9 cosine steps.
    cosine = [0.3 * 0.5 * (1 + math.cos(math.pi * k / 9)) for k in (2, 5, 8)]
    assert [row["lr"] for row in run.log] == pytest.approx([0.3, *cosine])
    assert json.loads((tmp_path / "r" / "run.json").read_text())["schedule"] == "cosine"
    with pytest.raises(ConfigError, match="warmup_epochs"):
        train(fresh(), train_data, validation, Recipe("standard"), epochs=2, out=tmp_path / "x",
              warmup_epochs=2)


def test_gradnorm_scales_the_global_gradient_norm_to_one():
    model = fresh()
    loss = model(torch.rand(8, 1, 8, 8)).logsumexp(1).sum() * 100
    loss.backward()
    before = normalise_gradients(model)
    after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert before > 1 and after.item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", ["standard", "pgd-at", "trades", "fgsm-rs"])
def test_batchnorm_statistics_stop_moving_after_the_freeze_point(name, small, tmp_path):
    train_data, validation = small
    model = fresh()
    snapshots = []

    def keep(row: dict) -> None:
        snapshots.append({k: v.clone() for k, v in model.state_dict().items() if "running" in k})

    run = train(model, train_data, validation, Recipe(name, steps=2, freeze_bn_last=0.5), epochs=4,
                out=tmp_path / "run", batch_size=32, on_epoch=keep)
    assert [row["bn_frozen"] for row in run.log] == [0.0, 0.0, 1.0, 1.0]
    assert snapshots and all(not torch.equal(snapshots[0][k], snapshots[1][k]) for k in snapshots[0])
    assert all(torch.equal(snapshots[1][k], snapshots[3][k]) for k in snapshots[1])  # frozen from epoch 2


def test_the_pre_head_temperature_is_learned_and_saved(small, tmp_path):
    train_data, validation = small
    run = train(fresh(), train_data, validation, Recipe("standard", pre_head_temperature=True), epochs=2,
                out=tmp_path / "run", batch_size=32)
    assert isinstance(run.model, PreHeadTemperature) and "log_temperature" in run.model.state_dict()
    assert run.log[-1]["pre_head_temperature"] != 1.0
    with pytest.raises(ConfigError, match=r"no nn\.Linear head"):
        PreHeadTemperature(torch.nn.Conv2d(1, 2, 3))


def test_a_finished_run_is_not_overwritten_and_another_recipe_is_not_resumed(small, tmp_path):
    train_data, validation = small
    train(fresh(), train_data, validation, Recipe("standard"), epochs=1, out=tmp_path / "run")
    with pytest.raises(ConfigError, match="already holds a training run"):
        train(fresh(), train_data, validation, Recipe("standard"), epochs=1, out=tmp_path / "run")
    with pytest.raises(ConfigError, match="another recipe or schedule"):
        train(fresh(), train_data, validation, Recipe("fgsm-rs"), epochs=1, out=tmp_path / "run", resume=True)


TRAIN_ARGS = ["train", "--recipe", "pgd-at", "--steps", "2", "--epochs", "6", "--val-limit", "40",
              "--batch-size", "64", "--seed", "4", "--optimizer", "sgd", "--lr", "0.05",
              "--schedule", "cosine", "--warmup-epochs", "1.5"]


def without_seconds(path) -> list[dict[str, str]]:
    with open(path) as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def test_a_killed_run_resumes_to_the_weights_and_log_of_an_uninterrupted_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([*TRAIN_ARGS, "--out", str(tmp_path / "whole")])
    assert stopped.value.code == 0, capsys.readouterr().err
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-m", "advcal", *TRAIN_ARGS, "--out", str(tmp_path / "cut")],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "cut" / "checkpoint.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # kill it once two epochs are checkpointed
        try:
            if json.loads(state.read_text())["epoch"] >= 1:
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert json.loads(state.read_text())["epoch"] < 5, "the run finished before it could be killed"
    with pytest.raises(SystemExit) as stopped:
        main([*TRAIN_ARGS, "--out", str(tmp_path / "cut"), "--resume"])
    assert stopped.value.code == 0, capsys.readouterr().err
    for name in ("model.safetensors", "frozen-validation.safetensors"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    # The checkpoint's tensors (its header holds the log, wall-clock seconds and all)
    cut, whole = (load_file(str(tmp_path / run / "checkpoint.safetensors")) for run in ("cut", "whole"))
    assert cut.keys() == whole.keys() and all(torch.equal(cut[k], whole[k]) for k in cut)
    assert without_seconds(tmp_path / "cut" / "log.csv") == without_seconds(tmp_path / "whole" / "log.csv")


def test_the_training_report_and_tensorboard_follow_every_epoch(small, tmp_path, monkeypatch):
    import advcal.training.run as run_module

    scalars = []

    class Board:  # stands in for tensorboard's SummaryWriter, which is optional
        def add_scalar(self, key: str, value: float, step: int) -> None:
            scalars.append((key, step))

        def flush(self) -> None:
            pass

        def close(self) -> None:
            scalars.append(("closed", -1))

    monkeypatch.setattr(run_module, "tensorboard_writer", lambda folder: Board())
    train_data, validation = small
    train(fresh(), train_data, validation, Recipe("standard"), epochs=2, out=tmp_path / "run", batch_size=32)
    page = (tmp_path / "run" / "training-report.html").read_text()
    assert page.count("<tr><td>") == 2 and "data:image/png;base64," in page and "http" not in page
    assert ("clean_ece", 0) in scalars and ("frozen_accuracy", 1) in scalars and scalars[-1] == ("closed", -1)
