"""The text audit: the image report, made by text attacks on a Hugging Face classifier."""

from __future__ import annotations

import copy
import csv
import json

import jsonschema
import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import advcal
from advcal.analyses.audit import report_schema
from advcal.analyses.text_audit import audit_text
from advcal.analyses.text_fixes import evaluate_text_fixes
from advcal.analyses.text_illusion import check_text_illusion
from advcal.calibration import load_calibrator
from advcal.cli import main
from advcal.errors import ConfigError, InputError
from advcal.report import render_html
from advcal.text.data import TextDataset
from advcal.text.loading import is_text_audit, load_text_data
from advcal.text.models import TextClassifier, tiny_text_classifier

POSITIVE = ["good", "great", "wonderful", "excellent", "lovely", "superb"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "dreadful", "poor"]
FRAMES = ["the film was {} and the music was {}", "a {} story with a {} ending", "what a {} cast , truly {}",
          "honestly {} work and {} writing"]


def corpus() -> TextDataset:
    """96 short reviews whose sentiment is carried by two words of one polarity."""
    texts, labels = [], []
    for k in range(96):
        words = POSITIVE if k % 2 else NEGATIVE
        texts.append(FRAMES[k % 4].format(words[k % 6], words[(k // 6) % 6]))
        labels.append(k % 2)
    return TextDataset(texts, np.array(labels), ["negative", "positive"], name="reviews")


@pytest.fixture(scope="module")
def classifier() -> TextClassifier:
    return fitted_tiny_classifier()


def fitted_tiny_classifier() -> TextClassifier:
    """The tiny BERT fitted to the corpus: a model with real margins for the attacks to erode."""
    data = corpus()
    model = tiny_text_classifier(data.texts + POSITIVE + NEGATIVE, num_classes=2, seed=0,
                                 labels=data.classes)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    labels = torch.from_numpy(data.labels)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model.train()
        for _ in range(25):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(data.texts), labels).backward()
            optimiser.step()
    model.eval()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        assert float((model(data.texts).argmax(1) == labels).float().mean()) > 0.9
    return model


def test_the_text_audit_reports_like_the_image_audit(classifier):
    data = corpus().subset(np.arange(48))
    result = audit_text({"tiny": classifier}, data, [0.2, 0.5], "char", {"query_budget": 30}, bootstrap=20,
                        batch_size=32, examples=3)
    report = result.to_dict()
    jsonschema.validate(report, report_schema())
    assert report["config"]["data"]["kind"] == "text" and report["config"]["epsilons"] == [0.2, 0.5]
    assert report["config"]["attack"]["attack"] == "char"
    assert report["config"]["attack"]["budget"] == "max_change_fraction"
    model = report["models"][0]
    clean = model["clean"]["metrics"]["accuracy"]
    low, high = (a["metrics"]["accuracy"] for a in model["attacks"])
    assert clean > 0.9 and high < low <= clean  # a larger share of words changed, more flips
    assert 0 < model["cost"]["queries"] <= 2 * 30 * len(data)
    assert len(model["examples"]) == 3
    for example in model["examples"]:
        changed = [(word, new) for word, new in example["diff"] if new is not None]
        assert 1 <= len(changed) <= 0.5 * len(example["original"].split())
        rebuilt = "".join(new if new is not None else word for word, new in example["diff"])
        assert rebuilt == example["perturbed"]
        assert example["clean_prediction"] == example["label"] != example["adversarial_prediction"]
    assert report["config"]["attack"]["method"] == "deepwordbug"
    samples = result.models[0].samples
    assert len(samples["index"]) == len(data)


def test_advcal_audit_serves_texts_and_images_alike(classifier):
    # One public audit: a TextDataset runs the text modality with the text defaults ("pgd" means
    # the word attack there, 32 texts per batch), and gives what audit_text gives.
    data = corpus().subset(np.arange(40))
    data.split = "test"
    found = advcal.audit({"tiny": classifier}, data, [0.3], "char", {"query_budget": 20}, bootstrap=0,
                         examples=2)
    direct = audit_text({"tiny": classifier}, data, [0.3], "char", {"query_budget": 20}, bootstrap=0,
                        examples=2)

    def without_seconds(report: dict) -> dict:
        for model in report["models"]:
            del model["cost"]["seconds"]
        return report

    assert without_seconds(found.to_dict()) == without_seconds(direct.to_dict())
    assert found.config["data"]["split"] == "test" and found.config["batch_size"] == 32
    by_default = advcal.audit(classifier, data.subset(np.arange(4)), [0.1], bootstrap=0)
    assert by_default.config["attack"]["attack"] == "word"
    with pytest.raises(ConfigError, match="device: text audits run on the CPU"):
        advcal.audit(classifier, data, [0.3], "char", device="cuda")
    with pytest.raises(ConfigError, match="examples: adversarial examples are kept for text audits only"):
        advcal.audit(torch.nn.Flatten(), "digits", [0.1], examples=3)


def test_embedding_pgd_in_the_text_audit_counts_passes(classifier):
    result = audit_text(classifier, corpus(), [0.5, 2.0], "embedding-pgd", {"steps": 5}, bootstrap=0)
    model = result.to_dict()["models"][0]
    assert model["cost"]["backward_passes"] == 3 * 2 * 5  # 3 batches of 32, two budgets, 5 steps
    assert model["attacks"][1]["metrics"]["accuracy"] <= model["clean"]["metrics"]["accuracy"]
    assert "examples" not in model  # no discrete texts to show for a continuous attack


def test_the_text_audit_runs_the_illusion_check(classifier):
    """``illusion=True``: each model's check in the report, its verdict as a flag, the HTML section;
    the same tiny BERT served at T = 0.001 saturates its scores and is caught."""
    cold = copy.deepcopy(classifier)
    cold.temperature = 1e-3
    data = corpus()
    test, calibration = data.subset(np.arange(16)), data.subset(np.arange(32, 48))
    result = audit_text({"honest": classifier, "cold": cold}, test, [0.5], "char", {"query_budget": 30},
                        bootstrap=10, illusion=True, calibration=calibration)
    report = result.to_dict()
    jsonschema.validate(report, report_schema())
    assert report["config"]["illusion"] is True
    honest, served_cold = report["models"]
    for model in (honest, served_cold):
        found = model["illusion"]
        assert found["settings"]["budget"] == found["settings"]["eps"] == 0.5
        assert found["settings"]["calibration"]["n_samples"] == 16
        codes = {flag["code"] for flag in model["flags"]} & {"ILLUSION_OF_ROBUSTNESS", "SUSPECT_ROBUSTNESS"}
        assert codes == {"genuine": set(), "suspect": {"SUSPECT_ROBUSTNESS"},
                         "illusion": {"ILLUSION_OF_ROBUSTNESS"}}[found["verdict"]]
    assert honest["illusion"]["checks"]["saturation"]["saturated_share"] == 0
    assert served_cold["illusion"]["checks"]["saturation"]["saturated_share"] > 0.5
    assert served_cold["illusion"]["verdict"] == "illusion", served_cold["illusion"]["reasons"]
    assert honest["illusion"]["verdict"] == "genuine", honest["illusion"]["reasons"]
    page = render_html(report)
    assert page.count("Is this robustness real?") == 2 and "char reading float64 log-odds" in page
    with pytest.raises(InputError, match="score-based"):
        audit_text(classifier, test, [0.5], "embedding-pgd", illusion=True, calibration=calibration)
    with pytest.raises(InputError, match="calibration"):
        audit_text(classifier, test, [0.5], "char", illusion=True)


def test_the_text_fixes_table():
    """Every calibrator fitted three ways on a noisy, over-confident bag of words, scored under the
    character attack: frozen and adaptive figures per budget, the verdicts, the flags."""
    calibration, test = noisy_reviews(2), noisy_reviews(3)  # 90% of the labels right in both
    found = evaluate_text_fixes(BagOfWords(0.25), calibration, test, [0.2, 0.5], attack="char",
                                attack_params={"query_budget": 40})
    assert set(found.baseline) == {"clean", "eps=0.2", "eps=0.5"}
    assert found.baseline["eps=0.5"]["accuracy"] < found.baseline["clean"]["accuracy"]
    names = {fix.name for fix in found.fixes}
    assert names == {"temperature/clean", "temperature/adversarial", "adversarial-temperature/mixed",
                     *(f"{kind}/{way}" for kind in ("vector", "isotonic", "histogram")
                       for way in ("clean", "adversarial", "mixed"))}
    # Over-confident with 10% label noise: temperature scaling fitted on clean texts calibrates it.
    fix = found.fix("temperature/clean")
    assert fix.metrics["frozen"]["clean"]["ece"] < found.baseline["clean"]["ece"] - 0.05
    for fix in found.fixes:
        for threat in ("frozen", "adaptive"):
            assert set(fix.metrics[threat]) == set(found.baseline)
        # A calibrator that keeps the ranking of the scores keeps the attack's choices too.
        if fix.calibrator in ("temperature", "adversarial-temperature"):
            for condition in ("eps=0.2", "eps=0.5"):
                assert fix.metrics["adaptive"][condition]["accuracy"] == pytest.approx(
                    fix.metrics["frozen"][condition]["accuracy"])
        if fix.calibrator in ("isotonic", "histogram"):  # the attack on the raw model (BPDA's move)
            assert fix.metrics["adaptive"] == fix.metrics["frozen"]
        assert fix.holds in (True, False) and fix.helps in (True, False)
    assert all(flag["code"] in ("FIX_BACKFIRES", "FIX_MOVES_DECISIONS", "RETRAIN_NOT_PATCH")
               for flag in found.flags)
    moved = {flag["fix"] for flag in found.flags if flag["code"] == "FIX_MOVES_DECISIONS"}
    for fix in found.fixes:  # flagged exactly when an accuracy on the same texts moved by over 0.05
        shifts = [abs(fix.metrics["frozen"][c]["accuracy"] - found.baseline[c]["accuracy"])
                  for c in found.baseline]
        assert (fix.name in moved) == (max(shifts) > 0.05)
    assert found.settings["budget"] == "max_change_fraction" and found.settings["test"]["n_samples"] == 40
    assert (found.settings["attack"]["attack"], found.settings["attack"]["method"]) == ("char", "deepwordbug")
    with pytest.raises(ConfigError, match="attack"):
        evaluate_text_fixes(BagOfWords(), calibration, test, [0.5], attack="embedding-pgd")


def write_reviews_csv(path) -> None:
    """The corpus as a CSV file with its own column names."""
    data = corpus()
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "sentiment"])
        writer.writerows(zip(data.texts, (data.classes[k] for k in data.labels), strict=True))


def csv_audit_args(folder, csv_path) -> list[str]:
    return ["audit", "--model", f"hf:{folder}", "--data", f"csv:{csv_path}", "--split", "all",
            "--limit", "32", "--text-column", "review", "--label-column", "sentiment", "--attack", "char",
            "--eps", "0.25,0.5", "--queries", "40", "--bootstrap", "20"]


def test_advcal_audit_on_a_local_hf_folder_and_a_csv(classifier, tmp_path, capsys):
    folder = classifier.save_pretrained(tmp_path / "model")
    write_reviews_csv(tmp_path / "reviews.csv")
    out = tmp_path / "report"
    with pytest.raises(SystemExit) as done:
        main([*csv_audit_args(folder, tmp_path / "reviews.csv"), "--out", str(out)])
    assert done.value.code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    jsonschema.validate(report, report_schema())
    assert report["config"]["data"]["n_samples"] == 32 and report["models"][0]["examples"]
    page = (out / "report.html").read_text()
    assert "Adversarial texts" in page and "<del>" in page and "<ins>" in page
    capsys.readouterr()
    # Bad specs: one line, exit 2.
    reviews = f"csv:{tmp_path / 'reviews.csv'}"
    for args, message in [
        (["--model", "hf:bert-base-uncased", "--data", reviews], "offline"),
        (["--model", "digits-cnn", "--data", reviews], "is text data"),
        (["--model", f"hf:{folder}", "--data", reviews, "--normalize", "0.5,0.5"], "--normalize"),
        (["--model", f"hf:{folder}", "--data", reviews, "--device", "cuda"], "--device"),
        (["--model", f"hf:{folder}", "--data", reviews, "--text-column", "review", "--label-column",
          "sentiment", "--calibrator", str(tmp_path)], "no saved calibrator"),
        (["--model", f"hf:{folder}", "--data", reviews, "--fixes", "--split", "all"], "fixes"),
    ]:
        with pytest.raises(SystemExit) as done:
            main(["audit", *args, "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err
        assert done.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_text_specs_and_splits(tmp_path):
    assert not is_text_audit([], None) and not is_text_audit(["digits-cnn"], "digits")
    assert is_text_audit(["hf:x"], "tweets")
    with pytest.raises(ConfigError, match="cannot be audited together"):
        is_text_audit(["hf:x", "digits-cnn"], "tweets")
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": int(y)}) + "\n"
                            for t, y in zip(corpus().texts, corpus().labels, strict=True)))
    parts = {split: load_text_data(f"jsonl:{path}", split=split)
             for split in ("train", "calibration", "test")}
    assert sum(len(p) for p in parts.values()) == 96
    assert not set(parts["train"].index) & set(parts["test"].index)
    small = load_text_data(f"jsonl:{path}", split="all", limit=10)
    assert len(small) == 10 and set(small.labels) == {0, 1}


class BagOfWords(torch.nn.Module):
    """A fast text classifier: logits ±(sum of word weights), divided by ``temperature``."""

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.weights = {**dict.fromkeys(POSITIVE, 1.0), **dict.fromkeys(NEGATIVE, -1.0)}
        self.temperature = temperature

    def forward(self, texts: list[str]) -> torch.Tensor:
        score = torch.tensor([sum(self.weights.get(w, 0.0) for w in t.split()) for t in texts])
        return torch.stack([-score, score], 1) / self.temperature


def noisy_reviews(offset: int) -> TextDataset:
    """Reviews with three words of one polarity, so that flipping one takes three edits (which an
    attacker that reads saturated scores cannot find one by one); labels 10% noisy, so that the
    NLL has a finite optimal temperature."""
    rng = np.random.default_rng(offset)
    texts, labels = [], []
    for _ in range(40):
        polarity = int(rng.integers(2))
        words = rng.choice(POSITIVE if polarity else NEGATIVE, 3)
        texts.append("the film was {} , the cast {} and the music {}".format(*words))
        labels.append(polarity if rng.uniform() > 0.1 else 1 - polarity)
    return TextDataset(texts, np.array(labels), ["negative", "positive"], name=f"noisy-{offset}")


def test_the_illusion_check_pierces_an_over_confident_text_classifier():
    """Served at T = 0.001 the float32 probabilities are 0 and 1: the served attack starves, the
    logit-reading and calibrated attacks do not; served at T = 1 nothing is an illusion."""
    test, calibration = noisy_reviews(1), noisy_reviews(2)
    cold = check_text_illusion(BagOfWords(1e-3), test, calibration, 0.5, "char", {"query_budget": 40})
    assert cold.verdict == "illusion", cold.reasons
    assert cold.checks["saturation"]["saturated_share"] > 0.5
    assert cold.checks["cal"]["temperature"] > 100  # the NLL fit undoes most of the 1/1000
    for check in ("logit", "cal"):
        assert cold.checks[check]["adv_accuracy"] <= cold.served_adv_accuracy - 0.05
    illusion_schema = report_schema()["$defs"]["model"]["properties"]["illusion"]
    jsonschema.validate(json.loads(json.dumps(cold.to_dict())), illusion_schema)
    honest = check_text_illusion(BagOfWords(), test, calibration, 0.5, "char", {"query_budget": 40})
    assert honest.verdict == "genuine", honest.reasons
    assert honest.checks["saturation"]["saturated_share"] == 0
    assert honest.served_adv_accuracy == pytest.approx(cold.checks["logit"]["adv_accuracy"])


def test_advcal_illusion_checks_a_text_classifier(classifier, tmp_path, capsys):
    folder = classifier.save_pretrained(tmp_path / "model")
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": int(y)}) + "\n"
                            for t, y in zip(corpus().texts, corpus().labels, strict=True)))
    with pytest.raises(SystemExit) as done:
        main(["illusion", "--model", f"hf:{folder}", "--data", f"jsonl:{path}", "--limit", "16",
              "--eps", "0.3", "--attack", "char", "--queries", "20", "--json", str(tmp_path / "found.json")])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "saturated scores" in out
    found = json.loads((tmp_path / "found.json").read_text())
    assert found["verdict"] in ("genuine", "suspect", "illusion") and found["settings"]["budget"] == 0.3
    assert set(found["checks"]) >= {"served", "logit", "cal", "sanity", "saturation"}


