"""advcal.engine.distributed: two real gloo processes give exactly what one process gives.

The collective scenarios run in one pair of spawned workers (starting processes costs seconds);
each worker saves what it saw as .npz files and the tests below compare them in this process.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from advcal.data.source import DataSource
from advcal.engine.distributed import (
    DistributedError,
    World,
    agree,
    all_gather_arrays,
    broadcast_array,
    concatenate_by_index,
    deal_out,
    gather_stats,
    init_from_environment,
    rank_positions,
    shard,
    world,
)
from advcal.errors import InputError
from advcal.metrics import CalibrationStats
from conftest import make_predictions

SIZE = 2
# A collective that waits longer than this raises instead of hanging the test run.
COLLECTIVE_TIMEOUT = timedelta(seconds=30)
JOIN_SECONDS = 120
PATHS = [str(Path(__file__).resolve().parents[1] / "src"), str(Path(__file__).resolve().parent)]

N_STATS = 501  # odd, so the two shards differ in size
STATS_OFFSET = 100  # sample indices are not positions


def _data(n: int, n_classes: int = 10, offset: int = 0, seed: int = 11) -> DataSource:
    """Seeded logits stored as (N, C, 1, 1) images, so a shard of the data is a shard of the logits."""
    logits, labels = make_predictions(n, n_classes, seed=seed, temperature=0.6)
    return DataSource(
        name="synthetic", split="test", x=logits.reshape(n, n_classes, 1, 1).contiguous(), y=labels,
        index=torch.arange(n) + offset, classes=[f"c{k}" for k in range(n_classes)],
    )


def _stats() -> CalibrationStats:
    return CalibrationStats(bootstrap=20, seed=3)


def _update(stats: CalibrationStats, data: DataSource) -> CalibrationStats:
    for index, x, y in data.batches(64):
        stats.update(x.flatten(1), y, index=index)
    return stats


def _arrays_of(rank: int, rows: int) -> dict[str, np.ndarray]:
    """Arrays of every supported dtype with ``rows`` rows, different on every rank."""
    rng = np.random.default_rng(rank * 100 + rows)
    return {
        "f64": rng.normal(size=(rows, 2)),
        "f32": rng.normal(size=(rows, 2, 2)).astype(np.float32),
        "i64": rng.integers(-(2**40), 2**40, size=rows),
        "i32": rng.integers(-1000, 1000, size=(rows, 3)).astype(np.int32),
        "u8": rng.integers(0, 256, size=rows).astype(np.uint8),
        "flag": rng.random((rows, 4)) < 0.5,
    }


# Row counts per rank in each all_gather_arrays call: a rank with no rows, then the other way.
GATHER_ROWS = [(3, 0), (1, 4), (0, 0)]


# ---------------------------------------------------------------------------- worker scenarios
# Each runs on every rank of the group and returns the arrays to save for this process.


def _scenario_gather(rank: int) -> dict[str, np.ndarray]:
    out = {}
    for call, rows in enumerate(GATHER_ROWS):
        for source, part in enumerate(all_gather_arrays(_arrays_of(rank, rows[rank]), world())):
            out.update({f"{call}__{source}__{key}": value for key, value in part.items()})
    return out


def _scenario_stats(rank: int) -> dict[str, np.ndarray]:
    data = _data(N_STATS, offset=STATS_OFFSET)
    part = shard(data, world())
    merged = gather_stats(_update(_stats(), part), world())
    # All samples on rank 0, none on rank 1: the empty rank still takes part.
    lopsided = _update(_stats(), data) if rank == 0 else _stats()
    merged_lopsided = gather_stats(lopsided, world())
    nobody = gather_stats(_stats(), world())
    try:  # different settings: refused on every rank, even by ranks without samples
        gather_stats(CalibrationStats(n_bins=15 if rank == 0 else 10), world())
        mismatch = ""
    except DistributedError as raised:
        mismatch = str(raised)
    return {
        "mismatch": np.array(mismatch),
        "shard_index": part.index.numpy(),
        "report": np.array(json.dumps(merged.compute(smooth=True).to_dict())),
        "lopsided_report": np.array(json.dumps(merged_lopsided.compute(smooth=True).to_dict())),
        "n_samples": np.array([merged.n_samples, merged_lopsided.n_samples, nobody.n_samples]),
    }


def _agree_message(error: BaseException | None) -> tuple[str, bool]:
    """The DistributedError ``agree`` raised here ('' if none) and whether it chains ``error``."""
    try:
        agree(error, world())
    except DistributedError as raised:
        return str(raised), error is not None and raised.__cause__ is error
    return "", False


def _scenario_agree(rank: int) -> dict[str, np.ndarray]:
    boom = ValueError("boom") if rank == 1 else None
    both = InputError("first") if rank == 0 else ValueError("second")
    long = ValueError("é" * 800) if rank == 0 else None  # 1600 bytes of UTF-8
    results = [_agree_message(error) for error in (None, boom, both, long)]
    return {
        "messages": np.array([message for message, _ in results]),
        "chained": np.array([chained for _, chained in results]),
    }


BROADCASTS: list[tuple[int, np.ndarray]] = [
    (1, np.arange(6, dtype=np.float32).reshape(2, 3) / 7),
    (0, np.array([True, False, True])),
    (1, np.zeros((0, 4), np.int64)),
    (0, np.array(math.pi)),
    (1, np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5),
    (0, np.array([0, 255, 7], np.uint8)),
]


def _scenario_broadcast(rank: int) -> dict[str, np.ndarray]:
    out = {}
    for k, (src, array) in enumerate(BROADCASTS):
        out[f"received_{k}"] = broadcast_array(array if rank == src else None, world(), src=src)
    errors = []
    for bad in (None, np.zeros(2, np.complex128)):
        try:
            broadcast_array(bad if rank == 1 else np.zeros(1), world(), src=1)
        except DistributedError as raised:
            errors.append(str(raised))
    out["errors"] = np.array(errors)
    return out


MISMATCHES: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = [
    ({"a": np.zeros(2), "b": np.zeros(2)}, {"a": np.zeros(3), "c": np.zeros(3)}),  # key sets
    ({"a": np.zeros(2)}, {"a": np.zeros(2, np.float32)}),  # dtype
    ({"a": np.zeros((2, 3))}, {"a": np.zeros((2, 4))}),  # trailing shape
    ({"z": np.zeros(2)}, {"z": np.zeros(2, np.complex128)}),  # unsupported on one rank only
]


def _scenario_mismatch(rank: int) -> dict[str, np.ndarray]:
    errors = []
    for arrays in MISMATCHES:
        try:
            all_gather_arrays(arrays[rank], world())
            errors.append("")
        except DistributedError as raised:
            errors.append(str(raised))
    # Every rank raised at the same point, so the group is still in step for more collectives.
    after = all_gather_arrays({"rank": np.array([rank])}, world())
    return {"errors": np.array(errors), "after": np.concatenate([part["rank"] for part in after])}


N_MODELS = 3  # more items than ranks: rank 0 gets two


def _scenario_dealt(rank: int) -> dict[str, np.ndarray]:
    """An audit's per-model checks dealt out: which ran here, and what every rank received."""
    ran = []

    def work(position: int) -> dict[str, object]:
        ran.append(position)
        return {"position": position, "rank": rank, "value": position / 7, "undefined": math.nan}

    shared = deal_out(range(N_MODELS), work, world())

    def failing(position: int) -> dict[str, object]:
        if rank == 1:
            raise ValueError("fit failed")
        return {}

    def unsendable(position: int) -> dict[str, object]:
        return {"model": torch.nn.Linear(1, 1) if position == 1 else None}  # not JSON on rank 1

    failures = []
    for bad_work in (failing, unsendable):
        try:
            deal_out(range(N_MODELS), bad_work, world())
            failures.append("")
        except DistributedError as raised:
            failures.append(str(raised))
    return {"ran": np.array(ran, np.int64), "shared": np.array(json.dumps(shared)),
            "failures": np.array(failures)}


