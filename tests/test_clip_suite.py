"""The zero-shot robustness suite on two small local datasets, through the tiny open_clip model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

pytest.importorskip("open_clip")

from safetensors.torch import save_file

from advcal.analyses.zeroshot import harmonic_mean, run_zeroshot_suite
from advcal.cli import main
from advcal.clip import ZeroShotClassifier, tiny_clip
from advcal.errors import ConfigError, InputError

NAMES = ["zero", "one", "two"]


def write_folder(root, name: str, digits: list[int], per_class: int = 8) -> None:
    """Real PNG files: scikit-learn's digits upscaled to 16×16 RGB, one sub-folder per class."""
    images, labels = load_digits(return_X_y=True)
    for digit in digits:
        folder = root / name / NAMES[digit]
        folder.mkdir(parents=True)
        for k, image in enumerate(images[labels == digit][:per_class]):
            pixels = np.kron(image.reshape(8, 8) / 16 * 255, np.ones((2, 2))).astype(np.uint8)
            Image.fromarray(np.stack([pixels] * 3, -1)).save(folder / f"{k}.png")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    write_folder(root, "cifar10", [0, 1, 2])
    write_folder(root, "pcam", [0, 1])
    return root


@pytest.fixture(scope="module")
def head():
    return ZeroShotClassifier(*tiny_clip(seed=0), NAMES)


def run(head, root, **options):
    # datasets=None: the paper's 16, of which this root holds two; the others are skipped, in the table
    settings = {"datasets": None, "steps": 3, "eps": 8 / 255, "batch_size": 16}
    return run_zeroshot_suite(head.with_classes, root, **{**settings, **options})


def test_the_suite_runs_end_to_end_and_writes_its_table(head, root, tmp_path):
    result = run(head, root, out=tmp_path / "out")
    rows = {row["dataset"]: row for row in result.rows}
    assert list(rows) == ["cifar10", "pcam"] and rows["cifar10"]["n"] == 24 and rows["pcam"]["classes"] == 2
    skipped = {s["dataset"]: s["reason"] for s in result.skipped}
    assert len(skipped) == 14 and "not found" in skipped["dtd"]
    # The AutoAttack ensemble; APGD-T's targeted DLR needs four classes (these sets have fewer).
    assert rows["cifar10"]["autoattack_ran"] == ["apgd-ce", "fab-t", "square"]
    assert rows["pcam"]["autoattack_ran"] == ["apgd-ce", "fab-t", "square"]
    for row in rows.values():
        assert row["worst_accuracy"] <= min(row["clean_accuracy"], row["pgd_accuracy"], row["cw_accuracy"],
                                            row["autoattack_accuracy"])
        assert row["h"] == pytest.approx(harmonic_mean(row["clean_accuracy"], row["autoattack_accuracy"]))
        assert row["adv_ece"] == row[f"{row['strongest_attack']}_ece"]
        for where in ("clean", "adv"):
            assert row[f"{where}_epistemic_uncertainty"] >= 0
            assert row[f"{where}_aleatoric_uncertainty"] <= row[f"{where}_predictive_uncertainty"] + 1e-9
    for key in ("clean_accuracy", "pgd_accuracy", "autoattack_accuracy", "clean_ece"):
        assert result.average[key] == pytest.approx(np.mean([row[key] for row in rows.values()]))
    assert result.average["h"] == pytest.approx(
        harmonic_mean(result.average["clean_accuracy"], result.average["autoattack_accuracy"]))
    saved = json.loads((tmp_path / "out" / "zeroshot.json").read_text())
    assert saved["settings"]["seed"] == 0 and len(saved["rows"]) == 2
    table = (tmp_path / "out" / "zeroshot.md").read_text()
    assert "| CIFAR-10 | 24 |" in table and "average (2)" in table and "Skipped dtd" in table


def test_a_dataset_the_user_names_must_be_there(head, root):
    with pytest.raises(InputError, match=r"datasets: dtd: not found \(.*dtd\)"):
        run(head, root, datasets=["cifar10", "dtd"])


def test_the_suite_resumes_and_refuses_other_settings(head, root, tmp_path):
    first = run(head, root, out=tmp_path / "out")

    def never(names):
        raise AssertionError(f"finished datasets must not be evaluated again ({names})")

    again = run_zeroshot_suite(never, root, datasets=["cifar10", "pcam"], steps=3, eps=8 / 255, batch_size=16,
                               out=tmp_path / "out")
    assert again.rows == first.rows
    with pytest.raises(ConfigError, match="other settings"):
        run(head, root, out=tmp_path / "out", steps=4)


def test_the_suite_is_deterministic_and_reads_classes_txt(head, root, tmp_path):
    assert run(head, root).rows == run(head, root).rows
    (root / "pcam" / "classes.txt").write_text("lymph node\ntumour tissue\n")
    seen = []
    try:
        run_zeroshot_suite(lambda names: seen.append(names) or head.with_classes(names), root,
                           datasets=["pcam"], steps=1, attacks=["pgd"])
    finally:
        (root / "pcam" / "classes.txt").unlink()
    assert seen == [["lymph node", "tumour tissue"]]


@pytest.mark.parametrize(("options", "name"), [({"attacks": ["fgsm"]}, "attacks"), ({"eps": 2.0}, "eps"),
                                                ({"datasets": []}, "datasets"), ({"steps": 0}, "steps")])
def test_bad_arguments_name_themselves(head, root, options, name):
    with pytest.raises(InputError, match=f"^{name}:"):
        run(head, root, **options)


def test_advcal_zeroshot_on_a_local_checkpoint(root, tmp_path, capsys):
    clip_model, _ = tiny_clip(seed=0)
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in clip_model.state_dict().items()}, str(weights))
    out = tmp_path / "zs"
    with pytest.raises(SystemExit) as done:
        main(["zeroshot", "--model", "clip:advcal-tiny", "--weights", str(weights), "--suite", str(root),
              "--datasets", "cifar10,pcam", "--steps", "2", "--attacks", "pgd,autoattack",
              "--out", str(out)])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    assert "Zero-shot robustness" in printed and "average" in printed
    saved = json.loads((out / "zeroshot.json").read_text())
    assert [row["dataset"] for row in saved["rows"]] == ["cifar10", "pcam"]
    assert saved["skipped"] == []
    assert saved["settings"]["attacks"] == ["pgd", "autoattack"] and saved["settings"]["steps"] == 2


def test_advcal_audit_takes_a_clip_model(tmp_path, capsys):
    clip_model, _ = tiny_clip(seed=0)
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in clip_model.state_dict().items()}, str(weights))
    (tmp_path / "classes.txt").write_text("\n".join(["zero", "one", "two", "three", "four", "five", "six",
                                                      "seven", "eight", "nine"]) + "\n")
    with pytest.raises(SystemExit) as done:
        main(["audit", "--model", "clip:advcal-tiny", "--weights", str(weights), "--classes",
              str(tmp_path / "classes.txt"), "--data", "digits", "--limit", "40", "--eps", "1/255",
              "--steps", "2", "--bootstrap", "0", "--out", str(tmp_path / "report")])
    assert done.value.code == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["models"][0]["name"] == "clip:advcal-tiny" and len(report["models"][0]["attacks"]) == 1
    with pytest.raises(SystemExit) as refused:
        main(["audit", "--model", "clip:advcal-tiny", "--normalize", "0.5,0.5", "--data", "digits"])
    assert refused.value.code == 2
    assert "normalize" in capsys.readouterr().err
