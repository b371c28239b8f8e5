"""The illusion-of-robustness detector on the demonstration models, and its building blocks."""

from __future__ import annotations

import json
import math

import pytest
import torch

from advcal.analyses.illusion import check_illusion, log_grid, optimise_temperature
from advcal.attacks import PGD
from advcal.calibration import fit_temperature
from advcal.cli import main
from advcal.data import load_data
from advcal.errors import ConfigError, InputError
from advcal.models import load_model
from conftest import require_system_package

EPS = 0.1


@pytest.fixture(scope="module")
def splits():
    return load_data("digits", split="test"), load_data("digits", split="calibration")


@pytest.fixture(scope="module")
def true_pgd_accuracy(splits):
    """digits-cnn's own PGD-20 accuracy: what every demonstration model really has."""
    test, _ = splits
    result = PGD(eps=EPS, steps=20, seed=0)(load_model("digits-cnn"), test.x, test.y, index=test.index)
    return result.robust_accuracy


@pytest.mark.parametrize("name", ["digits-cnn-cold", "digits-cnn-hot"])
def test_miscalibrated_serving_is_called_an_illusion_and_pierced(name, splits, true_pgd_accuracy):
    test, calibration = splits
    model = load_model(name)
    same = load_model("digits-cnn")(test.x).argmax(1)
    assert torch.equal(model(test.x).argmax(1), same)  # the same predictions, another temperature
    found = check_illusion(model, test, calibration, EPS)
    assert found.verdict == "illusion", found.reasons
    assert found.served_adv_accuracy > true_pgd_accuracy + 0.1  # inflated by the temperature
    assert abs(found.best_adv_accuracy - true_pgd_accuracy) <= 0.02  # and pierced
    assert found.best_check in ("cal", "margin", "dlr")
    assert found.cost["settled_by_cheap_checks"]
    assert found.cost["runs_of_served_pgd"] < 6  # the cheap checks cost under 6 PGD runs


def test_the_cold_model_shows_its_masked_gradients(splits):
    test, calibration = splits
    found = check_illusion(load_model("digits-cnn-cold"), test, calibration, EPS)
    assert found.checks["gradients"]["vanishing_gradient_share"] > 0.9
    assert found.checks["sanity"]["unbounded_attack_fails"]
    assert found.checks["cal"]["temperature"] == pytest.approx(1e3, rel=0.5)  # undoes T = 1e-3
    assert any("vanishing input gradient" in reason for reason in found.reasons)


def test_a_genuinely_robust_model_is_not_called_an_illusion(splits):
    test, calibration = splits
    found = check_illusion(load_model("digits-cnn-at"), test, calibration, EPS)
    assert found.verdict == "genuine", found.reasons
    assert found.best_adv_accuracy >= found.served_adv_accuracy - 0.03
    assert found.checks["gradients"]["vanishing_gradient_share"] == 0.0


def test_full_run_sweeps_temperature_and_opt_agrees_with_the_grid(splits):
    test = load_data("digits", split="test", limit=150)
    calibration = load_data("digits", split="calibration", limit=150)
    found = check_illusion(load_model("digits-cnn-cold"), test, calibration, EPS, full=True,
                           square_queries=100)
    curve = found.checks["sweep"]["curve"]
    assert [row["temperature"] for row in curve] == pytest.approx(log_grid(1e-3, 1e6))
    accuracies = [row["adv_accuracy"] for row in curve]
    lowest = min(accuracies)
    assert accuracies[0] > lowest + 0.2  # the U: cold end high, a minimum inside
    assert [row["mean_confidence"] for row in curve] == sorted((row["mean_confidence"] for row in curve),
                                                               reverse=True)
    opt = found.checks["opt"]
    assert opt["agrees_with_grid"] and opt["search"]["evaluations"] <= 12
    assert {"sweep", "opt", "square"} <= set(found.checks)


def test_temperature_search_finds_the_bottom_of_a_u_in_few_probes():
    calls = []

    def accuracy_at(t: float) -> float:
        calls.append(t)
        return min(1.0, 0.3 + 0.1 * abs(math.log10(t) - 2.6))  # minimum at T = 10^2.6

    search = optimise_temperature(accuracy_at)
    assert abs(math.log10(search.temperature) - 2.6) < 0.35
    assert search.evaluations == len(set(calls)) <= 12
    flat = optimise_temperature(lambda t: 0.5)  # no T helps: every decade probed, T = 1 kept
    assert flat.temperature == 1.0 and flat.evaluations == len(log_grid(1e-6, 1e9))
    # A plateau around T = 1 (a saturated softmax) is widened until accuracy starts to fall.
    cold = optimise_temperature(lambda t: 0.98 if t < 50 else 0.6 + 0.05 * abs(math.log10(t) - 3))
    assert cold.accuracy == pytest.approx(0.6, abs=0.02) and cold.evaluations <= 12


def test_fit_temperature_recovers_the_temperature_of_overconfident_logits():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4000, 5, generator=generator, dtype=torch.float64) * 2
    labels = torch.multinomial(torch.softmax(logits, 1), 1, generator=generator).squeeze(1)
    assert fit_temperature(logits * 7, labels) == pytest.approx(7, rel=0.1)
    with pytest.raises(InputError, match="labels: expected 4000 class indices"):
        fit_temperature(logits, labels[:10])