def test_advcal_audit_fixes_and_calibrate_on_a_text_classifier(classifier, tmp_path, capsys):
    folder = classifier.save_pretrained(tmp_path / "model")
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": int(y)}) + "\n"
                            for t, y in zip(corpus().texts, corpus().labels, strict=True)))
    common = ["--model", f"hf:{folder}", "--data", f"jsonl:{path}", "--limit", "16", "--eps", "0.5",
              "--attack", "char", "--queries", "20"]
    with pytest.raises(SystemExit) as done:
        main(["audit", *common, "--split", "test", "--fixes", "--bootstrap", "10",
              "--out", str(tmp_path / "report")])
    assert done.value.code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    jsonschema.validate(report, report_schema())
    assert report["config"]["fixes"] is True and report["config"]["illusion"] is False
    model = report["models"][0]
    assert model["fixes"]["settings"]["calibration"]["n_samples"] == 16
    assert {fix["calibrator"] for fix in model["fixes"]["fixes"]} >= {"temperature", "isotonic"}
    page = (tmp_path / "report" / "report.html").read_text()
    assert "Which calibration fix survives attack?" in page
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["calibrate", *common, "--calibrators", "temperature,isotonic", "--fit-on", "clean",
              "--out", str(tmp_path / "fixes")])
    assert done.value.code == 0, capsys.readouterr().err
    assert "temperature/clean" in capsys.readouterr().out
    saved = json.loads((tmp_path / "fixes" / "fixes.json").read_text())
    assert [fix["calibrator"] for fix in saved["fixes"]] == ["temperature", "isotonic"]
    assert load_calibrator(tmp_path / "fixes" / "temperature-clean").kind == "temperature"
    # The saved calibrators wrap the classifiers of a text audit, alone or as one ensemble.
    twin = classifier.save_pretrained(tmp_path / "twin")
    fitted = tmp_path / "fixes"
    with pytest.raises(SystemExit) as done:
        main(["audit", *common, "--model", f"hf:{twin}", "--calibrator", str(fitted / "temperature-clean"),
              "--calibrator", str(fitted / "isotonic-clean"), "--ensemble", "--bootstrap", "10",
              "--out", str(tmp_path / "calibrated")])
    assert done.value.code == 0, capsys.readouterr().err
    (audited,) = json.loads((tmp_path / "calibrated" / "report.json").read_text())["models"]
    assert audited["name"] == ("ensemble(model + temperature (temperature-clean) + "
                               "twin + isotonic (isotonic-clean))")
    assert audited["attacks"][0]["eps"] == 0.5
    for args, message in [(["--attack", "embedding-pgd"], "attack"),
                          (["--normalize", "0.5,0.5"], "--normalize")]:
        with pytest.raises(SystemExit) as done:
            main(["calibrate", *common[:-4], *args])
        err = capsys.readouterr().err
        assert done.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_two_processes_audit_text_like_one(classifier, tmp_path, capsys):
    """torchrun with 2 gloo processes, each attacking whole batches of 8 texts: the report, the
    per-sample records, the example texts and the query count are those of one process."""
    from test_distributed_audit import assert_same, one_process, torchrun, without_timings

    folder = classifier.save_pretrained(tmp_path / "model")
    write_reviews_csv(tmp_path / "reviews.csv")
    args = [*csv_audit_args(folder, tmp_path / "reviews.csv"), "--batch-size", "8"]
    one_process([*args, "--out", str(tmp_path / "one")], capsys)
    done = torchrun([*args, "--out", str(tmp_path / "two")])
    assert done.returncode == 0, done.stderr[-3000:]
    ours = json.loads((tmp_path / "two" / "report.json").read_text())
    theirs = json.loads((tmp_path / "one" / "report.json").read_text())
    assert theirs["models"][0]["examples"] and theirs["models"][0]["cost"]["queries"] > 0
    assert_same(without_timings(ours), without_timings(theirs))
    with np.load(tmp_path / "two" / "samples.npz") as two, np.load(tmp_path / "one" / "samples.npz") as one:
        assert sorted(two.files) == sorted(one.files)
        for name in one.files:
            np.testing.assert_array_equal(two[name], one[name], err_msg=name)
