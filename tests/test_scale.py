"""Real evaluation-set sizes: 1,000,000 x 10 and 100,000 x 1,000 logits.

Each runs in a fresh process that reports its peak resident memory, so the measurement is
not muddled by the test session. The statistics keep one small record per sample and
``classes x bins`` cells; the score matrix is processed in chunks and never copied whole.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    from advcal.metrics import calibration_report
    n, c = int(sys.argv[1]), int(sys.argv[2])
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, c, (n,), generator=g)
    logits = torch.randn(n, c, generator=g)
    logits[torch.arange(n), labels] += 2.0
    calibration_report(logits[:100], labels[:100])  # import-time allocations out of the way
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    report = calibration_report(logits, labels)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # A float64 reference on a slice, to show the big run is also right.
    part = calibration_report(logits[:20000], labels[:20000])
    probs = torch.softmax(logits[:20000].double(), 1)
    print(json.dumps({
        "extra": after - before, "logits": logits.numel() * 4, "n": report.settings["n_samples"],
        "counts": sum(report.reliability["count"]), "ece": report["ece"], "sce": report["sce"],
        "acc": report["accuracy"], "acc_ref": float((logits.argmax(1) == labels).double().mean()),
        "part_brier": part["brier"],
        "part_brier_ref": float(((probs - torch.eye(c, dtype=torch.float64)[labels[:20000]]) ** 2)
                                .sum(1).mean()),
    }))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(("n", "n_classes", "max_extra"), [(1_000_000, 10, 5.0), (100_000, 1_000, 0.5)])
def test_full_report_at_scale_within_a_few_copies_of_the_logits(n, n_classes, max_extra):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(n), str(n_classes)],
        capture_output=True, text=True, check=True,
    )
    result = json.loads(done.stdout)
    assert result["n"] == result["counts"] == n
    assert result["acc"] == pytest.approx(result["acc_ref"], abs=1e-12)
    assert result["part_brier"] == pytest.approx(result["part_brier_ref"], abs=1e-12)
    assert 0 < result["ece"] < 1 and 0 < result["sce"] < 1
    # Peak memory beyond the logits themselves: per-sample records dominate for 10 classes
    # (about 48 bytes a sample against 40 of logits); for 1,000 classes it is a sliver.
    assert result["extra"] < max_extra * result["logits"], result
