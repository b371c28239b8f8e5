"""The audit: the pipeline on real digits and the shipped models, the CLI, and every flag rule
on logits built to trigger it (and not on logits built to pass it)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import advcal
from advcal.analyses.audit import PROFILES, audit, report_schema
from advcal.analyses.audit.flags import abstention_flags, comparison_flags, report_flags
from advcal.cli import main
from advcal.data import load_data
from advcal.errors import InputError
from advcal.metrics import CalibrationStats, calibration_report, paired_change
from advcal.models import load_model
from advcal.results.flags import FlagCode

LIMITS = PROFILES["default"]


@pytest.fixture(scope="module")
def small_audit():
    models = {name: load_model(name) for name in ("digits-cnn", "digits-cnn-at")}
    data = load_data("digits", limit=180)
    return audit(models, data, [0.1, 0.2], attack_params={"steps": 5}, bootstrap=20, seed=3)


def test_audit_of_the_reference_models(small_audit):
    result = small_audit.to_dict()
    assert result["schema_version"] == "0.5"
    assert result["config"]["seed"] == 3 and result["config"]["epsilons"] == [0.1, 0.2]
    assert result["config"]["attack"]["attack"] == "pgd" and result["config"]["attack"]["steps"] == 5
    assert [m["name"] for m in result["models"]] == ["digits-cnn", "digits-cnn-at"]
    for entry in result["models"]:
        clean = entry["clean"]["metrics"]
        assert set(clean) >= {"accuracy", "ece", "ace", "sce", "mce", "brier", "nll", "smooth_ece"}
        assert entry["clean"]["ids"]["ece"] == "ece.top_label.equal_width_15.l1"
        assert clean["ece"] >= entry["clean"]["intervals"]["ece"][0] - 0.05
        for attacked in entry["attacks"]:
            for key, delta in attacked["delta"].items():
                assert delta == pytest.approx(attacked["metrics"][key] - clean[key])
        assert entry["cost"]["backward_passes"] == 5 * 2  # one batch, 5 steps, 2 eps
        for flag in entry["flags"]:
            assert set(flag) == {"code", "severity", "message", "eps", "evidence"}
            assert flag["severity"] in ("info", "warning", "error")
    standard, adversarial = small_audit.models
    assert adversarial.attacks[0].metrics["accuracy"] > standard.attacks[0].metrics["accuracy"]
    assert any(f.code == FlagCode.ECE_DELTA and f.severity == "error" for f in standard.flags)


def test_report_json_follows_its_shipped_schema(small_audit, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    schema = report_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    document = json.loads(small_audit.to_json(tmp_path / "report.json").read_text())
    jsonschema.validate(document, schema)
    assert schema["properties"]["schema_version"]["const"] == document["schema_version"]
    broken = json.loads(json.dumps(document))
    broken["models"][0]["flags"].append({"code": "X", "severity": "fatal", "message": "m", "eps": None,
                                         "evidence": {}})
    with pytest.raises(jsonschema.ValidationError, match="fatal"):
        jsonschema.validate(broken, schema)
    del broken["models"][0]["clean"]["metrics"]["ece"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_selective_prediction_and_paired_tests_in_the_audit(small_audit):
    for entry in small_audit.models:
        clean_selective = entry.clean.selective
        assert 0 <= clean_selective["aurc"] <= 1 and clean_selective["coverage"][-1] == 1.0
        for attacked in entry.attacks:
            assert attacked.selective["aurc"] >= clean_selective["aurc"] - 1e-12
            abstention = attacked.abstention
            assert abstention["clean_coverage"] >= 0.8 and abstention["n_samples"] == 180
            for key, test in attacked.paired.items():
                assert test["delta"] == pytest.approx(attacked.delta[key])
                assert test["significant"] == (test["ci"][0] > 0 or test["ci"][1] < 0)
    standard = small_audit.model("digits-cnn")
    assert standard.attacks[-1].paired["ece"]["significant"]  # eps=0.2 breaks it for sure


def test_per_sample_record_matches_the_metrics(small_audit, tmp_path):
    path = small_audit.write_samples(tmp_path / "samples.npz")
    with np.load(path, allow_pickle=False) as archive:
        samples = {key: archive[key] for key in archive.files}
    for entry in small_audit.models:
        label = samples[f"{entry.name}/label"]
        index = samples[f"{entry.name}/index"]
        assert len(label) == 180 and len(set(index.tolist())) == 180
        clean_conf = samples[f"{entry.name}/clean/confidence"]
        assert clean_conf.mean() == pytest.approx(entry.clean.metrics["confidence_mean"], abs=1e-12)
        for attacked in entry.attacks:
            key = f"{entry.name}/eps={attacked.eps:g}"
            correct = samples[f"{key}/correct"]
            assert correct.mean() == pytest.approx(attacked.metrics["accuracy"], abs=1e-12)
            assert np.array_equal(correct, samples[f"{key}/prediction"] == label)
            assert samples[f"{key}/bin"].max() < 15


def test_same_seed_same_report(small_audit, tmp_path):
    models = {name: load_model(name) for name in ("digits-cnn", "digits-cnn-at")}
    again = audit(models, load_data("digits", limit=180), [0.1, 0.2], attack_params={"steps": 5},
                  bootstrap=20, seed=3)
    strip = [{k: v for k, v in m.items() if k != "cost"} for m in again.to_dict()["models"]]
    assert strip == [{k: v for k, v in m.items() if k != "cost"} for m in small_audit.to_dict()["models"]]
    path = again.to_json(tmp_path / "out" / "report.json")
    assert json.loads(path.read_text())["models"][0]["name"] == "digits-cnn"


def test_advcal_audit_is_callable_with_a_single_model_and_a_spec():
    result = advcal.audit(load_model("digits-cnn-at"), "digits", [0.1], attack_params={"steps": 2},
                          bootstrap=0, batch_size=100)
    assert result.models[0].name == "DigitsCNN" and result.config["data"]["n_samples"] == 359
    assert result.model("DigitsCNN").cost["backward_passes"] == 2 * 4  # 4 batches of <= 100


# ----------------------------------------------------------------------------- the CLI
def run(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_cli_audit_end_to_end(tmp_path, capsys):
    code, out, _ = run(["audit", "--limit", "120", "--steps", "3", "--bootstrap", "10",
                        "--out", str(tmp_path)], capsys)
    assert code == 0
    assert "digits-cnn-at" in out and "pgd ε=0.1" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["config"]["epsilons"] == [0.05, 0.1, 0.2] and len(report["models"]) == 2
    with np.load(tmp_path / "samples.npz", allow_pickle=False) as archive:
        assert "digits-cnn-at/eps=0.2/confidence" in archive.files
    html = (tmp_path / "report.html").read_text()
    assert html.count('<img class="figure"') == len(list((tmp_path / "figures").glob("*.png"))) == 10
    code, _, err = run(["report", str(tmp_path / "report.json"), "--html", str(tmp_path / "again.html")],
                         capsys)
    assert code == 0, err
    assert (tmp_path / "again.html").read_text() == html  # re-rendering the JSON gives the same page
    code, _, err = run(["report", str(tmp_path / "nosuch.json")], capsys)
    assert code == 2 and err.strip().startswith("advcal: error: report: expected an existing report.json")


def test_cli_audit_of_a_user_model_on_npz_data(tmp_path, capsys):
    data = load_data("digits", limit=60)
    np.savez(tmp_path / "d.npz", x=data.x.numpy(), y=data.y.numpy())
    weights = load_model("digits-cnn").state_dict()
    torch.save(weights, tmp_path / "w.pt")
    code, _, err = run(["audit", "--model", "advcal.models:DigitsCNN", "--weights", str(tmp_path / "w.pt"),
                        "--data", f"npz:{tmp_path / 'd.npz'}", "--eps", "8/255,16/255",
                        "--steps", "2", "--bootstrap", "0", "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["config"]["epsilons"] == pytest.approx([8 / 255, 16 / 255])
    assert report["models"][0]["name"] == "DigitsCNN"  # the factory's name: short, for tables and files


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--eps", "8"], "did you mean 8/255"),
        (["--eps", "a/b"], "eps: expected comma-separated numbers or fractions"),
        (["--model", "nosuch"], "neither a built-in model"),
        (["--data", "npz:/no/such.npz"], "/no/such.npz"),
        (["--data", "mnist"], "unknown kind 'mnist'"),
        (["--profile", "extreme"], "profile: expected one of default, strict, lenient"),
        (["--model", "digits-cnn", "--weights", "a.pt", "--weights", "b.pt"],
         "give one --weights per --model"),
    ],
)
def test_cli_audit_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    code, _, err = run(["audit", "--limit", "20", "--steps", "1", "--bootstrap", "0",
                        "--out", str(tmp_path), *args], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


# ----------------------------------------------------------------------------- flag rules
def built(confidence, correct, labels=None, n_classes=4):
    """Logits whose top-label confidence and correctness (against ``labels``) are as given."""
    confidence = np.asarray(confidence, dtype=np.float64)
    n = len(confidence)
    labels = np.zeros(n, dtype=int) if labels is None else np.asarray(labels)
    predicted = np.where(correct, labels, (labels + 1) % n_classes)
    logits = np.zeros((n, n_classes))
    logits[np.arange(n), predicted] = np.log(confidence * (n_classes - 1) / (1 - confidence))
    return torch.from_numpy(logits), torch.from_numpy(labels)


def calibrated(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.3, 0.99, n)
    return calibration_report(*built(confidence, rng.uniform(size=n) < confidence,
                                     labels=rng.integers(0, 4, n)))


def codes(flags):
    return {f.code for f in flags}


def test_a_calibrated_model_raises_no_flag():
    report = calibrated()
    assert codes(report_flags(report, LIMITS, None)) == set()
    assert codes(comparison_flags(report, [(0.1, calibrated(seed=1)), (0.2, calibrated(seed=2))], LIMITS)) \
        <= {"ECE_INFLECTION"}


def test_ece_delta_and_bin_gap_under_attack():
    clean = calibrated()
    rng = np.random.default_rng(5)
    attacked = calibration_report(*built(rng.uniform(0.95, 0.99, 2000), rng.uniform(size=2000) < 0.3,
                                         labels=rng.integers(0, 4, 2000)))
    confidence = rng.uniform(0.3, 0.99, 2000)
    mild = calibration_report(*built(confidence, rng.uniform(size=2000) < confidence - 0.1,
                                     labels=rng.integers(0, 4, 2000)))
    flags = comparison_flags(clean, [(0.05, mild), (0.1, attacked)], LIMITS)
    by_eps = {(f.code, f.eps): f for f in flags}
    assert by_eps[("ECE_DELTA", 0.1)].severity == "error"
    assert by_eps[("ECE_DELTA", 0.05)].severity == "warning"
    assert ("BIN_ACCURACY_GAP", 0.1) in by_eps
    assert by_eps[("ECE_INFLECTION", 0.1)].evidence["jump"] > 0.5
    strict = comparison_flags(clean, [(0.05, mild)], PROFILES["strict"])
    lenient = comparison_flags(clean, [(0.05, mild)], PROFILES["lenient"])
    assert any(f.code == "ECE_DELTA" and f.severity == "error" for f in strict)
    assert not any(f.code == "ECE_DELTA" for f in lenient)


def test_hollow_confidence():
    rng = np.random.default_rng(1)
    report = calibration_report(*built(np.full(500, 0.97), rng.uniform(size=500) < 0.6))
    flag = next(f for f in report_flags(report, LIMITS, 0.1) if f.code == "CONFIDENCE_HOLLOWING")
    assert flag.severity == "error" and flag.evidence["count"] == 500 and flag.eps == 0.1


def test_collapsed_confidence_and_narrow_band():
    rng = np.random.default_rng(2)
    collapsed = calibration_report(*built(rng.uniform(0.49, 0.51, 800), rng.uniform(size=800) < 0.9))
    assert "COLLAPSED_CONFIDENCE" in codes(report_flags(collapsed, LIMITS, None))
    band = rng.uniform(0.68, 0.72, 4000)
    narrow = calibration_report(*built(band, rng.uniform(size=4000) < band))
    flags = report_flags(narrow, LIMITS, None)
    assert narrow["ece"] < 0.05 and "NARROW_BAND" in codes(flags)
    # A confident, accurate model is not a narrow-band problem.
    sure = calibration_report(*built(np.full(1000, 0.99), rng.uniform(size=1000) < 0.99))
    assert not codes(report_flags(sure, LIMITS, None)) & {"NARROW_BAND", "COLLAPSED_CONFIDENCE"}


def test_low_reliability_slope():
    rng = np.random.default_rng(3)
    confidence = rng.uniform(0.3, 0.99, 3000)
    flat = calibration_report(*built(confidence, rng.uniform(size=3000) < 0.65))
    flag = next(f for f in report_flags(flat, LIMITS, None) if f.code == "LOW_RELIABILITY_SLOPE")
    assert flag.evidence["slope"] < 0.2


def test_class_outlier_and_classes_too_small_to_judge():
    rng = np.random.default_rng(4)
    n = 4000
    labels = rng.integers(0, 4, n)
    confidence = rng.uniform(0.4, 0.99, n)
    correct = rng.uniform(size=n) < confidence
    correct[labels == 2] = rng.uniform(size=int((labels == 2).sum())) < 0.2  # class 2 is a mess
    report = calibration_report(*built(confidence, correct, labels))
    outliers = [f for f in report_flags(report, LIMITS, None) if f.code == "CLASS_OUTLIER"]
    assert outliers and all(f.evidence["count"] >= LIMITS.min_class_samples for f in outliers)
    few = calibration_report(*built(confidence[:60], correct[:60], labels[:60]))
    flags = report_flags(few, LIMITS, None)
    assert "CLASS_OUTLIER" not in codes(flags) and "FEW_CLASS_SAMPLES" in codes(flags)


def test_retrain_before_calibrating():
    rng = np.random.default_rng(6)
    bad = calibration_report(*built(rng.uniform(0.9, 0.99, 1000), rng.uniform(size=1000) < 0.6))
    flags = comparison_flags(bad, [], LIMITS)
    assert [f.code for f in flags] == ["RETRAIN_BEFORE_CALIBRATING"]
    assert math.isclose(flags[0].evidence["ece"], bad["ece"])


def test_bimodal_confidence():
    rng = np.random.default_rng(7)
    confidence = np.concatenate([rng.uniform(0.35, 0.45, 600), rng.uniform(0.93, 0.99, 1400)])
    split = calibration_report(*built(confidence, rng.uniform(size=2000) < confidence))
    flag = next(f for f in report_flags(split, LIMITS, 0.1) if f.code == "BIMODAL_CONFIDENCE")
    assert flag.evidence["low_mass"] == pytest.approx(0.3)
    assert flag.evidence["high_mass"] == pytest.approx(0.7)
    assert 0.35 < flag.evidence["low_confidence"] < 0.45 and flag.evidence["valley_count"] == 0
    # One broad mode, or a second "mode" of a handful of samples, is not bimodal.
    assert "BIMODAL_CONFIDENCE" not in codes(report_flags(calibrated(), LIMITS, None))
    confidence[:600] = rng.uniform(0.93, 0.99, 600)
    confidence[:50] = 0.4
    mostly_one = calibration_report(*built(confidence, rng.uniform(size=2000) < confidence))
    assert "BIMODAL_CONFIDENCE" not in codes(report_flags(mostly_one, LIMITS, None))


def abstention(adv_risk, adv_coverage, n=1000):
    return {"target_coverage": 0.8, "threshold": 0.9, "clean_risk": 0.02, "clean_coverage": 0.8,
            "adv_risk": adv_risk, "adv_coverage": adv_coverage, "n_samples": n}


def test_abstention_fails_only_when_the_answered_attacked_inputs_are_wrong_more_often():
    flags = abstention_flags([(0.1, abstention(0.05, 0.5)), (0.2, abstention(0.4, 0.6)),
                              (0.3, abstention(1.0, 0.005)), (0.4, abstention(math.nan, 0.0))], LIMITS)
    assert [(f.code, f.eps) for f in flags] == [("ABSTENTION_FAILS", 0.2)]
    assert "60% of attacked inputs" in flags[0].message and "40%" in flags[0].message


def test_an_ece_rise_within_noise_is_info_not_a_warning():
    # 60 samples whose correctness the "attack" merely redraws (2 points less likely): ECE moves
    # by chance, here by +0.06, past the 0.05 warning line, but the paired interval holds zero.
    rng = np.random.default_rng(0)
    n = 60
    confidence = rng.uniform(0.5, 0.99, n)
    labels = rng.integers(0, 4, n)

    def report(correct):
        stats = CalibrationStats(n_bins=15, bootstrap=200, seed=0)
        stats.update(*built(confidence, correct, labels), index=torch.arange(n))
        return stats.compute()

    clean = report(rng.uniform(size=n) < confidence)
    attacked = report(rng.uniform(size=n) < confidence - 0.05)
    test = paired_change(clean, attacked, "ece")
    assert test.delta > LIMITS.delta_ece_warning and not test.significant  # the premise
    unpaired = comparison_flags(clean, [(0.1, attacked)], LIMITS)
    assert next(f for f in unpaired if f.code == "ECE_DELTA").severity == "warning"
    paired = comparison_flags(clean, [(0.1, attacked)], LIMITS, {0.1: {"ece": test}})
    noisy = next(f for f in paired if f.code == "ECE_DELTA")
    assert noisy.severity == "info" and "within bootstrap noise" in noisy.message
    assert noisy.evidence["significant"] is False and noisy.evidence["ci"] == list(test.ci)


def test_device_option(tmp_path, capsys):
    result = audit(load_model("digits-cnn"), load_data("digits", limit=40), [0.1], attack_params={"steps": 1},
                   bootstrap=0, device="cpu")
    assert result.config["device"] == "cpu"
    code, _, err = run(["audit", "--limit", "20", "--steps", "1", "--device", "tpu", "--out", str(tmp_path)],
                       capsys)
    assert code == 2 and "device: expected cpu, cuda, cuda:N, mps or auto, got 'tpu'" in err
    if not torch.cuda.is_available():
        code, _, err = run(["audit", "--limit", "20", "--device", "cuda", "--out", str(tmp_path)], capsys)
        assert code == 2 and "CUDA is not available" in err


def test_cli_audit_on_a_folder_dataset(tmp_path, capsys):
    from PIL import Image

    source = load_data("digits", limit=40)
    for i, (image, label) in enumerate(zip(source.x, source.y, strict=True)):
        folder = tmp_path / "images" / f"digit{int(label)}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8), mode="L").save(folder / f"{i}.png")
    code, _, err = run(["audit", "--model", "digits-cnn", "--data", f"folder:{tmp_path / 'images'}",
                          "--split", "all", "--eps", "0.1", "--steps", "2", "--bootstrap", "0",
                          "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["config"]["data"]["n_samples"] == 40
    assert report["models"][0]["clean"]["metrics"]["accuracy"] > 0.9


def test_cli_audit_of_a_model_whose_outputs_do_not_match_the_labels(tmp_path, capsys):
    (tmp_path / "nets.py").write_text(
        "from torch import nn\n"
        "def three_classes():\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))\n"
        "def flat():\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Flatten(0))\n"
    )
    cases = [("three_classes", "model three_classes: returns 3 logits per input, but the data (digits) "
                               "has 10 classes; expected one logit per class"),
             ("flat", "model flat: expected logits of shape (8, classes >= 2), got (80,)")]
    for factory, message in cases:
        code, _, err = run(["audit", "--model", f"{tmp_path / 'nets.py'}:{factory}", "--limit", "20",
                            "--steps", "1", "--bootstrap", "0", "--out", str(tmp_path / "o")], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], err
        assert not (tmp_path / "o" / "report.json").exists()  # nothing half-done left behind


def test_repeated_epsilons_are_refused():
    with pytest.raises(InputError, match=r"epsilons: expected distinct values, got 0\.1, 0\.2, 0\.1"):
        audit(load_model("digits-cnn"), load_data("digits", limit=20), [0.1, 0.2, 0.1], bootstrap=0)
