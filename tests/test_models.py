"""Loading models from specs and weights, the wrappers, and the training loop."""

from __future__ import annotations

import hashlib
import json
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from advcal.attacks import PGD
from advcal.errors import ConfigError, InputError
from advcal.models import (
    DigitsCNN,
    Normalized,
    TemperatureScaled,
    load_model,
    load_weights,
    parse_normalize,
)
from advcal.training import train_classifier
from conftest import require_system_package

FACTORY = textwrap.dedent(
    """
    import torch

    def make():
        torch.manual_seed(3)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))

    def not_a_model():
        return 42
    """
)


@pytest.fixture
def factory_file(tmp_path):
    path = tmp_path / "my_model.py"
    path.write_text(FACTORY)
    return path


def test_factory_specs_from_a_file_and_from_a_module(factory_file, monkeypatch):
    from_file = load_model(f"{factory_file}:make")
    monkeypatch.syspath_prepend(str(factory_file.parent))
    from_module = load_model("my_model:make")
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(from_file(x), from_module(x))
    assert not from_file.training


def test_a_factory_that_does_not_seed_gives_the_same_model_every_time(tmp_path):
    # Random initial weights drawn from torch's global generator: advcal draws them from a
    # fixed seed in a forked generator, so the same spec audits the same model on every run,
    # and the caller's own random state is untouched.
    path = tmp_path / "unseeded.py"
    path.write_text("import torch\n\ndef make():\n    return torch.nn.Linear(64, 10)\n")
    before = torch.random.get_rng_state()
    first, second = (load_model(f"{path}:make") for _ in range(2))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(first.weight, second.weight) and torch.equal(first.bias, second.bias)


