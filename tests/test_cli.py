"""The advcal command: thin, one-line errors with exit status 2, JSON written atomically."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import advcal
from advcal.cli import main
from advcal.metrics import calibration_report
from conftest import make_predictions


def run(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture
def scores_file(tmp_path):
    logits, labels = make_predictions(500, 4, seed=3, temperature=0.5)
    path = tmp_path / "scores.npz"
    np.savez(path, logits=logits.numpy(), labels=labels.numpy())
    return path, logits, labels


def test_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"advcal {advcal.__version__}"


def test_metrics_prints_a_table_and_writes_json(scores_file, tmp_path, capsys):
    path, logits, labels = scores_file
    out_json = tmp_path / "out" / "report.json"
    code, out, _ = run(["metrics", str(path), "--json", str(out_json), "--bootstrap", "20"], capsys)
    assert code == 0
    assert all(f"│ {key} " in out for key in ("ece", "ace", "sce", "mce", "brier", "nll"))
    payload = json.loads(out_json.read_text())
    expected = calibration_report(logits, labels, bootstrap=20, smooth=True)
    ece_entry = payload["metrics"]["ece.top_label.equal_width_15.l1"]
    assert ece_entry["value"] == pytest.approx(expected["ece"])
    assert ece_entry["ci"] == pytest.approx(list(expected.intervals["ece"]))
    assert payload["settings"]["bootstrap_seed"] == 0
    assert payload["advcal_version"] == advcal.__version__
    assert not list(out_json.parent.glob(".*.tmp"))  # no temporary file left behind


def test_metrics_reads_safetensors_probabilities_and_indices(tmp_path, capsys):
    logits, labels = make_predictions(300, 3, seed=5)
    probs = torch.softmax(logits.double(), 1).numpy()
    path = tmp_path / "probs.safetensors"
    save_file({"probs": probs, "y": labels.numpy(), "index": np.arange(300)}, str(path))
    out_json = tmp_path / "r.json"
    code, _, _ = run(["metrics", str(path), "--json", str(out_json), "--bootstrap", "0"], capsys)
    assert code == 0
    payload = json.loads(out_json.read_text())
    assert payload["settings"]["inputs"] == "probs" and payload["settings"]["indexed"]
    assert payload["metrics"]["nll.nats"]["value"] == pytest.approx(
        calibration_report(logits, labels)["nll"], abs=1e-9)


@pytest.mark.parametrize(
    ("arrays", "args", "message"),
    [
        (None, [], "file: {path} does not exist"),
        ({"labels": np.zeros(3, dtype=np.int64)}, [], "has no score array"),
        ({"logits": np.zeros((3, 2), np.float32)}, [], "has no labels under 'labels' or 'y'"),
        ({"logits": np.zeros((3, 2), np.float32), "probs": np.full((3, 2), 0.5),
          "labels": np.zeros(3, np.int64)}, [], "holds several score arrays"),
        ({"logits": np.full((3, 2), 0.5), "labels": np.zeros(3, np.int64)}, [],
         "look like softmax probabilities"),
        ({"logits": np.zeros((3, 2)), "labels": np.array([0, 1, 2])}, [], "class index 2 is out of range"),
        ({"logits": np.zeros((3, 2)), "labels": np.zeros(3, np.int64)}, ["--n-bins", "0"],
         "n_bins: expected an integer >= 1"),
        ({"logits": np.zeros((3, 2)), "labels": np.zeros(3, np.int64)}, ["--n-bins", "many"],
         "Invalid value for '--n-bins'"),
        ({"logits": np.zeros((3, 2)), "labels": np.zeros(3, np.int64)}, ["--inputs", "softmax"],
         "inputs: expected one of logits, probs, log_probs"),
    ],
)
def test_bad_input_prints_one_line_and_exits_2(tmp_path, capsys, arrays, args, message):
    path = tmp_path / "bad.npz"
    if arrays is not None:
        np.savez(path, **arrays)
    code, out, err = run(["metrics", str(path), *args], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advcal: error: "), err
    assert message.format(path=path) in lines[0]
    assert "Traceback" not in out + err


def test_not_a_npz_file_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "scores.npz"
    path.write_bytes(b"not a zip archive")
    code, _, err = run(["metrics", str(path)], capsys)
    assert code == 2 and "cannot read" in err
    pickle_like = tmp_path / "scores.pt"
    pickle_like.write_bytes(b"\x80\x04")
    code, _, err = run(["metrics", str(pickle_like)], capsys)
    assert code == 2 and "expected a .npz or .safetensors file" in err


def test_console_script_runs_as_a_module(scores_file):
    path, _, _ = scores_file
    done = subprocess.run(
        [sys.executable, "-m", "advcal", "metrics", str(path), "--bootstrap", "0"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Calibration of scores.npz" in done.stdout


def test_atomic_writes_leave_an_ordinary_file_and_no_temporary(tmp_path):
    import os
    import stat

    from advcal._core.atomic import write_json_atomic

    old = os.umask(0o022)
    try:
        path = write_json_atomic(tmp_path / "sub" / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]
    with pytest.raises(ValueError, match="Out of range float"):
        write_json_atomic(path, {"a": float("nan")})
    assert path.read_text() == '{\n  "a": 1\n}\n'  # a refused payload leaves the old file
