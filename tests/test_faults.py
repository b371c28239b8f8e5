"""Faults: a real ``advcal`` process killed (SIGKILL) at random instants, and at the rename of
an atomic write by a deterministic hook, then resumed, ends byte for byte as an uninterrupted
run; no half-written file is ever visible; SIGTERM and a rank that dies under torchrun end the
job with one line and status 3."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from advcal.cli import main
from advcal.errors import FaultError
from test_distributed_audit import _free_port, without_timings

pytestmark = pytest.mark.slow

ATTACK = ["attack", "--limit", "200", "--steps", "5", "--shard-size", "10"]
TRAIN = ["train", "--epochs", "3", "--val-limit", "40", "--seed", "3"]
AUDIT = ["audit", "--limit", "60", "--steps", "2", "--bootstrap", "10"]
# The same threads as the in-process runs compared with: float sums depend on the thread count.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
# Run the command with os.replace wrapped: SIGKILL when the n-th rename onto NAME is about to
# happen, its temporary file written in full (argv: NAME n advcal-arguments...).
KILL_AT_RENAME = """
import os, signal, sys
name, n, seen = sys.argv[1], int(sys.argv[2]), [0]
rename = os.replace
def replace(source, target, *args, **kwargs):
    if os.path.basename(target) == name:
        seen[0] += 1
        if seen[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
    return rename(source, target, *args, **kwargs)
os.replace = replace
from advcal.cli import main
main(sys.argv[3:])
"""


def run_in_process(args: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 0, capsys.readouterr().err


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "advcal", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_after(args: list[str], seconds: float) -> None:
    """Start the command and SIGKILL it after ``seconds`` (if it has not finished by then)."""
    process = start(args)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()


def kill_at_rename(name: str, n: int, args: list[str]) -> int:
    done = subprocess.run([sys.executable, "-c", KILL_AT_RENAME, name, str(n), *args], env=ENV,
                          capture_output=True, text=True, timeout=600)
    return done.returncode


def files_of(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name not in skip}


def temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] if folder.exists() else []


def timed(args: list[str]) -> float:
    began = time.monotonic()
    process = start(args)
    assert process.wait(timeout=600) == 0, process.stderr.read()
    return time.monotonic() - began


# ------------------------------------------------------------------------------ advcal attack
def test_attack_killed_at_20_random_instants_resumes_to_the_same_bytes(tmp_path, capsys):
    whole = tmp_path / "whole"
    seconds = timed([*ATTACK, "--out", str(whole)])
    reference = files_of(whole)
    assert len(reference) == 21  # the manifest and 20 shards
    draw, cut_short = random.Random(0), 0
    for k in range(20):
        cut = tmp_path / f"cut{k}"
        kill_after([*ATTACK, "--out", str(cut)], draw.uniform(0.2, 0.9 * seconds))
        cut_short += not (cut / "manifest.json").exists() or not json.loads(
            (cut / "manifest.json").read_text())["complete"]
        run_in_process([*ATTACK, "--out", str(cut)], capsys)  # resume (or start: killed early)
        assert files_of(cut) == reference, f"kill {k}"
        assert not temporaries(cut)
    assert cut_short >= 10  # most kills landed before the end (how many depends on the load)


@pytest.mark.parametrize("n", [1, 2, 7])
def test_attack_killed_at_a_manifest_rename_leaves_only_a_temporary_file_and_resumes(tmp_path, capsys, n):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run_in_process([*ATTACK, "--out", str(whole)], capsys)
    assert kill_at_rename("manifest.json", n, [*ATTACK, "--out", str(cut)]) == -signal.SIGKILL
    assert [name.startswith(".manifest.json.") for name in temporaries(cut)] == [True]
    if n == 1:  # killed before the first manifest: the folder holds nothing else
        assert [p.name for p in cut.iterdir()] == temporaries(cut)
    run_in_process([*ATTACK, "--out", str(cut)], capsys)
    assert files_of(cut) == files_of(whole) and not temporaries(cut)


# ------------------------------------------------------------------------------- advcal train
def _trained(folder: Path) -> dict[str, object]:
    """What an uninterrupted run must equal: the model's bytes, the frozen set's, the
    checkpoint's tensors, and the log but for its wall-clock seconds."""
    with open(folder / "log.csv") as handle:
        log = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]
    return {"model": (folder / "model.safetensors").read_bytes(),
            "frozen": (folder / "frozen-validation.safetensors").read_bytes(),
            "checkpoint": {k: v.tolist()
                           for k, v in load_file(str(folder / "checkpoint.safetensors")).items()},
            "log": log, "run": json.loads((folder / "run.json").read_text())}


def test_train_killed_at_20_random_instants_resumes_to_the_same_run(tmp_path, capsys):
    whole = tmp_path / "whole"
    seconds = timed([*TRAIN, "--out", str(whole)])
    reference = _trained(whole)
    draw, cut_short = random.Random(1), 0
    for k in range(20):
        cut = tmp_path / f"cut{k}"
        kill_after([*TRAIN, "--out", str(cut)], draw.uniform(0.2, 0.9 * seconds))
        cut_short += not (cut / "model.safetensors").exists()
        run_in_process([*TRAIN, "--out", str(cut), "--resume"], capsys)
        assert _trained(cut) == reference, f"kill {k}"
        assert not temporaries(cut)
    assert cut_short >= 10  # most kills landed before the end (how many depends on the load)


@pytest.mark.parametrize("name", ["checkpoint.safetensors", "log.csv", "checkpoint.json", "run.json",
                                  "model.safetensors"])
