"""Running an audit under ``torchrun``: process groups, sharding and exact collectives.

Every rank audits a contiguous block of the data (:func:`shard`); per-sample randomness is keyed
by each sample's ``index``, so a rank computes exactly what one process would for those samples.
Results travel between ranks as numpy arrays moved by tensor collectives only (nothing is
pickled, so a rank can never execute what another sends), and are merged in rank order
(:func:`gather_stats`, :func:`concatenate_by_index`), so the outcome equals a single process's.
Work that cannot be sharded is dealt out whole, one item per rank in turn (:func:`deal_out`);
its JSON results travel as UTF-8 bytes, parsed with ``json``, not unpickled.

Every collective here is entered by every rank in the same order, whatever the rank's data:
a problem found on one rank (an unsupported dtype, a missing key, an exception in its own work)
is sent to the others first and then raised by all of them, so no rank waits forever for one
that has given up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

from advcal._core.contract import OUTPUT_KINDS
from advcal._core.devices import resolve_device
from advcal._core.errors import DistributedError, FaultError, InputError, describe, first_line
from advcal._core.validation import check_int
from advcal.data.source import DataSource
from advcal.metrics.stats import CalibrationStats

T = TypeVar("T")

# The dtypes arrays may have; broadcast_array sends a dtype as its position in this tuple.
SUPPORTED_DTYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(name) for name in ("float64", "float32", "int64", "int32", "uint8", "bool")
)
_TORCH_DTYPES = {
    "float64": torch.float64, "float32": torch.float32, "int64": torch.int64,
    "int32": torch.int32, "uint8": torch.uint8, "bool": torch.uint8,  # bool travels as uint8
}
_ENVIRONMENT = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# broadcast_array's header is [dtype index, ndim, shape...] padded to one fixed length, so
# receivers can allocate it before they know anything about the array.
_MAX_DIMS = 32
_MAX_MESSAGE_BYTES = 1000
# Negative dtype indices in broadcast_array's header: why the source rank cannot send.
_NO_ARRAY, _BAD_DTYPE, _TOO_MANY_DIMS = -1, -2, -3


@dataclass(frozen=True)
class World:
    """This process's rank and the number of processes in the job."""

    rank: int
    size: int

    def __post_init__(self) -> None:
        if not (isinstance(self.size, int) and isinstance(self.rank, int) and 0 <= self.rank < self.size):
            raise InputError(
                f"world: expected 0 <= rank < size, got rank={self.rank!r} and size={self.size!r}"
            )


