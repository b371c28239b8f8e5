"""Invariant 2: statistics from shards, merged, equal those of the whole set."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

from advcal.errors import InputError
from advcal.metrics import CalibrationStats
from conftest import make_predictions

LOGITS, LABELS = make_predictions(600, 5, seed=7, temperature=0.7)


def _shards(cuts: list[int], n: int) -> list[tuple[int, int]]:
    edges = [0, *sorted(set(c for c in cuts if 0 < c < n)), n]
    return list(itertools.pairwise(edges))


def _assert_same(merged: dict, whole: dict, exact: bool) -> None:
    assert merged["reliability"]["count"] == whole["reliability"]["count"]
    assert merged["per_class"]["count"] == whole["per_class"]["count"]
    assert merged["settings"] == whole["settings"]
    for name, entry in whole["metrics"].items():
        if exact:
            assert merged["metrics"][name] == entry, name
        else:
            assert merged["metrics"][name]["value"] == pytest.approx(entry["value"], abs=1e-12), name


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(0, 600), max_size=6), batch=st.integers(1, 97))
def test_any_split_into_shards_gives_the_same_report(cuts, batch):
    whole = CalibrationStats(n_bins=15).update(LOGITS, LABELS).compute().to_dict()
    merged = CalibrationStats(n_bins=15)
    for start, stop in _shards(cuts, 600):
        shard = CalibrationStats(n_bins=15)
        for lo in range(start, stop, batch):  # batches inside each shard too
            hi = min(lo + batch, stop)
            shard.update(LOGITS[lo:hi], LABELS[lo:hi])
        merged = merged.merge(shard)
    _assert_same(merged.compute().to_dict(), whole, exact=False)


@settings(max_examples=25, deadline=None)
@given(order=st.permutations(list(range(6))), seed=st.integers(0, 2**16))
def test_indexed_shards_in_any_order_give_identical_reports_with_intervals(order, seed):
    """With sample indices, even bootstrap intervals are identical for any sharding or order."""
    index = torch.arange(600)

    def stats() -> CalibrationStats:
        return CalibrationStats(n_bins=10, bootstrap=30, seed=seed)

    whole = stats().update(LOGITS, LABELS, index=index).compute(smooth=True).to_dict()
    parts = [slice(k * 100, (k + 1) * 100) for k in range(6)]
    merged = stats()
    for k in order:
        shard = stats().update(LOGITS[parts[k]], LABELS[parts[k]], index=index[parts[k]])
        merged = merged + shard
    result = merged.compute(smooth=True).to_dict()
    assert result["reliability"] == whole["reliability"]
    for name, entry in whole["metrics"].items():
        assert result["metrics"][name]["value"] == pytest.approx(entry["value"], abs=1e-12), name
        # Class-wise replicate cells are float sums whose order differs by 1 ulp at most.
        np.testing.assert_allclose(result["metrics"][name]["ci"], entry["ci"], atol=1e-12)


def test_merge_refuses_mismatched_statistics():
    a = CalibrationStats(n_bins=15).update(LOGITS[:10], LABELS[:10])
    with pytest.raises(InputError, match="other: cannot merge statistics with n_bins=10"):
        a.merge(CalibrationStats(n_bins=10).update(LOGITS[:10], LABELS[:10]))
    other = CalibrationStats().update(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(InputError, match="of 3 classes into statistics of 5 classes"):
        a.merge(other)
    with pytest.raises(InputError, match="indexed with unindexed"):
        a.merge(CalibrationStats().update(LOGITS[:10], LABELS[:10], index=torch.arange(10)))
    boot = CalibrationStats(bootstrap=5).update(LOGITS[:10], LABELS[:10])
    with pytest.raises(InputError, match="merging bootstrapped statistics needs explicit sample indices"):
        boot.merge(CalibrationStats(bootstrap=5).update(LOGITS[10:20], LABELS[10:20]))
    with pytest.raises(InputError, match="other: expected CalibrationStats"):
        a.merge({"not": "stats"})


def test_merging_with_empty_statistics_changes_nothing():
    a = CalibrationStats().update(LOGITS, LABELS)
    assert (a + CalibrationStats()).compute().to_dict() == a.compute().to_dict()
    assert (CalibrationStats() + a).compute().to_dict() == a.compute().to_dict()


def test_state_dict_round_trips_through_safetensors(tmp_path):
    stats = CalibrationStats(n_bins=12, bootstrap=20, seed=3).update(
        LOGITS, LABELS, index=torch.arange(600)
    )
    path = tmp_path / "stats.safetensors"
    save_file(stats.state_dict(), str(path))
    restored = CalibrationStats.from_state_dict(load_file(str(path)))
    assert restored.compute(smooth=True).to_dict() == stats.compute(smooth=True).to_dict()
    with pytest.raises(InputError, match="state: missing entries config, checksum"):
        CalibrationStats.from_state_dict({})


@pytest.mark.parametrize("edit", ["flip one correct", "drop a sample", "change a setting", "no checksum"])
def test_an_edited_state_is_refused(edit, tmp_path):
    stats = CalibrationStats(n_bins=12, bootstrap=5, seed=3).update(LOGITS, LABELS, index=torch.arange(600))
    state = {name: value.copy() for name, value in stats.state_dict().items()}
    if edit == "flip one correct":
        state["correct"][0] ^= 1
    elif edit == "drop a sample":
        state = {name: value[1:] if value.shape[:1] == (600,) else value for name, value in state.items()}
    elif edit == "change a setting":
        state["config"][0] = 15  # n_bins
    else:
        del state["checksum"]
    message = "missing entries checksum" if edit == "no checksum" else "does not match its checksum"
    with pytest.raises(InputError, match=message):
        CalibrationStats.from_state_dict(state)
