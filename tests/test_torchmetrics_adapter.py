"""The torchmetrics adapter: same report as advcal's own, in one process and under DDP."""

from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from advcal.errors import InputError
from advcal.metrics import calibration_report
from advcal.metrics.torchmetrics_adapter import CalibrationMetric
from conftest import make_predictions

LOGITS, LABELS = make_predictions(800, 6, seed=4, temperature=0.6)


def test_adapter_equals_calibration_report_over_batches():
    metric = CalibrationMetric(num_classes=6, smooth=True)
    for lo in range(0, 800, 128):
        metric.update(LOGITS[lo:lo + 128], LABELS[lo:lo + 128])
    expected = calibration_report(LOGITS, LABELS, smooth=True).to_dict()
    result = metric.compute().to_dict()
    assert result["reliability"] == expected["reliability"]
    for name, entry in expected["metrics"].items():
        assert result["metrics"][name]["value"] == pytest.approx(entry["value"], abs=1e-12)
    metric.reset()
    metric.update(LOGITS[:10], LABELS[:10])
    assert metric.compute().settings["n_samples"] == 10


def test_adapter_bootstrap_needs_indices():
    metric = CalibrationMetric(num_classes=6, bootstrap=20)
    with pytest.raises(InputError, match="index: bootstrap intervals across processes need"):
        metric.update(LOGITS, LABELS)
    metric.update(LOGITS, LABELS, index=torch.arange(800))
    expected = calibration_report(LOGITS, LABELS, bootstrap=20, index=torch.arange(800))
    result = metric.compute()
    assert set(result.intervals) == set(expected.intervals)
    for key, interval in expected.intervals.items():
        assert result.intervals[key] == pytest.approx(interval, abs=1e-12), key


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        metric = CalibrationMetric(num_classes=6, bootstrap=10)
        index = torch.arange(rank, 800, world)  # interleaved shards, as a DistributedSampler
        metric.update(LOGITS[index], LABELS[index], index=index)
        report = metric.compute()
        with open(f"{out_dir}/rank{rank}.json", "w") as handle:
            json.dump(report.to_dict(), handle)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_adapter_under_ddp_equals_the_whole_set(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    expected = calibration_report(LOGITS, LABELS, bootstrap=10, index=torch.arange(800)).to_dict()
    for rank in range(2):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["reliability"]["count"] == expected["reliability"]["count"]
        for name, entry in expected["metrics"].items():
            assert result["metrics"][name]["value"] == pytest.approx(entry["value"], abs=1e-12)
            assert result["metrics"][name]["ci"] == pytest.approx(entry["ci"], abs=1e-12)