SCENARIOS: dict[str, Callable[[int], dict[str, np.ndarray]]] = {
    "dealt": _scenario_dealt,
    "gather": _scenario_gather,
    "stats": _scenario_stats,
    "agree": _scenario_agree,
    "broadcast": _scenario_broadcast,
    "mismatch": _scenario_mismatch,
}


def _environment_worker(rank: int, port: int) -> dict[str, np.ndarray]:
    """Join the group the way torchrun would have us do it."""
    before = world()
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(SIZE), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    first = init_from_environment("cpu")
    again = init_from_environment("cpu")  # idempotent: no second group
    ranks = all_gather_arrays({"rank": np.array([rank])}, first)
    return {
        "worlds": np.array([[before.rank, before.size], [first.rank, first.size], [again.rank, again.size]]),
        "backend": np.array(dist.get_backend()),
        "ranks": np.concatenate([part["rank"] for part in ranks]),
    }


def _worker(rank: int, mode: str, out: str, port: int, paths: list[str]) -> None:
    """Entry point of a spawned process: join the group, run the scenarios, save the results."""
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    torch.set_num_threads(1)
    if mode == "environment":
        try:
            np.savez(Path(out) / f"environment-{rank}.npz", **_environment_worker(rank, port))
        finally:
            dist.destroy_process_group()
        return
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=SIZE, timeout=COLLECTIVE_TIMEOUT
    )
    try:
        for name, scenario in SCENARIOS.items():
            try:
                results = scenario(rank)
            except Exception:  # reported by the test of this scenario, not by the others
                results = {"worker_error": np.array(traceback.format_exc())}
            np.savez(Path(out) / f"{name}-{rank}.npz", **results)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spawn(mode: str, out: Path) -> None:
    context = mp.spawn(_worker, args=(mode, str(out), _free_port(), PATHS), nprocs=SIZE, join=False)
    deadline = time.monotonic() + JOIN_SECONDS
    while not context.join(timeout=max(0.1, deadline - time.monotonic())):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {mode} workers did not finish within {JOIN_SECONDS} s")