def world() -> World:
    """The current process group's rank and size, or ``World(0, 1)`` when there is none."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World(0, 1)


def init_from_environment(device: torch.device | str = "cpu") -> World:
    """Join the ``torchrun`` job described by the environment, if any, and return :func:`world`.

    With RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set and no process group yet, this
    initialises the default group: NCCL when ``device`` is a CUDA device, else gloo. Without
    those variables it does nothing and returns ``World(0, 1)``. Calling it again is harmless.
    """
    if not all(name in os.environ for name in _ENVIRONMENT):
        return world()
    if not dist.is_available():
        raise DistributedError(
            "torch.distributed: the torchrun environment is set (RANK, WORLD_SIZE, ...), but this "
            "build of torch has no distributed support"
        )
    if not dist.is_initialized():
        target = resolve_device(device)
        if target.type == "cuda":
            # NCCL works on the current CUDA device; under torchrun each process should own
            # the GPU given by LOCAL_RANK unless the caller named one.
            index = target.index if target.index is not None else int(os.environ.get("LOCAL_RANK", 0))
            torch.cuda.set_device(index)
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    return world()


@contextmanager
def joined(device: torch.device | str = "cpu") -> Iterator[World]:
    """:func:`init_from_environment` for the length of a ``with`` block; a process group this
    call created is destroyed at its end (a group the caller made is left alone)."""
    created = all(name in os.environ for name in _ENVIRONMENT) and not (
        dist.is_available() and dist.is_initialized()
    )
    ranks = init_from_environment(device)
    try:
        yield ranks
        if created and dist.is_initialized():
            # Leave together: a rank that tears gloo down while another is still in its last
            # collective can abort ("terminate called without an active exception"). On an
            # error there is no barrier: agree() made every rank raise, and torchrun stops the rest.
            with _with_the_others("the final barrier"):
                dist.barrier()
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def shard(data: DataSource, world: World, block: int = 1) -> DataSource:
    """The contiguous part of ``data`` that rank ``world.rank`` audits.

    ``data`` is cut into blocks of ``block`` consecutive samples (the last may be shorter) and
    the blocks are dealt out as evenly as ``numpy.array_split`` does, in rank order (the first
    ``blocks % size`` ranks get one block more). With ``block`` equal to the batch size, every
    rank's batches are exactly batches of the one-process run, so even the floating-point
    results of batched kernels match. Each sample keeps its ``index``, hence its per-sample
    randomness. Every rank gets at least one block.
    """
    check_int(block, "block", 1)
    n = len(data)
    blocks = -(-n // block)
    if blocks < world.size:
        raise InputError(
            f"data: expected at least one block of {block} samples per process, got {n} samples "
            f"({blocks} blocks) for {world.size} processes; use fewer processes or a smaller batch size"
        )
    base, extra = divmod(blocks, world.size)
    first = world.rank * base + min(world.rank, extra)
    start, stop = first * block, min(n, (first + base + (1 if world.rank < extra else 0)) * block)
    return data.rows(start, stop)


def rank_positions(count: int, world: World) -> range:
    """The positions ``0 .. count - 1`` (shards of a stored set) that rank ``world.rank`` takes:
    a contiguous run, dealt out as :func:`shard` deals blocks (possibly empty)."""
    base, extra = divmod(count, world.size)
    first = world.rank * base + min(world.rank, extra)
    return range(first, first + base + (1 if world.rank < extra else 0))


def all_gather_arrays(arrays: dict[str, np.ndarray], world: World) -> list[dict[str, np.ndarray]]:
    """Every rank's ``arrays``, in rank order, on every rank.

    Every rank must pass the same keys with the same dtypes (see :data:`SUPPORTED_DTYPES`) and
    the same shape after the first dimension; the first dimension may differ, and may be 0.
    Raises :class:`DistributedError` on every rank, naming the key, if they do not.
    """
    description = _describe(arrays)
    if world.size == 1:
        _check_descriptions([description])
        return [arrays]
    _require_group(world)
    # First every rank's description (keys, dtypes, shapes), so a mismatch is found by all
    # ranks alike before any data moves; then all the data in one padded byte buffer.
    descriptions = [
        json.loads(part.tobytes().decode("utf-8"))
        for part in _all_gather_bytes(np.frombuffer(json.dumps(description).encode("utf-8"), np.uint8))
    ]
    _check_descriptions(descriptions)
    names = sorted(arrays)
    local = [np.ascontiguousarray(arrays[name]).reshape(-1).view(np.uint8) for name in names]
    buffer = np.concatenate(local) if local else np.zeros(0, np.uint8)
    lengths = [sum(_nbytes(entry) for entry in part["arrays"]) for part in descriptions]
    buffers = _all_gather_padded(buffer, lengths)
    gathered = []
    for part, data in zip(descriptions, buffers, strict=True):
        decoded, offset = {}, 0
        for name, dtype, shape in part["arrays"]:
            size = _nbytes((name, dtype, shape))
            # copy(): aligned, writable and not holding on to the whole buffer.
            decoded[name] = data[offset:offset + size].view(np.dtype(dtype)).reshape(shape).copy()
            offset += size
        gathered.append({name: decoded[name] for name in arrays})  # the caller's key order
    return gathered


def gather_stats(stats: CalibrationStats, world: World) -> CalibrationStats:
    """Every rank's statistics merged in rank order, on every rank.

    Ranks without samples take part in the collectives like the others and add nothing; if no
    rank has samples the result is empty. With one process, ``stats`` itself is returned.
    """
    if not isinstance(stats, CalibrationStats):
        raise InputError(f"stats: expected CalibrationStats, got {type(stats).__name__}")
    if world.size == 1:
        return stats
    # state_dict refuses empty statistics, and ranks' states need not have the same keys, so
    # each travels packed as two byte arrays; an empty rank sends only its settings.
    state = stats.state_dict() if stats.n_samples else {"config": stats.config_vector(False)}
    states = [_unpack(part) for part in all_gather_arrays(_pack(state), world)]
    configs = [part["config"] for part in states]
    settings = {"n_bins": 0, "classwise": 2, "bootstrap": 3, "seed": 4, "inputs": 6}
    for rank, config in enumerate(configs):
        for name, position in settings.items():
            if config[position] != configs[0][position]:
                mine, first = (int(c[position]) for c in (config, configs[0]))
                if name == "inputs":
                    mine, first = OUTPUT_KINDS[mine], OUTPUT_KINDS[first]
                raise DistributedError(
                    f"stats: rank {rank} has statistics with {name}={mine!r}, rank 0 has "
                    f"{name}={first!r}; every rank must use the same settings"
                )
    n_classes = next((int(config[1]) for config in configs if config[1]), None)
    merged = CalibrationStats(
        stats.n_bins, n_classes, stats.inputs, stats.classwise, stats.bootstrap, stats.seed
    )
    for part in states:
        if "key" in part:  # ranks that had samples
            merged = merged.merge(CalibrationStats.from_state_dict(part))
    return merged


def concatenate_by_index(parts: Sequence[dict[str, np.ndarray]], key: str = "index") -> dict[str, np.ndarray]:
    """Per-sample columns from several ranks, joined and stably sorted by column ``key``.

    Each part maps column names to arrays with one row per sample; all parts need the same
    columns. Sorting by the samples' indices gives the order of a single-process run.
    """
    if not parts:
        raise InputError("parts: expected at least one dict of per-sample columns, got none")
    columns = list(parts[0])
    if key not in columns:
        raise InputError(f"key: expected one of the columns {columns}, got {key!r}")
    for rank, part in enumerate(parts):
        if set(part) != set(columns):
            raise InputError(
                f"parts: expected the columns {columns} in every part, got {list(part)} in part {rank}"
            )
    joined = {name: np.concatenate([np.asarray(part[name]) for part in parts]) for name in columns}
    n = len(joined[key])
    for name, column in joined.items():
        if len(column) != n:
            raise InputError(
                f"parts: expected {n} rows in column {name!r} (as in {key!r}), got {len(column)}"
            )
    order = np.argsort(joined[key], kind="stable")
    return {name: column[order] for name, column in joined.items()}


def agree(error: BaseException | None, world: World) -> None:
    """Raise on every rank if any rank failed; every rank calls this after its own work.

    ``error`` is what this rank caught, or None. If any rank failed, every rank raises
    :class:`DistributedError` with the lowest failed rank's message. With one process, ``error``
    is raised unchanged.
    """
    if world.size == 1:
        if error is not None:
            raise error
        return
    text = "" if error is None else (str(error) or type(error).__name__)
    # Truncate to whole characters, so the bytes stay valid UTF-8.
    message = text.encode("utf-8")[:_MAX_MESSAGE_BYTES].decode("utf-8", errors="ignore").encode("utf-8")
    parts = all_gather_arrays(
        {"failed": np.array([error is not None]), "message": np.frombuffer(message, np.uint8)}, world
    )
    for rank, part in enumerate(parts):
        if part["failed"][0]:
            reason = part["message"].tobytes().decode("utf-8", errors="replace")
            raise DistributedError(f"rank {rank} failed: {reason}") from error


def broadcast_array(array: np.ndarray | None, world: World, src: int = 0) -> np.ndarray:
    """Rank ``src``'s ``array`` on every rank; other ranks pass None (anything else is ignored)."""
    if not (isinstance(src, int) and 0 <= src < world.size):
        raise InputError(f"src: expected a rank from 0 to {world.size - 1}, got {src!r}")
    if world.size == 1:
        code = _array_code(array)
        if code < 0:
            raise DistributedError(_broadcast_problem(code, src, array))
        return array
    _require_group(world)
    header = np.zeros(2 + _MAX_DIMS, np.int64)
    if world.rank == src:
        header[0] = _array_code(array)
        if header[0] >= 0:
            header[1] = array.ndim
            header[2:2 + array.ndim] = array.shape
    # The header first, so receivers can allocate; a problem on src travels in it too.
    header = _broadcast(torch.from_numpy(header), src).cpu().numpy()
    code, ndim = int(header[0]), int(header[1])
    if code < 0:
        raise DistributedError(_broadcast_problem(code, src, array if world.rank == src else None))
    dtype, shape = SUPPORTED_DTYPES[code], tuple(int(v) for v in header[2:2 + ndim])
    if world.rank == src:
        # (np.array, not ascontiguousarray, which would turn a 0-d array into a 1-d one)
        tensor = torch.from_numpy(np.array(array, order="C").view(_wire_dtype(dtype)))
    else:
        tensor = torch.empty(shape, dtype=_TORCH_DTYPES[dtype.name])
    if tensor.numel():  # no data collective for an empty array (every rank knows from the header)
        tensor = _broadcast(tensor, src)
    if world.rank == src:
        return array
    return tensor.cpu().numpy().view(dtype)


