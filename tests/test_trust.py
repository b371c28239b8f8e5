"""Sign-off trust: the verdict and --fail-on, grouped flags, and no silent wrong answer — random
weights, two checkpoints of one spec, API and CLI defaults, a user's file cut to a split, a
model that does not fit the data. CLI cases run the real command in a subprocess."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
from safetensors.torch import save_file

import advcal
from advcal.analyses.audit import report_schema
from advcal.data import load_data
from advcal.models import load_model
from advcal.models.provenance import unique_names
from advcal.report.console import grouped_flags
from advcal.report.html import render_html
from advcal.results.verdict import comparison, model_verdict, reaches
from conftest import advcal_cli, one_line_error

FAST = ["--eps", "0.1", "--steps", "2", "--bootstrap", "0"]
FACTORY = ("import torch\nfrom advcal.models import DigitsCNN\n"
           "def net():\n    torch.manual_seed(0)\n    return DigitsCNN()\n")


def flag(code: str, severity: str, eps: float | None, **evidence: object) -> dict[str, object]:
    return {"code": code, "severity": severity, "message": f"{code} message.", "eps": eps,
            "evidence": evidence}


# ----------------------------------------------------------------------------- the verdict
def test_verdict_levels_reasons_and_per_eps():
    flags = [flag("ECE_DELTA", "warning", 0.05, delta=0.07), flag("ECE_DELTA", "error", 0.1, delta=0.24),
             flag("ECE_DELTA", "error", 0.2, delta=0.5), flag("ECE_INFLECTION", "info", 0.2)]
    verdict = model_verdict(flags, [0.02, 0.05, 0.1, 0.2])
    assert verdict.level == "fail"
    assert verdict.reason == ("fail: calibration breaks at ε = 0.1, 0.2 (ΔECE +0.24 at ε = 0.1, error); "
                              "holds at ε = 0.02")
    assert [row["level"] for row in verdict.per_eps] == ["pass", "warn", "fail", "fail"]
    assert verdict.per_eps[1]["reason"] == ("calibration degrades at ε = 0.05 (ΔECE +0.07 at ε = 0.05, "
                                            "warning)")
    # A clean-input flag decides every ε; chance accuracy outranks everything else.
    voided = model_verdict([*flags, flag("CHANCE_ACCURACY", "error", None)], [0.02, 0.1])
    assert voided.reason.startswith("fail: CHANCE_ACCURACY message (CHANCE_ACCURACY, error)")
    assert [row["level"] for row in voided.per_eps] == ["fail", "fail"]
    clean = model_verdict([flag("ECE_INFLECTION", "info", 0.1)], [0.05, 0.1])
    assert clean.level == "pass"
    assert clean.reason == "pass: no warning or error flag, clean or at ε = 0.05, 0.1"


def test_fail_on_thresholds():
    assert reaches(["pass", "fail"], "error") and not reaches(["pass", "warn"], "error")
    assert reaches(["warn"], "warning") and not reaches(["pass"], "warning")
    assert not reaches(["fail"], "never")
    with pytest.raises(advcal.errors.ConfigError, match="fail_on: expected one of error, warning, never"):
        reaches(["pass"], "always")


def test_comparison_names_the_better_calibrated_model_and_skips_one_at_chance():
    def model(name, eces, flags=()):
        return {"name": name, "flags": list(flags),
                "attacks": [{"eps": e, "metrics": {"ece": v}} for e, v in zip((0.1, 0.2), eces, strict=True)]}
    found = comparison([model("a", [0.1, 0.4]), model("b", [0.05, 0.15])])
    assert found["better_calibrated"] == "b" and found["margin"] == pytest.approx(0.25)
    assert found["sentence"].startswith("b is the better calibrated under attack: its worst adversarial ECE "
                                        "is 0.150 (at ε = 0.2) against 0.400 for a")
    chance = [flag("CHANCE_ACCURACY", "error", None)]
    at_chance = comparison([model("a", [0.1, 0.4]), model("b", [0.0, 0.0], chance)])
    assert at_chance["better_calibrated"] == "a"


def test_flags_are_grouped_one_row_per_code():
    flags = [flag("ECE_DELTA", "error", e, delta=0.2) for e in (0.1, 0.2)]
    flags.append(flag("FEW_CLASS_SAMPLES", "info", None))
    groups = grouped_flags(flags)
    assert [(g["code"], g["eps"], g["count"]) for g in groups] == [("ECE_DELTA", [0.1, 0.2], 2),
                                                                   ("FEW_CLASS_SAMPLES", [], 1)]


@pytest.mark.slow
def test_default_audit_verdicts_in_json_html_console_and_exit_status(default_audit):
    done, out = default_audit
    report = json.loads((out / "report.json").read_text())
    jsonschema.validate(report, report_schema())
    verdicts = {m["name"]: m["verdict"] for m in report["models"]}
    assert verdicts["digits-cnn"]["level"] == "fail"
    assert verdicts["digits-cnn"]["reason"].startswith("fail: calibration breaks at ε = 0.1")
    assert report["comparison"]["better_calibrated"] == "digits-cnn-at"
    # --fail-on error: exit 1, and only after every output was written.
    assert done.returncode == 1 and "reaches --fail-on error" in done.stderr
    assert all((out / name).is_file() for name in ("report.json", "report.html", "samples.npz"))
    assert "digits-cnn — fail: calibration breaks" in " ".join(done.stdout.split())
    page = (out / "report.html").read_text()
    assert page.index('class="verdict"') < page.index("<header>")  # before anything else
    assert "digits-cnn-at is the better calibrated under attack" in page
    # One row per flag code in the HTML: the ECE_DELTA errors at 0.1 and 0.2 are one row.
    section = page[page.index("<h2>Model digits-cnn</h2>"):page.index("<h2>Model digits-cnn-at</h2>")]
    groups = {(f["code"], f["severity"]) for f in report["models"][0]["flags"]}
    assert section.count("<code title=") == len(groups) < len(report["models"][0]["flags"])


def test_fail_on_never_exits_0_and_a_bad_choice_exits_2(tmp_path):
    done = advcal_cli("audit", "--model", "digits-cnn", "--limit", "40", *FAST, "--out", str(tmp_path / "o"))
    assert done.returncode == 0, done.stderr  # --fail-on never is the default
    bad = advcal_cli("audit", "--fail-on", "sometimes", "--out", str(tmp_path / "p"))
    assert "fail_on: expected one of error, warning, never, got 'sometimes'" in one_line_error(bad)
    assert not (tmp_path / "p").exists()


def test_illusion_fail_on(tmp_path):
    common = ["illusion", "--limit", "60", "--steps", "5"]
    done = advcal_cli(*common, "--fail-on", "illusion", "--json", str(tmp_path / "found.json"))
    assert done.returncode == 1 and json.loads((tmp_path / "found.json").read_text())["verdict"] == "illusion"
    assert advcal_cli(*common).returncode == 0
    assert "fail_on: expected one of illusion, suspect, never" in one_line_error(
        advcal_cli(*common, "--fail-on", "error"))


# ----------------------------------------------------------------------------- no silent wrong answers
def test_random_weights_are_said_and_chance_accuracy_fails(tmp_path):
    (tmp_path / "nets.py").write_text(FACTORY)
    done = advcal_cli("audit", "--model", f"{tmp_path / 'nets.py'}:net", *FAST, "--fail-on", "error",
                      "--out", str(tmp_path / "o"))
    assert done.returncode == 1, done.stderr
    (model,) = json.loads((tmp_path / "o" / "report.json").read_text())["models"]
    assert model["name"] == "net"
    assert model["weights"] == [{"spec": f"{tmp_path / 'nets.py'}:net", "weights": None, "source": "factory"}]
    codes = {f["code"]: f for f in model["flags"]}
    assert codes["CHANCE_ACCURACY"]["severity"] == "error" and "FACTORY_WEIGHTS" in codes
    assert model["verdict"]["reason"].startswith("fail: Clean accuracy")
    text = " ".join(done.stdout.split())
    assert "CHANCE_ACCURACY" in text and "FACTORY_WEIGHTS" in text


def test_a_trained_model_is_not_at_chance():
    result = advcal.audit(load_model("digits-cnn"), load_data("digits", limit=60), [0.05], bootstrap=0)
    assert "CHANCE_ACCURACY" not in {f.code.value for f in result.models[0].flags}
    assert result.models[0].origins == [{"spec": "digits-cnn", "weights": None, "source": "shipped"}]


def test_two_checkpoints_of_one_spec_are_two_models(tmp_path):
    (tmp_path / "nets.py").write_text(FACTORY)
    for folder, name in (("std", "digits-cnn"), ("at", "digits-cnn-at")):
        (tmp_path / folder).mkdir()
        save_file(load_model(name).state_dict(), str(tmp_path / folder / "model.safetensors"))
    spec = f"{tmp_path / 'nets.py'}:net"
    args = ["audit", "--model", spec, "--weights", str(tmp_path / "std" / "model.safetensors"),
            "--model", spec, "--weights", str(tmp_path / "at" / "model.safetensors"), "--limit", "60", *FAST]
    done = advcal_cli(*args, "--out", str(tmp_path / "o"))
    assert done.returncode == 0, done.stderr
    models = json.loads((tmp_path / "o" / "report.json").read_text())["models"]
    assert [m["name"] for m in models] == ["net@std/model", "net@at/model"]
    assert models[0]["weights"][0]["weights"].endswith("std/model.safetensors")
    assert models[0]["attacks"][0]["metrics"] != models[1]["attacks"][0]["metrics"]
    named = advcal_cli(*args, "--name", "standard", "--name", "robust", "--out", str(tmp_path / "n"))
    assert named.returncode == 0, named.stderr
    assert [m["name"] for m in json.loads((tmp_path / "n" / "report.json").read_text())["models"]] == [
        "standard", "robust"]
    assert "name: expected distinct model names, got 'x' twice" in one_line_error(
        advcal_cli(*args, "--name", "x", "--name", "x", "--out", str(tmp_path / "d")))


def test_unique_names_are_short():
    assert unique_names(["digits-cnn", "digits-cnn"]) == ["digits-cnn#1", "digits-cnn#2"]
    assert unique_names(["hf:/models/sentiment"]) == ["sentiment"]
    assert unique_names(["my_pkg.nets:resnet", "other:resnet"], ["/a/b/best.pt", "/a/c/last.pt"]) == [
        "resnet@best", "resnet@last"]


@pytest.mark.slow
def test_the_readme_python_example_and_cli_command_give_the_same_figures(default_audit):
    _, out = default_audit
    cli = json.loads((out / "report.json").read_text())
    api = advcal.audit({"std": load_model("digits-cnn"), "at": load_model("digits-cnn-at")},
                       load_data("digits"), epsilons=[0.05, 0.1, 0.2], attack="pgd").to_dict()
    assert api["config"]["attack"] == cli["config"]["attack"]  # PGD-20 both ways
    for ours, theirs in zip(api["models"], cli["models"], strict=True):
        assert ours["clean"]["metrics"] == theirs["clean"]["metrics"]
        for a, b in zip(ours["attacks"], theirs["attacks"], strict=True):
            assert a["metrics"] == b["metrics"] and a["intervals"] == b["intervals"]
        assert ours["verdict"] == theirs["verdict"]


def test_a_users_npz_is_audited_whole_and_the_report_says_so(tmp_path):
    data = load_data("digits", split="all")
    np.savez(tmp_path / "mine.npz", x=data.x[:70].numpy(), y=data.y[:70].numpy())
    done = advcal_cli("audit", "--model", "digits-cnn", "--data", f"npz:{tmp_path / 'mine.npz'}", *FAST,
                      "--out", str(tmp_path / "o"))
    assert done.returncode == 0, done.stderr
    config = json.loads((tmp_path / "o" / "report.json").read_text())["config"]["data"]
    assert (config["split"], config["n_samples"]) == ("all", 70)
    assert "split all, N = 70" in " ".join(done.stdout.split())
    assert len(load_data(f"npz:{tmp_path / 'mine.npz'}")) == 70  # the API alike
    assert load_data("digits").split == "test"  # built-in data keeps its documented split


def test_help_says_which_digits_split_is_audited():
    text = " ".join(advcal_cli("audit", "--help").stdout.split())
    assert "not scikit-learn's usual train_test_split" in text.replace("│ ", "")


@pytest.mark.parametrize(("images", "labels", "message"), [
    (np.zeros((10, 3, 32, 32), np.float32), np.arange(10) % 10,
     "model digits-cnn: cannot take the data's inputs ({path}: 8 x 3x32x32, values in [0, 1]); its first "
     "forward pass raised RuntimeError"),
    (np.zeros((10, 1, 8, 8), np.float32), np.arange(10) % 3,
     "model digits-cnn: returns 10 logits per input, but the data ({path}) has 3 classes"),
])
def test_data_that_does_not_fit_the_model_is_refused_before_any_attack(tmp_path, images, labels, message):
    path = tmp_path / "shapes.npz"
    np.savez(path, x=images, y=labels)
    done = advcal_cli("audit", "--model", "digits-cnn", "--data", f"npz:{path}", *FAST,
                      "--out", str(tmp_path / "o"))
    assert message.format(path=f"npz:{path}") in one_line_error(done)
    assert not (tmp_path / "o").exists()


def test_the_html_of_an_older_report_gets_its_verdict_from_the_flags(tmp_path):
    result = advcal.audit(load_model("digits-cnn"), load_data("digits", limit=40), [0.1], bootstrap=0,
                          attack_params={"steps": 2})
    report = result.to_dict()
    for model in report["models"]:
        del model["verdict"]
    assert f"<strong>DigitsCNN</strong> — {result.models[0].verdict.reason}" in render_html(report)


def test_the_audit_runs_autoattack_by_name(tmp_path):
    done = advcal_cli("audit", "--model", "digits-cnn-at", "--attack", "autoattack", "--steps", "5",
                      "--limit", "40", "--eps", "0.1", "--bootstrap", "0", "--out", str(tmp_path / "o"))
    assert done.returncode == 0, done.stderr
    attack = json.loads((tmp_path / "o" / "report.json").read_text())["config"]["attack"]
    assert attack["attack"] == "autoattack"
    assert attack["components"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert attack["queries"] == 5000 and attack["steps"] == 5