def test_cli_writes_the_verdict_json_and_refuses_bad_budgets(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["illusion", "--model", "digits-cnn-cold", "--limit", "100", "--steps", "10",
              "--json", str(tmp_path / "v.json")])
    assert stopped.value.code == 0
    found = json.loads((tmp_path / "v.json").read_text())
    keys = {"verdict", "served_adv_accuracy", "best_adv_accuracy", "best_check", "checks", "attack_runs"}
    assert keys <= set(found)
    assert found["verdict"] == "illusion" and found["model"] == "digits-cnn-cold"
    assert "ILLUSION" in capsys.readouterr().out
    for bad, message in (("0.1,0.2", "eps: expected one budget"), ("8", "eps: expected a budget in (0, 1)")):
        with pytest.raises(SystemExit) as stopped:
            main(["illusion", "--eps", bad, "--limit", "50"])
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_the_audit_reports_the_illusion_check(tmp_path):
    import jsonschema

    from advcal.analyses.audit import audit, report_schema

    models = {"cold": load_model("digits-cnn-cold"), "at": load_model("digits-cnn-at")}
    result = audit(models, load_data("digits", limit=120), [0.05, 0.1, 0.2], attack_params={"steps": 10},
                   bootstrap=0, illusion=True)
    report = result.to_dict()
    jsonschema.validate(report, report_schema())
    cold, robust = report["models"]
    assert cold["illusion"]["verdict"] == "illusion" and cold["illusion"]["settings"]["eps"] == 0.1
    assert robust["illusion"]["verdict"] == "genuine"
    assert [f["severity"] for f in cold["flags"] if f["code"] == "ILLUSION_OF_ROBUSTNESS"] == ["error"]
    assert not [f for f in robust["flags"] if f["code"] in ("ILLUSION_OF_ROBUSTNESS", "SUSPECT_ROBUSTNESS")]
    html = result.to_html(tmp_path / "report.html").read_text()
    assert html.count("Is this robustness real?") == 2 and "illusion</span>" in html
    with pytest.raises(ConfigError, match="no separate calibration split"):
        audit(models, load_data("digits", split="calibration", limit=30), [0.1], bootstrap=0, illusion=True)


class _Brightness(torch.nn.Module):
    """Robust by construction: classifies an image by its mean brightness, classes centred at 0.1,
    0.5 and 0.9. An L∞ budget ε moves the mean by at most ε, so at ε < 0.18 no input of the data
    below (pixels within 0.02 of a centre) can cross a boundary (0.3, 0.7): robust accuracy is
    exactly 1. At ε = 0.5 every class can be moved into another's region."""

    centres = torch.tensor([0.1, 0.5, 0.9])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.flatten(1).mean(1, keepdim=True)
        return -50 * (mean - self.centres.to(x)) ** 2


def _brightness_data(split: str, n: int = 150):
    from advcal.data import DataSource

    generator = torch.Generator().manual_seed(0 if split == "test" else 1)
    y = torch.arange(n) % 3
    noise = 0.02 * (2 * torch.rand(n, 1, 8, 8, generator=generator) - 1)
    x = (_Brightness.centres[y].view(-1, 1, 1, 1) + noise).clamp(0, 1).float()
    return DataSource("brightness", split, x, y, torch.arange(n), ["dark", "grey", "light"])


def test_a_model_robust_by_construction_is_genuine_and_the_unbounded_attack_breaks_it():
    test, calibration = _brightness_data("test"), _brightness_data("calibration")
    found = check_illusion(_Brightness(), test, calibration, EPS)
    assert found.served_adv_accuracy == 1.0 and found.best_adv_accuracy == 1.0  # known: exactly 1
    sanity = found.checks["sanity"]
    assert sanity["unbounded_eps"] == 0.5
    assert sanity["unbounded_adv_accuracy"] <= sanity["unbounded_threshold"]
    assert sanity["chance_accuracy"] == pytest.approx(1 / 3)
    assert found.verdict == "genuine", found.reasons


@pytest.mark.slow
def test_the_shipped_adversarially_trained_fashion_model_is_genuine():
    from advcal.data import fashion_mnist

    require_system_package(fashion_mnist.DEFAULT_DIR.is_dir(), "Fashion-MNIST",
                           "apt-get install dataset-fashion-mnist")
    test = load_data("fashion-mnist", split="test", limit=300)
    calibration = load_data("fashion-mnist", split="calibration", limit=300)
    found = check_illusion(load_model("fashion-cnn-at"), test, calibration, EPS)
    assert found.verdict == "genuine", found.reasons
    assert not found.checks["sanity"]["unbounded_attack_fails"]


def test_autoattack_as_one_more_check():
    test, calibration = _brightness_data("test", 60), _brightness_data("calibration", 60)
    found = check_illusion(_Brightness(), test, calibration, EPS, attack="autoattack")
    assert found.checks["autoattack"]["adv_accuracy"] == 1.0 and found.verdict == "genuine"
    assert found.settings["attack"] == "autoattack"