def _load(out: Path, name: str, rank: int) -> dict[str, np.ndarray]:
    with np.load(out / f"{name}-{rank}.npz", allow_pickle=False) as saved:
        results = dict(saved)
    if "worker_error" in results:
        pytest.fail(f"rank {rank} failed in scenario {name}:\n{results['worker_error']}")
    return results


@pytest.fixture(scope="module")
def spawned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("distributed")
    _spawn("collectives", out)
    return out


def _assert_close(got: object, expected: object, where: str = "") -> None:
    """Equal JSON-like values: same structure, ints and strings exactly, floats within 1e-12."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), where
        for key in expected:
            _assert_close(got[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for k, (a, b) in enumerate(zip(got, expected, strict=True)):
            _assert_close(a, b, f"{where}[{k}]")
    elif isinstance(expected, float):
        assert isinstance(got, float), where
        both_nan = math.isnan(got) and math.isnan(expected)
        assert both_nan or abs(got - expected) <= 1e-12, (where, got, expected)
    else:
        assert type(got) is type(expected) and got == expected, (where, got, expected)


# ---------------------------------------------------------------------------- (a) shard


@pytest.mark.parametrize("n", [4, 5, 7, 10])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_shards_partition_the_data_like_array_split_and_keep_indices(n, size):
    data = _data(n, n_classes=3, offset=1000, seed=n)
    blocks = [shard(data, World(rank, size)) for rank in range(size)]
    assert [len(b) for b in blocks] == [len(part) for part in np.array_split(np.arange(n), size)]
    assert torch.equal(torch.cat([b.index for b in blocks]), data.index)
    assert torch.equal(torch.cat([b.x for b in blocks]), data.x)
    assert torch.equal(torch.cat([b.y for b in blocks]), data.y)
    for block in blocks:
        assert (block.name, block.split, block.classes) == (data.name, data.split, data.classes)


def test_shards_of_whole_blocks_are_batches_of_the_one_process_run():
    data = _data(10, n_classes=3, seed=2)
    blocks = [shard(data, World(rank, 2), block=4) for rank in range(2)]  # blocks 0-3, 4-7, 8-9
    assert [b.index.tolist() for b in blocks] == [list(range(8)), [8, 9]]
    assert [len(shard(data, World(rank, 3), block=4)) for rank in range(3)] == [4, 4, 2]
    assert [list(rank_positions(5, World(rank, 3))) for rank in range(3)] == [[0, 1], [2, 3], [4]]
    assert list(rank_positions(1, World(1, 2))) == []


def test_shard_refuses_fewer_blocks_than_processes():
    message = r"data: expected at least one block of 1 samples per process, got 3 samples \(3 blocks\) for 4"
    with pytest.raises(InputError, match=message):
        shard(_data(3, n_classes=3), World(0, 4))
    with pytest.raises(InputError, match=r"got 10 samples \(3 blocks\) for 4 processes"):
        shard(_data(10, n_classes=3), World(0, 4), block=4)


# ---------------------------------------------------------------------------- (b) all_gather_arrays


def test_all_gather_arrays_round_trips_every_dtype_with_different_first_dimensions(spawned):
    for rank in range(SIZE):
        got = _load(spawned, "gather", rank)
        for call, rows in enumerate(GATHER_ROWS):
            for source in range(SIZE):
                for key, value in _arrays_of(source, rows[source]).items():
                    received = got[f"{call}__{source}__{key}"]
                    assert received.dtype == value.dtype and received.shape == value.shape, key
                    np.testing.assert_array_equal(received, value)


# ---------------------------------------------------------------------------- (c) gather_stats


def test_gather_stats_of_shards_equals_one_process(spawned):
    data = _data(N_STATS, offset=STATS_OFFSET)
    # Through JSON like the workers' reports, so both sides have the same types.
    whole = json.loads(json.dumps(_update(_stats(), data).compute(smooth=True).to_dict()))
    indices = []
    for rank in range(SIZE):
        got = _load(spawned, "stats", rank)
        indices.append(got["shard_index"])
        assert got["n_samples"].tolist() == [N_STATS, N_STATS, 0]
        _assert_close(json.loads(str(got["report"])), whole)
        _assert_close(json.loads(str(got["lopsided_report"])), whole)
        expected = "stats: rank 1 has statistics with n_bins=10, rank 0 has n_bins=15"
        assert str(got["mismatch"]).startswith(expected)
    assert [len(i) for i in indices] == [251, 250]
    np.testing.assert_array_equal(np.concatenate(indices), np.arange(N_STATS) + STATS_OFFSET)


# ---------------------------------------------------------------------------- (d) agree


def test_agree_raises_the_lowest_failed_ranks_message_on_every_rank(spawned):
    for rank in range(SIZE):
        got = _load(spawned, "agree", rank)
        none, boom, both, long = got["messages"].tolist()
        assert none == ""
        assert boom == "rank 1 failed: boom"
        assert both == "rank 0 failed: first"
        # 1000 bytes of UTF-8 are 500 two-byte characters.
        assert long == "rank 0 failed: " + "é" * 500
        # The rank that failed keeps its own exception as the cause.
        assert got["chained"].tolist() == [False, rank == 1, True, rank == 0]


# ---------------------------------------------------------------------------- (f) broadcast_array


def test_broadcast_array_sends_shape_dtype_and_values(spawned):
    for rank in range(SIZE):
        got = _load(spawned, "broadcast", rank)
        for k, (_, array) in enumerate(BROADCASTS):
            received = got[f"received_{k}"]
            assert received.dtype == array.dtype and received.shape == array.shape, k
            np.testing.assert_array_equal(received, array)
        none, complex_ = got["errors"].tolist()
        assert "rank 1 (src) must pass a numpy array" in none
        assert "rank 1 (src) must pass an array of dtype float64" in complex_


def test_dealt_out_work_runs_once_per_model_and_every_rank_gets_all_of_it(spawned):
    """The audit's illusion check and fixes under torchrun: model k on rank k mod 2 only."""
    for rank in range(SIZE):
        got = _load(spawned, "dealt", rank)
        assert got["ran"].tolist() == [k for k in range(N_MODELS) if k % SIZE == rank]
        shared = json.loads(str(got["shared"]))
        assert [entry["position"] for entry in shared] == list(range(N_MODELS))
        assert [entry["rank"] for entry in shared] == [k % SIZE for k in range(N_MODELS)]
        assert [entry["value"] for entry in shared] == [k / 7 for k in range(N_MODELS)]
        assert all(math.isnan(entry["undefined"]) for entry in shared)
        failed, unsendable = got["failures"].tolist()  # on every rank, none left waiting
        assert failed == "rank 1 failed: fit failed"
        assert unsendable == "rank 1 failed: Object of type Linear is not JSON serializable"


