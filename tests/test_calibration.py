"""Post-hoc calibrators: fits, peers, shapes, saving, and calibrated models under attack."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from netcal.scaling import TemperatureScaling as NetcalTemperatureScaling

from advcal.attacks import PGD
from advcal.calibration import (
    CalibratedModel,
    HistogramBinning,
    IsotonicCalibration,
    TemperatureScaling,
    VectorScaling,
    attack_calibrated,
    load_calibrator,
)
from advcal.calibration.temperature import AdversarialTemperatureScaling
from advcal.data import load_data
from advcal.errors import InputError
from advcal.models import load_model


def generated(n: int = 4000, classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Calibrated logits and labels drawn from them."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=generator, dtype=torch.float64) * 2
    labels = torch.multinomial(torch.softmax(logits, 1), 1, generator=generator).squeeze(1)
    return logits, labels


def nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float(torch.nn.functional.cross_entropy(logits, labels))


def test_temperature_scaling_recovers_the_temperature_and_agrees_with_netcal():
    logits, labels = generated()
    fitted = TemperatureScaling().fit(logits * 7, labels)
    assert fitted.temperature == pytest.approx(7, rel=0.1)
    probabilities = torch.softmax(logits * 7, 1).numpy()
    peer = NetcalTemperatureScaling()
    peer.fit(probabilities, labels.numpy())
    # netcal's "temperature" is the factor that multiplies the logits: 1 / T.
    assert fitted.temperature == pytest.approx(1 / float(np.ravel(peer.temperature)[0]), rel=0.01)
    assert torch.equal(fitted.transform(logits * 7).argmax(1), logits.argmax(1))


def test_vector_scaling_undoes_per_class_bias_and_beats_temperature_on_nll():
    logits, labels = generated(seed=1)
    shift = torch.tensor([0.0, 1.5, -1.0, 0.5, 2.0], dtype=torch.float64)
    vector = VectorScaling().fit(logits * 3 + shift, labels)
    temperature = TemperatureScaling().fit(logits * 3 + shift, labels)
    bias = vector.bias - vector.bias[0]
    expected = -(shift - shift[0]) * vector.scale  # what cancels the shift after scaling
    assert torch.allclose(bias, expected, atol=0.25)
    assert vector.scale.mean().item() == pytest.approx(1 / 3, rel=0.15)
    distorted = logits * 3 + shift
    assert nll(vector.transform(distorted), labels) < nll(temperature.transform(distorted), labels) - 0.01


def test_isotonic_maps_are_monotone_and_rows_sum_to_one():
    logits, labels = generated(seed=2)
    calibrator = IsotonicCalibration().fit(logits * 4, labels)
    grid = np.linspace(0, 1, 201)
    for x, y in calibrator.knots:
        assert np.all(np.diff(np.interp(grid, x, y)) >= 0)
    probabilities = calibrator.predict_proba(logits * 4)
    assert torch.allclose(probabilities.sum(1), torch.ones(len(logits), dtype=torch.float64))
    assert nll(calibrator.transform(logits * 4), labels) < nll(logits * 4, labels)


def test_histogram_binning_maps_each_bin_to_its_hit_rate():
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.95, 0.05], [0.2, 0.8], [0.3, 0.7]], dtype=torch.float64))
    labels = torch.tensor([0, 1, 1, 0])
    calibrator = HistogramBinning(n_bins=2).fit(logits, labels)
    # Class 0: p0 in bin 1 for rows 0, 1 (hits 1 of 2), in bin 0 for rows 2, 3 (hits 1 of 2).
    assert calibrator.values[0].tolist() == [0.5, 0.5]
    assert calibrator.values[1].tolist() == [0.5, 0.5]
    assert torch.allclose(calibrator.predict_proba(logits), torch.full((4, 2), 0.5, dtype=torch.float64))


@pytest.mark.parametrize("make", [TemperatureScaling, VectorScaling, IsotonicCalibration,
                                  lambda: HistogramBinning(n_bins=10)])
def test_every_calibrator_round_trips_through_save_and_load(make, tmp_path):
    logits, labels = generated(n=1500, seed=3)
    calibrator = make().fit(logits * 2, labels)
    restored = load_calibrator(calibrator.save(tmp_path / "cal"))
    assert type(restored) is type(calibrator) and restored.n_classes == 5
    assert torch.equal(restored.transform(logits), calibrator.transform(logits))
    assert not list(tmp_path.glob("**/*.pkl")) and (tmp_path / "cal" / "calibrator.json").exists()


def test_adversarial_temperature_uses_clean_and_adversarial_logits(tmp_path):
    logits, labels = generated(n=2000, seed=4)
    adversarial = -logits * 3  # confidently wrong: needs a high temperature
    clean_only = TemperatureScaling().fit(logits, labels).temperature
    both = AdversarialTemperatureScaling().fit(logits, labels, adversarial_logits=adversarial)
    assert both.temperature > 2 * clean_only
    assert load_calibrator(both.save(tmp_path / "adv")).temperature == both.temperature
    with pytest.raises(InputError, match="adversarial_logits: adversarial temperature scaling needs"):
        AdversarialTemperatureScaling().fit(logits, labels)


def test_bad_inputs_name_the_argument(tmp_path):
    logits, labels = generated(n=100)
    with pytest.raises(InputError, match=r"labels: expected class indices in \[0, 5\)"):
        TemperatureScaling().fit(logits, labels + 5)
    with pytest.raises(InputError, match="call fit before transform"):
        VectorScaling().transform(logits)
    with pytest.raises(InputError, match=r"logits: expected an \(N, 5\) tensor"):
        TemperatureScaling().fit(logits, labels).transform(logits[:, :3])
    with pytest.raises(InputError, match="holds no saved calibrator"):
        load_calibrator(tmp_path)


@pytest.fixture(scope="module")
def digits():
    calibration = load_data("digits", split="calibration")
    test = load_data("digits", split="test", limit=150)
    model = load_model("digits-cnn")
    with torch.no_grad():
        logits = model(calibration.x)
    return model, test, logits, calibration.y


def test_calibrated_models_keep_the_attack_guarantees(digits):
    model, test, logits, labels = digits
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for calibrator in (TemperatureScaling().fit(logits, labels), IsotonicCalibration().fit(logits, labels)):
        wrapped = calibrator.wrap(model)
        assert isinstance(wrapped, CalibratedModel)
        attack = PGD(eps=0.1, steps=5, seed=3)
        first = attack(wrapped, test.x, test.y, index=test.index)
        again = attack(wrapped, test.x[:70], test.y[:70], index=test.index[:70])  # another batch
        assert torch.equal(first.x_adv[:70], again.x_adv)  # deterministic, batch-independent
        assert (first.x_adv - test.x).abs().max() <= 0.1 + 1e-6
        assert first.x_adv.min() >= 0 and first.x_adv.max() <= 1
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the model is not changed


def test_an_argmax_preserving_calibrator_adds_no_robustness_and_bpda_unmasks_isotonic(digits):
    model, test, logits, labels = digits
    attack = PGD(eps=0.1, steps=10, seed=0, loss="margin")
    raw = attack(model, test.x, test.y, index=test.index)
    scaled = TemperatureScaling().fit(logits, labels).wrap(model)
    # The margin loss is scale-invariant and temperature keeps every prediction: identical attack.
    (through_scaled,) = attack_calibrated(attack, scaled, test.x, test.y, test.index)
    assert torch.equal(through_scaled.x_adv, raw.x_adv)
    assert through_scaled.robust_accuracy == raw.robust_accuracy
    for calibrator in (IsotonicCalibration().fit(logits, labels), HistogramBinning().fit(logits, labels)):
        wrapped = calibrator.wrap(model)
        naive = PGD(eps=0.1, steps=10, seed=0)(wrapped, test.x, test.y, index=test.index).robust_accuracy
        (through,) = attack_calibrated(attack, wrapped, test.x, test.y, test.index)
        changed = float((calibrator.transform(raw.logits).argmax(1) != raw.logits.argmax(1)).float().mean())
        # BPDA: the calibrated model is as weak as the raw one, up to the predictions it changes.
        assert abs(through.robust_accuracy - raw.robust_accuracy) <= changed + 1e-9
        assert torch.equal(through.logits, calibrator.transform(raw.logits))
        # Attacked naively (straight-through), its saturated outputs hide that weakness.
        assert naive > through.robust_accuracy + 0.05


def test_fixes_table_scores_each_fit_under_both_threat_models(tmp_path, capsys):
    from advcal.analyses.fixes import evaluate_fixes
    from advcal.cli import main

    calibration = load_data("digits", split="calibration", limit=120)
    test = load_data("digits", split="test", limit=120)
    found = evaluate_fixes(load_model("digits-cnn"), calibration, test, [0.05, 0.2],
                           attack_params={"steps": 5},
                           calibrators=["temperature", "isotonic", "adversarial-temperature"])
    names = [fix.name for fix in found.fixes]
    assert names == ["temperature/clean", "temperature/adversarial", "isotonic/clean", "isotonic/adversarial",
                     "isotonic/mixed", "adversarial-temperature/mixed"]
    iso = found.fix("isotonic/clean")
    assert iso.metrics["adaptive"] == iso.metrics["frozen"]  # BPDA attacks the raw model
    temp = found.fix("temperature/clean")
    assert temp.metrics["frozen"]["clean"]["accuracy"] == found.baseline["clean"]["accuracy"]
    for fix in found.fixes:
        adaptive = [fix.metrics["adaptive"][c]["ece"] - found.baseline[c]["ece"]
                    for c in ("eps=0.05", "eps=0.2")]
        assert fix.holds == all(d <= 0.01 for d in adaptive)
    # Fitted on attacked data, temperature lowers adversarial ECE at the large eps and costs clean ECE.
    adv = found.fix("temperature/adversarial").metrics
    assert adv["adaptive"]["eps=0.2"]["ece"] < found.baseline["eps=0.2"]["ece"] - 0.1
    assert adv["frozen"]["clean"]["ece"] > found.baseline["clean"]["ece"]
    # The CLI saves every fit; the audit takes one back as --calibrator.
    with pytest.raises(SystemExit) as stopped:
        main(["calibrate", "--limit", "80", "--eps", "0.1", "--steps", "3", "--calibrators", "temperature",
              "--fit-on", "clean", "--out", str(tmp_path / "fits")])
    assert stopped.value.code == 0, capsys.readouterr().err
    assert (tmp_path / "fits" / "temperature-clean" / "calibrator.json").exists()
    with pytest.raises(SystemExit) as stopped:
        main(["audit", "--model", "digits-cnn", "--calibrator", str(tmp_path / "fits" / "temperature-clean"),
              "--limit", "60", "--steps", "3", "--bootstrap", "0", "--out", str(tmp_path / "audit")])
    assert stopped.value.code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "audit" / "report.json").read_text())
    assert report["models"][0]["name"] == "digits-cnn + temperature (temperature-clean)"


def test_an_ensemble_averages_probabilities_and_is_attacked_as_one(tmp_path, capsys):
    from advcal.cli import main
    from advcal.models import Ensemble

    a, b = load_model("digits-cnn"), load_model("digits-cnn-at")
    test = load_data("digits", split="test", limit=60)
    ensemble = Ensemble([a, b])
    with torch.no_grad():
        expected = (torch.softmax(a(test.x), 1) + torch.softmax(b(test.x), 1)) / 2
        assert torch.allclose(torch.softmax(ensemble(test.x), 1), expected, atol=1e-6)
    result = PGD(eps=0.1, steps=5, seed=0)(ensemble, test.x, test.y, index=test.index)
    assert (result.x_adv - test.x).abs().max() <= 0.1 + 1e-6 and result.robust_accuracy < 1.0
    with pytest.raises(SystemExit) as stopped:
        main(["audit", "--model", "digits-cnn", "--model", "digits-cnn-at", "--ensemble", "--limit", "40",
              "--steps", "2", "--bootstrap", "0", "--out", str(tmp_path / "ens")])
    assert stopped.value.code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "ens" / "report.json").read_text())
    assert [m["name"] for m in report["models"]] == ["ensemble(digits-cnn + digits-cnn-at)"]
    with pytest.raises(InputError, match="at least 2 models"):
        Ensemble([a])


def test_the_audit_reports_the_fixes_table(tmp_path):
    import jsonschema

    from advcal.analyses.audit import audit, report_schema

    result = audit({"net": load_model("digits-cnn")}, load_data("digits", limit=90), [0.1, 0.2],
                   attack_params={"steps": 3}, bootstrap=0, fixes=True)
    report = result.to_dict()
    jsonschema.validate(report, report_schema())
    table = report["models"][0]["fixes"]
    assert len(table["fixes"]) == 12 and set(table["baseline"]) == {"clean", "eps=0.1", "eps=0.2"}
    codes = {flag["code"] for flag in report["models"][0]["flags"]}
    assert {flag["code"] for flag in table["flags"]} <= codes
    html = result.to_html(tmp_path / "report.html").read_text()
    assert "Which calibration fix survives attack?" in html and "adversarial-temperature/mixed" in html


def test_a_fix_that_moves_the_decision_is_flagged():
    """A frozen attack that flips every prediction to the next class: vector scaling fitted on
    those adversarial logits learns to partly undo it, so its accuracy under the attack jumps. That
    is another classifier, not a recalibration, and the table says so; temperature scaling keeps
    the decision and is not flagged."""
    from advcal.analyses.fixes import fixes_table

    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (600,), generator=generator)
    clean = torch.randn(600, 3, generator=generator, dtype=torch.float64)
    clean[torch.arange(600), labels] += 3.0  # right about 90% of the time
    attacked_logits = clean.roll(1, dims=1)  # the attack moves each score to the next class
    calibration, test = slice(0, 300), slice(300, 600)

    def attacked(split: slice, fitted):
        raw = attacked_logits[split]
        return [raw if fitted is None else fitted.transform(raw)]

    baseline, fixes, flags = fixes_table(lambda split: clean[split], attacked, calibration, test,
                                         labels[calibration], labels[test], [0.1],
                                         ["temperature", "vector"], ["adversarial"], 15)
    assert baseline["eps=0.1"]["accuracy"] < 0.2 < 0.8 < baseline["clean"]["accuracy"]
    vector = next(fix for fix in fixes if fix.name == "vector/adversarial")
    assert vector.metrics["adaptive"]["eps=0.1"]["accuracy"] > baseline["eps=0.1"]["accuracy"] + 0.05
    moved = [flag for flag in flags if flag["code"] == "FIX_MOVES_DECISIONS"]
    assert [flag["fix"] for flag in moved] == ["vector/adversarial"]
    assert "changes the classifier's decisions" in moved[0]["message"]