def deal_out(
    items: Sequence[T], work: Callable[[T], dict[str, object]], world: World
) -> list[dict[str, object]]:
    """``work(item)`` of every item, each computed on one rank and sent to all.

    For work that cannot be sharded (an audit's per-model illusion check and fixes attack the
    whole data): item ``k`` runs on rank ``k mod size`` only, and its result, a JSON-ready dict,
    travels to every rank as JSON. With one process, the results of ``work`` unchanged. A rank
    whose work fails makes every rank fail, as :func:`agree` does.
    """
    mine: dict[int, dict[str, object]] = {}
    encoded: dict[int, np.ndarray] = {}
    failure = None
    try:
        for position, item in enumerate(items):
            if position % world.size == world.rank:
                mine[position] = work(item)
                if world.size > 1:  # here, so that a result JSON cannot hold fails every rank
                    encoded[position] = np.frombuffer(json.dumps(mine[position]).encode("utf-8"), np.uint8)
    except BaseException as error:  # every rank must learn of it; agree re-raises it
        failure = error
    agree(failure, world)
    if world.size == 1:
        return [mine[position] for position in range(len(items))]
    return [json.loads(broadcast_array(encoded.get(position), world, src=position % world.size)
                       .tobytes().decode("utf-8"))
            for position in range(len(items))]