def test_dealt_out_work_in_one_process_is_the_work_itself():
    results = [{"k": k, "data": (k, 2.5)} for k in range(3)]
    assert deal_out(range(3), lambda k: results[k], World(0, 1)) == results  # not even a JSON round trip

    def failing(k: int) -> dict[str, object]:
        raise ValueError("own error")

    with pytest.raises(ValueError, match="own error"):  # raised as it is, as agree does
        deal_out(range(2), failing, World(0, 1))


# ---------------------------------------------------------------------------- (g) mismatches


def test_mismatched_arrays_raise_on_every_rank_before_any_data_moves(spawned):
    for rank in range(SIZE):
        got = _load(spawned, "mismatch", rank)
        keys, dtype, shape, unsupported = got["errors"].tolist()
        assert keys == "arrays: key 'b' is passed by rank 0 but not by rank 1"
        assert dtype.startswith("arrays['a']: rank 1 has dtype float32")
        assert "rank 0 has dtype float64" in dtype
        assert "arrays['a']: rank 1 has dtype float64 and trailing shape (4,)" in shape
        assert unsupported.startswith("rank 1: arrays['z']: expected one of the dtypes")
        assert unsupported.endswith("got complex128")
        assert got["after"].tolist() == [0, 1]


# ---------------------------------------------------------------------------- init_from_environment


