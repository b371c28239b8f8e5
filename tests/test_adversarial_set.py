"""Static adversarial sets: round trip, resume after a real kill, corruption, recipes, transfer."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from advcal.analyses.adversarial_sets import make_adversarial_set
from advcal.analyses.audit import audit
from advcal.attacks import PGD
from advcal.cli import main
from advcal.data import AdversarialSet, load_data
from advcal.data.adversarial import ZSTD_MAGIC, decode_shard
from advcal.errors import ConfigError, InputError
from advcal.models import load_model, model_fingerprint
from conftest import advcal_cli, one_line_error

EPS = [0.05, 0.1]


def run(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stopped:
        main(args)
    captured = capsys.readouterr()
    return stopped.value.code, captured.out, captured.err


def file_hashes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def small():
    return load_model("digits-cnn"), load_data("digits", limit=60)


def test_round_trip_matches_the_attack_and_the_manifest(small, tmp_path):
    model, data = small
    stored = make_adversarial_set(model, data, EPS, tmp_path / "set", attack_params={"steps": 3},
                                  seed=7, shard_size=16, batch_size=10)
    direct = PGD(eps=EPS, steps=3, seed=7)(model, data.x, data.y, index=data.index)
    shards = list(stored.shards())
    assert [len(s["index"]) for s in shards] == [16, 16, 16, 12]
    joined = {key: torch.cat([s[key] for s in shards]) for key in shards[0]}
    assert torch.equal(joined["index"], data.index) and torch.equal(joined["y"], data.y)
    assert torch.equal(joined["x"], data.x)
    for k, result in enumerate(direct):  # per-sample randomness: shards and batches do not matter
        assert torch.equal(joined[f"x_adv.{k}"], result.x_adv)
        assert torch.allclose(joined[f"logits.{k}"], result.logits, atol=1e-5)
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    recipe = manifest["recipe"]
    assert manifest["complete"] and manifest["advcal_version"]
    assert (recipe["attack"]["attack"], recipe["attack"]["steps"], recipe["attack"]["seed"]) == ("pgd", 3, 7)
    assert recipe["epsilons"] == EPS and recipe["data"]["n_samples"] == 60
    assert recipe["model"]["fingerprint"] == model_fingerprint(model)
    assert recipe["data"]["fingerprint"] == data.fingerprint()
    for entry in manifest["shards"]:
        assert hashlib.sha256((tmp_path / "set" / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
    accuracies = stored.accuracies()
    assert accuracies["clean"] > accuracies["eps=0.05"] > accuracies["eps=0.1"]


def test_zstd_shards_hold_the_same_tensors_and_are_detected_by_content(small, tmp_path):
    model, data = small
    settings = {"attack_params": {"steps": 2}, "shard_size": 32}
    plain = make_adversarial_set(model, data, EPS, tmp_path / "plain", **settings)
    packed = make_adversarial_set(model, data, EPS, tmp_path / "zstd", compression="zstd", **settings)
    files = sorted((tmp_path / "zstd").glob("shard-*"))
    assert all(path.name.endswith(".safetensors.zst") for path in files)
    assert files[0].read_bytes()[:4] == ZSTD_MAGIC
    plain_files = (tmp_path / "plain").glob("shard-*")
    assert sum(p.stat().st_size for p in files) < sum(p.stat().st_size for p in plain_files)
    for a, b in zip(plain.shards(), packed.shards(), strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    # The reader looks at the bytes, not the name.
    assert torch.equal(decode_shard(files[0].read_bytes())["x_adv.0"], next(plain.shards())["x_adv.0"])


ATTACK_ARGS = ["attack", "--model", "digits-cnn", "--data", "digits", "--limit", "240", "--eps", "0.05,0.1",
               "--steps", "40", "--shard-size", "8", "--batch-size", "8", "--seed", "3"]


def test_a_killed_run_resumes_to_the_files_of_an_uninterrupted_run(tmp_path, capsys):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    code, _, err = run([*ATTACK_ARGS, "--out", str(reference)], capsys)
    assert code == 0, err
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-m", "advcal", *ATTACK_ARGS, "--out", str(resumed)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = resumed / "manifest.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it once a few shards are on disk
        try:
            done = sum(1 for shard in json.loads(manifest.read_text())["shards"] if shard["sha256"])
        except (FileNotFoundError, json.JSONDecodeError):
            done = 0
        if done >= 3:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = json.loads(manifest.read_text())
    assert not state["complete"], "the run finished before it could be killed"
    finished = sum(1 for shard in state["shards"] if shard["sha256"])
    assert 3 <= finished < len(state["shards"])
    with pytest.raises(InputError, match="incomplete"):
        AdversarialSet(resumed)
    code, _, err = run([*ATTACK_ARGS, "--out", str(resumed)], capsys)
    assert code == 0, err
    assert file_hashes(resumed) == file_hashes(reference)


def test_an_altered_shard_is_refused_on_read_and_regenerated_on_rerun(tmp_path, capsys):
    folder = tmp_path / "set"
    args = [*ATTACK_ARGS[:6], "60", *ATTACK_ARGS[7:], "--steps", "2", "--out", str(folder)]
    assert run(args, capsys)[0] == 0
    original = file_hashes(folder)
    shard = folder / "shard-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])  # truncated
    with pytest.raises(InputError, match=r"shard-00002\.safetensors does not match its sha256"):
        list(AdversarialSet(folder).shards())
    code, _, err = run(["audit", "--adv-set", str(folder), "--bootstrap", "0", "--out", str(tmp_path / "r")],
                       capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "does not match its sha256" in err
    assert run(args, capsys)[0] == 0
    assert file_hashes(folder) == original


def test_another_recipe_in_the_same_folder_is_refused_naming_the_difference(small, tmp_path, capsys):
    model, data = small
    make_adversarial_set(model, data, EPS, tmp_path / "set", attack_params={"steps": 2}, shard_size=32)
    with pytest.raises(ConfigError, match=r"attack\.steps: 2 in the set vs 3 now"):
        make_adversarial_set(model, data, EPS, tmp_path / "set", attack_params={"steps": 3}, shard_size=32)
    with pytest.raises(ConfigError, match=r"model\.fingerprint: "):
        make_adversarial_set(load_model("digits-cnn-at"), data, EPS, tmp_path / "set",
                             attack_params={"steps": 2}, shard_size=32)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"is not empty and holds no manifest\.json"):
        make_adversarial_set(model, data, EPS, tmp_path / "other", attack_params={"steps": 2})
    code, _, err = run(["audit", "--adv-set", str(tmp_path / "other"), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "holds no manifest.json" in err


def test_stored_audit_equals_the_live_one_and_another_model_is_flagged_as_transfer(small, tmp_path):
    model, data = small
    stored = make_adversarial_set(model, data, EPS, tmp_path / "set", attack_params={"steps": 3}, seed=5,
                                  shard_size=25)
    live = audit({"net": model}, data, EPS, attack_params={"steps": 3}, bootstrap=10, seed=5).to_dict()
    white = audit({"net": model}, stored, bootstrap=10, seed=5).to_dict()
    assert white["models"][0]["evaluation"]["kind"] == "white-box"
    assert white["config"]["data"]["adversarial_set"] == str(tmp_path / "set")
    assert white["config"]["attack"] == live["config"]["attack"]
    for ours, theirs in zip(white["models"][0]["attacks"], live["models"][0]["attacks"], strict=True):
        assert ours["metrics"] == pytest.approx(theirs["metrics"], abs=1e-6)
    codes = [flag["code"] for flag in white["models"][0]["flags"]]
    assert "TRANSFER_EVALUATION" not in codes
    transfer = audit({"at": load_model("digits-cnn-at")}, stored, bootstrap=0).to_dict()["models"][0]
    assert transfer["evaluation"]["kind"] == "transfer"
    assert transfer["evaluation"]["source_model_fingerprint"] == model_fingerprint(model)
    assert next(f for f in transfer["flags"] if f["code"] == "TRANSFER_EVALUATION")["severity"] == "warning"
    with pytest.raises(ConfigError, match="holds ε"):
        audit({"net": model}, stored, [0.3])


def _tamper_shard_outside(manifest: dict, folder: Path) -> None:
    """Point shard 0 at a copy of itself outside the set (hash intact): a path traversal."""
    outside = folder.parent / "outside.safetensors"
    outside.write_bytes((folder / manifest["shards"][0]["file"]).read_bytes())
    manifest["shards"][0]["file"] = "../outside.safetensors"


# (what is wrong, how the manifest is changed, what the error says)
TAMPERINGS = [
    ("a shard outside the folder", _tamper_shard_outside, "expected a plain name"),
    ("an absolute shard path", lambda m, f: m["shards"][0].update(file=str(f / m["shards"][0]["file"])),
     "expected a plain name"),
    ("a shard name that is not a string", lambda m, f: m["shards"][1].update(file=7), "names the file 7"),
    ("no recipe", lambda m, f: m.pop("recipe"), "expected a recipe object and a shards list"),
    ("shards not a list", lambda m, f: m.update(shards={"0": {}}),
     "expected a recipe object and a shards list"),
    ("a shard that is not an object", lambda m, f: m["shards"].__setitem__(1, "shard"),
     "shard 1 is not an object"),
    ("no model fingerprint", lambda m, f: m["recipe"]["model"].pop("fingerprint"),
     "lacks its data, attack or model"),
    ("ε as a string", lambda m, f: m["recipe"].update(epsilons="0.05,0.1"), "is not a list of numbers"),
    ("a count as a string", lambda m, f: m["recipe"]["data"].update(n_samples="60"), "lacks n_samples"),
    ("counts that disagree", lambda m, f: m["recipe"]["data"].update(n_samples=61),
     "the shards hold 60 samples, the recipe says 61"),
    ("a gap between shards", lambda m, f: m["shards"][1].update(start=17), "expected to start at 16"),
    ("an empty shard", lambda m, f: m["shards"][3].update(stop=48), "hold at least one sample"),
    ("a malformed sha256", lambda m, f: m["shards"][0].update(sha256="abc"), "64 hexadecimal digits"),
    ("complete with a shard missing", lambda m, f: m["shards"][2].update(sha256=None),
     "marked complete with shards missing"),
]


@pytest.fixture(scope="module")
def stored_set(small, tmp_path_factory) -> Path:
    model, data = small
    folder = tmp_path_factory.mktemp("stored") / "set"
    make_adversarial_set(model, data, EPS, folder, attack_params={"steps": 2}, seed=7, shard_size=16,
                         batch_size=16)
    return folder


@pytest.mark.parametrize(("what", "tamper", "message"), TAMPERINGS, ids=[t[0] for t in TAMPERINGS])
def test_a_tampered_manifest_is_refused_on_read_and_on_resume(small, stored_set, tmp_path, what, tamper,
                                                             message):
    folder = tmp_path / "set"
    shutil.copytree(stored_set, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    tamper(manifest, folder)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=re.escape(message)):
        AdversarialSet(folder)
    model, data = small
    with pytest.raises(InputError, match=re.escape(message)):
        make_adversarial_set(model, data, EPS, folder, attack_params={"steps": 2}, seed=7, shard_size=16,
                             batch_size=16)


def test_a_traversing_manifest_is_one_line_at_the_command_line(stored_set, tmp_path):
    folder = tmp_path / "set"
    shutil.copytree(stored_set, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    _tamper_shard_outside(manifest, folder)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    line = one_line_error(advcal_cli("audit", "--adv-set", str(folder), "--model", "digits-cnn",
                                     "--out", str(tmp_path / "report")))
    assert "adv_set:" in line and "'../outside.safetensors'" in line
    assert not (tmp_path / "report").exists()