def test_train_killed_at_each_rename_resumes_to_the_same_run(tmp_path, capsys, name):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run_in_process([*TRAIN, "--out", str(whole)], capsys)
    # The second checkpoint's files: between weights and record is where they used to disagree.
    n = 1 if name in ("run.json", "model.safetensors") else 2
    assert kill_at_rename(name, n, [*TRAIN, "--out", str(cut)]) == -signal.SIGKILL
    run_in_process([*TRAIN, "--out", str(cut), "--resume"], capsys)
    assert _trained(cut) == _trained(whole)


# ------------------------------------------------------------------------------- advcal audit
def _report(folder: Path) -> dict[str, object]:
    return without_timings(json.loads((folder / "report.json").read_text()))


def test_audit_killed_at_20_random_instants_never_shows_a_half_written_report(tmp_path, capsys):
    whole = tmp_path / "whole"
    seconds = timed([*AUDIT, "--out", str(whole)])
    reference = _report(whole)
    draw = random.Random(2)
    for k in range(20):
        cut = tmp_path / f"cut{k}"
        # the last second or so is where the files are written
        kill_after([*AUDIT, "--out", str(cut)], draw.uniform(seconds - 1.5, seconds + 0.2))
        if (cut / "report.json").exists():
            assert _report(cut) == reference, f"kill {k}: a report that is there is whole"
        run_in_process([*AUDIT, "--out", str(cut)], capsys)
        assert _report(cut) == reference and not temporaries(cut)


def test_audit_killed_at_the_report_rename_leaves_no_report_and_reruns(tmp_path, capsys):
    cut = tmp_path / "cut"
    assert kill_at_rename("report.json", 1, [*AUDIT, "--out", str(cut)]) == -signal.SIGKILL
    assert not (cut / "report.json").exists() and temporaries(cut)
    run_in_process([*AUDIT, "--out", str(cut)], capsys)
    assert (cut / "report.json").exists() and not temporaries(cut)


# ---------------------------------------------------------------------------- stop and rank loss
def signalled_once_under_way(folder: Path, signum: int) -> subprocess.Popen:
    """A long ``advcal attack`` into ``folder``, sent ``signum`` once its manifest is written."""
    process = start([*ATTACK, "--steps", "40", "--out", str(folder)])
    deadline = time.monotonic() + 120
    while not (folder / "manifest.json").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signum)
    return process


def test_sigterm_ends_the_command_with_one_line_and_status_3_and_it_resumes(tmp_path, capsys):
    cut, whole = tmp_path / "cut", tmp_path / "whole"
    process = signalled_once_under_way(cut, signal.SIGTERM)
    assert process.wait(timeout=60) == 3
    lines = process.stderr.read().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advcal: fault: stopped by SIGTERM"), lines
    run_in_process([*ATTACK, "--steps", "40", "--out", str(cut)], capsys)
    run_in_process([*ATTACK, "--steps", "40", "--out", str(whole)], capsys)
    assert files_of(cut) == files_of(whole)


def test_ctrl_c_ends_the_command_with_one_line_and_status_130(tmp_path):
    process = signalled_once_under_way(tmp_path / "cut", signal.SIGINT)
    assert process.wait(timeout=60) == 130
    assert process.stderr.read().strip().splitlines() == ["advcal: interrupted"]


def test_a_rank_that_dies_ends_the_job_with_one_line_on_rank_0_and_no_report(tmp_path):
    (tmp_path / "dying.py").write_text(
        "import os, signal\n"
        "from torch import nn\n"
        "class Dying(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.net, self.calls = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), 0\n"
        "    def forward(self, x):\n"
        "        self.calls += 1  # the first calls are the check that it takes the data\n"
        "        if os.environ.get('RANK') == '1' and self.calls == 4:\n"
        "            os.kill(os.getpid(), signal.SIGKILL)\n"
        "        return self.net(x)\n"
        "def build():\n"
        "    return Dying()\n"
    )
    launcher = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    out = tmp_path / "report"
    done = subprocess.run(
        [launcher, "--nproc_per_node", "2", "--master_port", str(_free_port()), "--tee", "3", "-m", "advcal",
         "audit", "--model", f"{tmp_path / 'dying.py'}:build", "--limit", "120", "--steps", "3",
         "--bootstrap", "20", "--batch-size", "32", "--out", str(out)],
        env={**ENV, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    rank0 = [line.split(":", 1)[1].strip() for line in done.stderr.splitlines() + done.stdout.splitlines()
             if line.startswith("[default0]:") and line.split(":", 1)[1].strip()]
    assert len(rank0) == 1 and rank0[0].startswith("advcal: fault: "), rank0
    assert "another rank" in rank0[0]
    assert not (out / "report.json").exists()


def test_a_collective_that_loses_its_peers_is_a_fault(monkeypatch):
    import torch
    import torch.distributed as dist

    from advcal.engine import distributed

    def closed(*args, **kwargs):
        raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer "
                           "[127.0.0.1]:41000\nException raised from recvLoop at ...")

    monkeypatch.setattr(dist, "broadcast", closed)
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    monkeypatch.setattr(distributed, "_device", lambda: torch.device("cpu"))
    with pytest.raises(FaultError, match=r"rank 0: lost the other ranks during a broadcast \(\[.*"
                       r"Connection closed by peer \[127\.0\.0\.1\]:41000\); another rank probably died"):
        distributed._broadcast(torch.zeros(1), 0)


def test_an_end_of_input_anywhere_is_one_line_and_status_2(monkeypatch, capsys):
    import advcal.api.runs as runs

    def ends(config):
        raise EOFError("EOF when reading a line")

    monkeypatch.setattr(runs, "run_list", ends)
    with pytest.raises(SystemExit) as stopped:
        main(["list", "attacks"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and lines == [
        "advcal: error: an input ended early (EOFError: EOF when reading a line): a truncated file, or code "
        "that read from a closed stdin"]