def test_init_from_environment_joins_the_torchrun_group_once(tmp_path):
    _spawn("environment", tmp_path)
    for rank in range(SIZE):
        with np.load(tmp_path / f"environment-{rank}.npz", allow_pickle=False) as got:
            assert got["worlds"].tolist() == [[0, 1], [rank, SIZE], [rank, SIZE]]
            assert str(got["backend"]) == "gloo"
            assert got["ranks"].tolist() == [0, 1]


# ---------------------------------------------------------------------------- (e) one process


def test_without_a_process_group_everything_is_the_single_process_result(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    one = World(0, 1)
    assert world() == one
    assert init_from_environment() == one and not dist.is_initialized()

    arrays = _arrays_of(0, 3)
    gathered = all_gather_arrays(arrays, one)
    assert len(gathered) == 1 and gathered[0] is arrays
    with pytest.raises(DistributedError, match=r"arrays\['z'\]: expected one of the dtypes"):
        all_gather_arrays({"z": np.zeros(2, np.complex64)}, one)

    stats = _update(_stats(), _data(40))
    assert gather_stats(stats, one) is stats

    assert agree(None, one) is None
    error = ValueError("boom")
    with pytest.raises(ValueError, match="boom") as raised:
        agree(error, one)
    assert raised.value is error

    array = np.arange(3.0)
    assert broadcast_array(array, one) is array
    with pytest.raises(DistributedError, match=r"rank 0 \(src\) must pass a numpy array, got None"):
        broadcast_array(None, one)
    with pytest.raises(InputError, match="src: expected a rank from 0 to 0, got 1"):
        broadcast_array(array, one, src=1)


def test_world_must_name_a_rank_inside_it():
    with pytest.raises(InputError, match="world: expected 0 <= rank < size, got rank=2 and size=2"):
        World(2, 2)


def test_collectives_need_the_process_group_the_world_names():
    with pytest.raises(DistributedError, match="no process group is initialised"):
        all_gather_arrays({"a": np.zeros(1)}, World(0, 2))


def test_concatenate_by_index_restores_the_single_process_order():
    index = np.array([5, 2, 9, 0, 7, 3])
    value = index * 10.0
    flag = index % 2 == 0
    # Rank blocks in any order, each with its own rows.
    parts = [
        {"index": index[3:], "value": value[3:], "flag": flag[3:]},
        {"index": index[:3], "value": value[:3], "flag": flag[:3]},
    ]
    joined = concatenate_by_index(parts)
    order = np.argsort(index)
    for name, column in {"index": index, "value": value, "flag": flag}.items():
        np.testing.assert_array_equal(joined[name], column[order])
    # Stable: equal keys keep the order of the parts.
    tied = [{"k": np.array([1, 0]), "v": np.array([0, 1])}, {"k": np.array([1]), "v": np.array([2])}]
    ties = concatenate_by_index(tied, key="k")
    assert ties["v"].tolist() == [1, 0, 2]
    with pytest.raises(InputError, match="key: expected one of the columns"):
        concatenate_by_index(parts, key="sample")
    with pytest.raises(InputError, match="parts: expected the columns"):
        concatenate_by_index([parts[0], {"index": index}])
    with pytest.raises(InputError, match="parts: expected at least one"):
        concatenate_by_index([])