def test_weights_round_trip_through_safetensors_and_a_plain_state_dict(tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        source = DigitsCNN().eval()
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save(source.state_dict(), tmp_path / "w.pt")
    x = torch.rand(5, 1, 8, 8)
    for name in ("w.safetensors", "w.pt"):
        target = DigitsCNN().eval()
        load_weights(target, tmp_path / name)
        assert torch.equal(target(x), source(x))


class _NotAStateDict:
    pass


def test_pickled_code_is_refused(tmp_path):
    torch.save({"payload": _NotAStateDict()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match=r"weights: cannot read .*evil\.pt \(it holds pickled Python "
                       r"objects, not only tensors.*expected a state dict saved with "
                       r"torch\.save\(model\.state_dict\(\), PATH\)"):
        load_weights(DigitsCNN(), tmp_path / "evil.pt")


@pytest.mark.parametrize(
    ("spec", "weights", "error", "match"),
    [
        ("resnet-9000", None, ConfigError, "neither a built-in model"),
        ("missing_file.py:make", None, InputError, "missing_file.py does not exist"),
        ("no_such_module_xyz:make", None, InputError, "cannot import 'no_such_module_xyz'"),
        ("{file}:absent", None, InputError, "has no callable 'absent'"),
        ("{file}:not_a_model", None, InputError, "returned int, expected a torch.nn.Module"),
        ("{file}:make", "nowhere.safetensors", InputError, "weights: nowhere.safetensors does not exist"),
        ("{file}:make", "{dir}/w.bin", InputError, "expected a .safetensors, .pt, .pth file"),
        ("{file}:make", "{dir}/digits.safetensors", InputError, "does not fit the model"),
    ],
)
def test_bad_model_specs_name_the_problem(factory_file, spec, weights, error, match):
    directory = factory_file.parent
    save_file(DigitsCNN().state_dict(), str(directory / "digits.safetensors"))
    (directory / "w.bin").write_bytes(b"\0")
    spec = spec.format(file=factory_file)
    weights = None if weights is None else weights.format(dir=directory)
    with pytest.raises(error, match=match):
        load_model(spec, weights=weights)


def test_normalisation_and_temperature_wrappers(factory_file):
    mean, std = parse_normalize("0.5,0.25")
    assert (mean, std) == ([0.5], [0.25])
    assert parse_normalize("0.1,0.2,0.3,1,2,3") == ([0.1, 0.2, 0.3], [1.0, 2.0, 3.0])
    for bad in ("0.5", "a,b", "1,2,3"):
        with pytest.raises(InputError, match="normalize: expected"):
            parse_normalize(bad)
    inner = load_model(f"{factory_file}:make")
    wrapped = load_model(f"{factory_file}:make", normalize=(mean, std))
    assert isinstance(wrapped, Normalized)
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(wrapped(x), inner((x - 0.5) / 0.25))
    torch.testing.assert_close(TemperatureScaled(inner, 2.0)(x), inner(x) / 2)
    with pytest.raises(InputError, match="temperature: expected a positive finite number"):
        TemperatureScaled(inner, 0.0)
    with pytest.raises(InputError, match="std: expected positive values"):
        Normalized(inner, [0.5], [0.0])


def test_training_is_deterministic_and_adversarial_training_uses_the_attack(digits_data):
    x, y, _, _ = digits_data
    x, y = x[:256], y[:256]

    def run(attack):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = DigitsCNN()
        logs = train_classifier(model, x, y, epochs=2, batch_size=64, seed=5, attack=attack)
        return model, logs

    first, logs = run(None)
    second, _ = run(None)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert len(logs) == 2 and logs[1].loss < logs[0].loss and not first.training
    adversarial, adv_logs = run(PGD(eps=0.1, steps=2, alpha=0.05))
    assert adv_logs[0].loss > logs[0].loss  # adversarial batches are harder
    assert not torch.equal(adversarial.head.weight, first.head.weight)
    with pytest.raises(InputError, match="epochs: expected an integer >= 1"):
        train_classifier(first, x, y, epochs=0)


@pytest.mark.parametrize(("name", "min_robust"), [("digits-cnn", 0.3), ("digits-cnn-at", 0.8)])
def test_shipped_reference_models(name, min_robust):
    """The shipped weights load, are the ones their record describes, and perform as recorded."""
    from advcal.data import load_data
    from advcal.models.loading import BUILTIN_MODELS, WEIGHTS_DIR

    path = WEIGHTS_DIR / BUILTIN_MODELS[name].weights
    record = json.loads(path.with_suffix(".json").read_text())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["weights_sha256"]
    model = load_model(name)
    test = load_data("digits", split="test")
    accuracy = float((model(test.x).argmax(1) == test.y).float().mean())
    assert accuracy == pytest.approx(record["test_accuracy"], abs=1e-6) and accuracy > 0.97
    robust = PGD(eps=0.1, steps=20, alpha=0.01, seed=0)(model, test.x, test.y, index=test.index)
    assert robust.robust_accuracy == pytest.approx(record["test_robust_accuracy"]["value"], abs=1e-6)
    assert robust.robust_accuracy > min_robust


@pytest.mark.parametrize(("name", "min_clean", "min_robust"), [("fashion-cnn", 0.88, 0.0),
                                                              ("fashion-cnn-at", 0.75, 0.6)])
def test_shipped_fashion_models_perform_as_recorded(name, min_clean, min_robust):
    """The 28x28 reference models: their record's checks, re-measured on 500 test images."""
    from advcal.data import load_data
    from advcal.data.fashion_mnist import DEFAULT_DIR
    from advcal.models.loading import BUILTIN_MODELS, WEIGHTS_DIR

    require_system_package(DEFAULT_DIR.is_dir(), "Fashion-MNIST", "apt-get install dataset-fashion-mnist")
    path = WEIGHTS_DIR / BUILTIN_MODELS[name].weights
    record = json.loads(path.with_suffix(".json").read_text())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["weights_sha256"]
    assert record["test_accuracy"] > min_clean and record["test_robust_accuracy"]["value"] > min_robust
    model = load_model(name)
    test = load_data("fashion-mnist", split="test", limit=record["check"]["limit"])
    with torch.no_grad():
        accuracy = float((model(test.x).argmax(1) == test.y).float().mean())
    assert accuracy == pytest.approx(record["check"]["test_accuracy"], abs=1e-6)
    attack = record["test_robust_accuracy"]
    robust = PGD(eps=attack["eps"], steps=attack["steps"], alpha=attack["alpha"], seed=0)(
        model, test.x, test.y, index=test.index)
    assert robust.robust_accuracy == pytest.approx(record["check"]["test_robust_accuracy"], abs=1e-6)


@pytest.mark.slow
def test_advcal_audit_runs_on_the_fashion_models(tmp_path, capsys):
    """The 28x28 reference models give `advcal audit --data fashion-mnist` real models to audit."""
    from advcal.cli import main
    from advcal.data.fashion_mnist import DEFAULT_DIR

    require_system_package(DEFAULT_DIR.is_dir(), "Fashion-MNIST", "apt-get install dataset-fashion-mnist")
    with pytest.raises(SystemExit) as done:
        main(["audit", "--model", "fashion-cnn", "--model", "fashion-cnn-at", "--data", "fashion-mnist",
              "--limit", "200", "--steps", "10", "--bootstrap", "20", "--out", str(tmp_path / "r")])
    assert done.value.code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["config"]["epsilons"] == [0.05, 0.1, 0.2]
    standard, robust = ({a["eps"]: a["metrics"]["accuracy"] for a in m["attacks"]} for m in report["models"])
    assert robust[0.1] > standard[0.1] + 0.3  # adversarial training shows
