"""Hostile input, one case per row: the command prints one line naming the argument and exits 2
before any work (nothing is written), and the API raises an InputError the same way."""

from __future__ import annotations

import pytest
import torch

from advcal._core.validation import SEED_MAX, check_output, check_seed
from advcal.errors import InputError
from advcal.metrics import CalibrationStats
from conftest import advcal_cli, one_line_error

# (arguments with FILE, DIR and OUT for paths in the test's folder, what the one line says)
CLI_CASES = [
    (["audit", "--limit", "20", "--out", "FILE"], "out: FILE is a file; expected a folder"),
    (["audit", "--limit", "20", "--out", "FILE/sub"], "out: FILE/sub lies under FILE, which is a file"),
    (["attack", "--limit", "20", "--out", "FILE"], "out: FILE is a file; expected a folder"),
    (["calibrate", "--limit", "20", "--out", "FILE"], "out: FILE is a file; expected a folder"),
    (["calibrate", "--limit", "20", "--json", "DIR"], "json: DIR is a folder; expected a file path"),
    (["illusion", "--limit", "20", "--json", "DIR"], "json: DIR is a folder; expected a file path"),
    (["illusion", "--limit", "20", "--json", "FILE/x.json"],
     "json: FILE/x.json lies under FILE, which is a file"),
    (["train", "--epochs", "1", "--out", "FILE"], "out: FILE is a file; expected a folder"),
    (["zeroshot", "--model", "clip:ViT-B-32", "--suite", "DIR", "--out", "FILE"], "out: FILE is a file"),
    (["audit", "--limit", "20", "--seed", str(2**63)], "seed: expected an integer from 0 to 2**63 - 1"),
    (["audit", "--limit", "20", "--seed", "99999999999999999999"], "seed: expected an integer from 0"),
    (["attack", "--limit", "20", "--seed", str(2**64), "--out", "OUT"], "seed: expected an integer from 0"),
    (["illusion", "--limit", "20", "--seed", str(2**63)], "seed: expected an integer from 0"),
    (["audit", "--limit", "20", "--bins", "1000000000"], "of memory, more than this machine's"),
    (["audit", "--limit", "20", "--bootstrap", "100000000000"], "of memory, more than this machine's"),
    (["audit", "--limit", "20", "--eps", "inf"], "eps: expected finite numbers, got 'inf'"),
]


@pytest.mark.parametrize(("args", "expected"), CLI_CASES,
                         ids=[" ".join(a[:1] + a[-2:]) for a, _ in CLI_CASES])
def test_the_command_refuses_in_one_line_before_any_work(args, expected, tmp_path):
    (tmp_path / "FILE").write_text("the user's file")
    (tmp_path / "DIR").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    line = one_line_error(advcal_cli(*args, cwd=tmp_path))
    assert expected in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, nothing moved
    assert (tmp_path / "FILE").read_text() == "the user's file"


def test_the_api_checks_outputs_and_seeds_the_same_way(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match=r"out: .* is a file; expected a folder"):
        check_output(tmp_path / "file", "out", "folder")
    with pytest.raises(InputError, match="lies under"):
        check_output(tmp_path / "file" / "report.json", "json", "file")
    with pytest.raises(InputError, match="is a folder; expected a file path"):
        check_output(tmp_path, "json", "file")
    assert check_output(tmp_path / "new" / "deeper", "out", "folder") == tmp_path / "new" / "deeper"
    assert check_seed(SEED_MAX) == SEED_MAX
    for bad in (-1, SEED_MAX + 1, 1.5, True, "3"):
        with pytest.raises(InputError, match="seed: expected an integer"):
            check_seed(bad)


@pytest.mark.parametrize(("n_bins", "bootstrap"), [(10**9, 0), (15, 10**11), (10**5, 10**5)])
def test_statistics_too_big_for_memory_are_refused_with_the_estimate_and_nothing_changes(n_bins, bootstrap):
    stats = CalibrationStats(n_bins=n_bins, bootstrap=bootstrap, seed=0)
    with pytest.raises(InputError, match=r"bootstrap, n_bins: .* need about [\d,.]+ GB of memory"):
        stats.update(torch.zeros(4, 10), torch.arange(4))
    assert (stats.n_samples, stats.n_classes) == (0, None)