# ---------------------------------------------------------------------------- helpers


def _require_group(world: World) -> None:
    """Check that ``world`` is the initialised process group this process belongs to."""
    if not (dist.is_available() and dist.is_initialized()):
        raise DistributedError(
            f"world: got rank {world.rank} of {world.size} processes, but no process group is "
            "initialised (call init_from_environment under torchrun)"
        )
    actual = World(dist.get_rank(), dist.get_world_size())
    if actual != world:
        raise DistributedError(
            f"world: got rank {world.rank} of {world.size}, but this process is rank "
            f"{actual.rank} of {actual.size}"
        )


def _device() -> torch.device:
    """Where collective tensors must live: the current CUDA device for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@contextmanager
def _with_the_others(what: str) -> Iterator[None]:
    """A collective's failure — a rank that died, so its connections closed or it timed out —
    as a :class:`FaultError` that names it, instead of the backend's multi-line message."""
    try:
        yield
    except RuntimeError as error:  # gloo and NCCL raise DistBackendError, a RuntimeError
        reason = first_line(error)[:200] or type(error).__name__
        raise FaultError(f"rank {dist.get_rank()}: lost the other ranks during {what} ({reason}); another "
                         "rank probably died; the job stopped before its result was complete") from None


def _broadcast(tensor: torch.Tensor, src: int) -> torch.Tensor:
    tensor = tensor.to(_device())
    with _with_the_others("a broadcast"):
        dist.broadcast(tensor, src)
    return tensor


def _all_gather_bytes(buffer: np.ndarray) -> list[np.ndarray]:
    """Every rank's 1-D uint8 ``buffer``, whatever its length: lengths first, then the bytes."""
    device = _device()
    length = torch.tensor([len(buffer)], dtype=torch.int64, device=device)
    lengths = [torch.empty_like(length) for _ in range(dist.get_world_size())]
    with _with_the_others("a gather"):
        dist.all_gather(lengths, length)
    return _all_gather_padded(buffer, [int(value.item()) for value in lengths])


