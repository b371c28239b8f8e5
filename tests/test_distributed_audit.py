"""torchrun with 2 gloo processes: the same report, samples and adversarial files as 1 process;
a failing rank fails the job and leaves no report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from advcal.cli import main

pytestmark = pytest.mark.slow

AUDIT = ["audit", "--limit", "120", "--steps", "3", "--bootstrap", "20", "--batch-size", "32"]
ATTACK = ["attack", "--limit", "100", "--eps", "0.05,0.1", "--steps", "3", "--shard-size", "16",
          "--batch-size", "8", "--compress", "zstd"]


def torchrun(args: list[str], processes: int = 2) -> subprocess.CompletedProcess:
    launcher = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [launcher, "--nproc_per_node", str(processes), "--master_port", str(_free_port()), "-m", "advcal",
         *args], env=env, capture_output=True, text=True, timeout=600,
    )


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_process(args: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 0, capsys.readouterr().err


def without_timings(value: object) -> object:
    """report.json minus wall-clock seconds (and the illusion check's time ratio), the one thing
    that may differ between runs."""
    if isinstance(value, dict):
        return {key: without_timings(item) for key, item in value.items()
                if key not in ("seconds", "time_of_served_pgd")}
    if isinstance(value, list):
        return [without_timings(item) for item in value]
    return value


def assert_same(ours: object, theirs: object, where: str = "report") -> None:
    """Equal, floats to float64 rounding (sums over ranks are added in another order)."""
    if isinstance(ours, dict):
        assert ours.keys() == theirs.keys(), where
        for key in ours:
            assert_same(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(ours, list):
        assert len(ours) == len(theirs), where
        for k, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a, b, f"{where}[{k}]")
    elif isinstance(ours, float) and isinstance(theirs, float):
        assert ours == pytest.approx(theirs, abs=1e-12, rel=1e-12), where
    else:
        assert ours == theirs, where


def test_two_processes_audit_exactly_like_one(tmp_path, capsys):
    one_process([*AUDIT, "--out", str(tmp_path / "one")], capsys)
    done = torchrun([*AUDIT, "--out", str(tmp_path / "two")])
    assert done.returncode == 0, done.stderr[-3000:]
    ours = json.loads((tmp_path / "two" / "report.json").read_text())
    theirs = json.loads((tmp_path / "one" / "report.json").read_text())
    assert_same(without_timings(ours), without_timings(theirs))
    with np.load(tmp_path / "two" / "samples.npz") as two, np.load(tmp_path / "one" / "samples.npz") as one:
        assert sorted(two.files) == sorted(one.files)
        for key in one.files:
            np.testing.assert_array_equal(two[key], one[key], err_msg=key)
    # The counts of passes add up over ranks to the one-process counts.
    for a, b in zip(ours["models"], theirs["models"], strict=True):
        assert a["cost"]["forward_passes"] == b["cost"]["forward_passes"]


def test_two_processes_deal_out_the_illusion_check_and_the_fixes(tmp_path, capsys):
    """Each model's checks attack the whole data: rank k runs model k's, and the report is the
    one-process report (which model ran where is tested in test_distributed.py)."""
    args = [*AUDIT, "--illusion", "--fixes"]
    one_process([*args, "--out", str(tmp_path / "one")], capsys)
    done = torchrun([*args, "--out", str(tmp_path / "two")])
    assert done.returncode == 0, done.stderr[-3000:]
    ours = json.loads((tmp_path / "two" / "report.json").read_text())
    theirs = json.loads((tmp_path / "one" / "report.json").read_text())
    assert all("illusion" in model and "fixes" in model for model in ours["models"])
    assert_same(without_timings(ours), without_timings(theirs))


def test_two_processes_write_the_files_of_one(tmp_path, capsys):
    one_process([*ATTACK, "--out", str(tmp_path / "one")], capsys)
    done = torchrun([*ATTACK, "--out", str(tmp_path / "two")])
    assert done.returncode == 0, done.stderr[-3000:]
    one = {p.name: p.read_bytes() for p in sorted((tmp_path / "one").iterdir())}
    two = {p.name: p.read_bytes() for p in sorted((tmp_path / "two").iterdir())}
    assert one.keys() == two.keys() and len(one) == 1 + 7
    for name in one:
        assert one[name] == two[name], name  # adversarial tensors bit for bit, manifest identical


def test_a_failing_rank_fails_the_job_and_leaves_no_report(tmp_path):
    (tmp_path / "faulty.py").write_text(
        "import os\n"
        "from torch import nn\n"
        "class Faulty(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n"
        "    def forward(self, x):\n"
        "        if os.environ.get('RANK') == '1':\n"
        "            raise RuntimeError('sensor fault on this worker')\n"
        "        return self.net(x)\n"
        "def build():\n"
        "    return Faulty()\n"
    )
    out = tmp_path / "report"
    done = torchrun([*AUDIT, "--model", f"{tmp_path / 'faulty.py'}:build", "--out", str(out)])
    assert done.returncode != 0
    # The first forward pass (the check that the model takes the data) fails on rank 1 only.
    assert "rank 1 failed: model build: cannot take the data's inputs" in done.stderr
    assert "its first forward pass raised RuntimeError: sensor fault on this worker" in done.stderr
    assert not (out / "report.json").exists()