def _all_gather_padded(buffer: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    """Every rank's uint8 ``buffer``, given every rank's length (all_gather needs equal sizes)."""
    longest = max(lengths)
    if longest == 0:  # all ranks know this, so all skip the collective together
        return [np.zeros(0, np.uint8) for _ in lengths]
    device = _device()
    padded = torch.zeros(longest, dtype=torch.uint8)
    padded[: len(buffer)] = torch.from_numpy(np.array(buffer, dtype=np.uint8))
    padded = padded.to(device)
    received = [torch.empty(longest, dtype=torch.uint8, device=device) for _ in lengths]
    with _with_the_others("a gather"):
        dist.all_gather(received, padded)
    return [part[:length].cpu().numpy() for part, length in zip(received, lengths, strict=True)]


def _describe(arrays: object) -> dict[str, object]:
    """A JSON-ready description of ``arrays``: [key, dtype, shape] by key, or why it is invalid.

    Problems are described rather than raised, so every rank learns of them in the exchange.
    """
    if not isinstance(arrays, dict):
        return {"error": f"arrays: expected a dict of numpy arrays, got {type(arrays).__name__}"}
    entries = []
    for name in sorted(arrays, key=str):
        value = arrays[name]
        if not isinstance(name, str):
            return {"error": f"arrays: expected string keys, got {name!r}"}
        if not isinstance(value, np.ndarray) or value.ndim == 0:
            return {"error": f"arrays[{name!r}]: expected a numpy array of 1 or more dimensions, "
                             f"got {describe(value)}"}
        if value.dtype not in SUPPORTED_DTYPES:
            supported = ", ".join(dtype.name for dtype in SUPPORTED_DTYPES)
            return {"error": f"arrays[{name!r}]: expected one of the dtypes {supported}, got {value.dtype}"}
        entries.append([name, value.dtype.name, list(value.shape)])
    return {"arrays": entries}


def _check_descriptions(descriptions: list[dict[str, object]]) -> None:
    """Raise the same DistributedError on every rank if the ranks' arrays do not fit together."""
    for rank, part in enumerate(descriptions):
        if "error" in part:
            where = f"rank {rank}: " if len(descriptions) > 1 else ""
            raise DistributedError(where + str(part["error"]))
    reference = {name: (dtype, shape[1:]) for name, dtype, shape in descriptions[0]["arrays"]}
    for rank, part in enumerate(descriptions[1:], start=1):
        found = {name: (dtype, shape[1:]) for name, dtype, shape in part["arrays"]}
        for name in sorted(set(reference) | set(found)):
            if name not in found or name not in reference:
                have, lack = (0, rank) if name in reference else (rank, 0)
                raise DistributedError(
                    f"arrays: key {name!r} is passed by rank {have} but not by rank {lack}"
                )
            if found[name] != reference[name]:
                raise DistributedError(
                    f"arrays[{name!r}]: rank {rank} has dtype {found[name][0]} and trailing shape "
                    f"{tuple(found[name][1])}, rank 0 has dtype {reference[name][0]} and trailing shape "
                    f"{tuple(reference[name][1])}; only the first dimension may differ"
                )


def _nbytes(entry: Sequence[object]) -> int:
    _, dtype, shape = entry
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def _pack(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Arrays of any keys and shapes as two uint8 arrays (a JSON header and the bytes)."""
    names = sorted(arrays)
    header = [[name, arrays[name].dtype.name, list(arrays[name].shape)] for name in names]
    data = [np.ascontiguousarray(arrays[name]).reshape(-1).view(np.uint8) for name in names]
    return {
        "header": np.frombuffer(json.dumps(header).encode("utf-8"), np.uint8),
        "data": np.concatenate(data) if data else np.zeros(0, np.uint8),
    }


def _unpack(packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays packed by :func:`_pack`."""
    arrays, offset = {}, 0
    for name, dtype, shape in json.loads(packed["header"].tobytes().decode("utf-8")):
        size = _nbytes((name, dtype, shape))
        arrays[name] = packed["data"][offset:offset + size].view(np.dtype(dtype)).reshape(shape).copy()
        offset += size
    return arrays


def _array_code(array: object) -> int:
    """``array``'s dtype index in SUPPORTED_DTYPES, or a negative code saying why it cannot be sent."""
    if not isinstance(array, np.ndarray):
        return _NO_ARRAY
    if array.ndim > _MAX_DIMS:
        return _TOO_MANY_DIMS
    if array.dtype not in SUPPORTED_DTYPES:
        return _BAD_DTYPE
    return SUPPORTED_DTYPES.index(array.dtype)


def _broadcast_problem(code: int, src: int, array: object) -> str:
    given = "" if array is None else f", got {describe(array)}"
    if code == _NO_ARRAY:
        return f"array: rank {src} (src) must pass a numpy array{given or ', got None'}"
    if code == _TOO_MANY_DIMS:
        return f"array: rank {src} (src) must pass an array of at most {_MAX_DIMS} dimensions{given}"
    supported = ", ".join(dtype.name for dtype in SUPPORTED_DTYPES)
    return f"array: rank {src} (src) must pass an array of dtype {supported}{given}"


def _wire_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.uint8) if dtype == np.bool_ else dtype
