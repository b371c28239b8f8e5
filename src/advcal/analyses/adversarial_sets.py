"""Make a static adversarial set: attack once with a fixed recipe, freeze the result on disk.

The directory layout and the reader are in :mod:`advcal.data.adversarial`. Writing is
resumable: the manifest is written first with the recipe and the planned shards; each shard is
written atomically and only then entered, with its sha256, in the manifest (also written
atomically). Running the same command again keeps every shard whose file matches its hash and
makes the others, so a run killed at any moment ends, when resumed, with the files of an
uninterrupted run: the attack's randomness is per sample (invariant 3) and the encoding is
deterministic. A different recipe in an existing directory is refused, naming the differences.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as save_safetensors
from torch import nn

import advcal
from advcal._core.atomic import remove_stale_temporaries, write_bytes_atomic, write_json_atomic
from advcal._core.devices import module_device, placed, resolve_device
from advcal._core.errors import ConfigError, InputError
from advcal._core.validation import check_int
from advcal.attacks import Attack, get_attack
from advcal.data import DataSource
from advcal.data.adversarial import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    AdversarialSet,
    read_manifest,
    sha256_hex,
    shard_name,
    zstandard_module,
)
from advcal.engine.distributed import agree, all_gather_arrays, broadcast_array, world
from advcal.engine.model_check import check_model_fits
from advcal.engine.passes import ImageAttack, collect
from advcal.models import model_fingerprint

ProgressFn = Callable[[int, int], None]
COMPRESSIONS = (None, "zstd")
ZSTD_LEVEL = 3


def make_adversarial_set(
    model: nn.Module,
    data: DataSource,
    epsilons: Sequence[float],
    out: str | Path,
    attack: str = "pgd",
    attack_params: Mapping[str, object] | None = None,
    *,
    seed: int = 0,
    shard_size: int = 1024,
    batch_size: int = 256,
    compression: str | None = None,
    model_spec: str | None = None,
    device: str | torch.device | None = None,
    progress: ProgressFn | None = None,
) -> AdversarialSet | None:
    """Attack ``model`` on ``data`` at every ε and store the result in ``out`` (resumable).

    Under ``torchrun`` (an initialised process group) the ranks attack different shards and
    rank 0 alone writes; it returns the set on rank 0 and None on the others (which may run on
    machines that do not see ``out``). The files are those of a one-process run.

    Args:
        model: the model the attack is run against (logits for inputs in [0, 1]).
        data: the samples to attack (``advcal.data.load_data(...)``).
        epsilons: the ε list, in input units.
        out: the set's directory; created, or resumed when it holds the same recipe.
        attack, attack_params: a registered attack and its further settings.
        seed: the seed of the attack's per-sample randomness.
        shard_size: samples per shard file (the unit of resumption).
        batch_size: samples per forward/backward pass.
        compression: ``None`` or ``"zstd"`` (needs the ``zstandard`` package).
        model_spec: how the model was named (recorded in the manifest, not compared).
        device: where to run (``cpu``, ``cuda``, ...); the model is moved back afterwards.
        progress: called as ``progress(samples_done, samples_total)``.
    """
    check_int(shard_size, "shard_size", 1)
    check_int(batch_size, "batch_size", 1)
    if compression not in COMPRESSIONS:
        raise ConfigError(f"compression: expected none or zstd, got {compression!r}")
    if compression == "zstd":
        zstandard_module()  # fail before any work when it is missing
    attacker = get_attack(attack, eps=[float(e) for e in epsilons], seed=seed, **dict(attack_params or {}))
    folder = Path(out)
    home = module_device(model)
    target = home if device is None else resolve_device(device)
    with placed(model, target):  # before the folder is touched
        check_model_fits(model_spec or "", model, data, batch_size, needs_gradient=attacker.needs_gradient)
    recipe = {
        "attack": attacker.params(),
        "epsilons": [float(e) for e in epsilons],
        "model": {"fingerprint": model_fingerprint(model)},
        "data": {"spec": data.name, "split": data.split, "n_samples": len(data),
                 "fingerprint": data.fingerprint(), "classes": list(data.classes)},
        "shard_size": shard_size,
        "compression": compression or "none",
    }
    ranks = world()
    lead = ranks.rank == 0  # under torchrun rank 0 alone reads and writes the folder
    manifest, failure = None, None
    try:
        if lead:
            manifest = _open_manifest(folder, recipe, model_spec)
    except BaseException as error:  # every rank must learn of it; agree re-raises it
        failure = error
    agree(failure, ranks)
    plan = _shard_plan(len(data), shard_size)
    missing = []
    if lead:
        missing = [k for k, entry in enumerate(manifest["shards"]) if not _shard_is_intact(folder, entry)]
    if ranks.size > 1:
        missing = broadcast_array(np.array(missing, np.int64) if lead else None, ranks).tolist()
    done = len(data) - sum(plan[k][1] - plan[k][0] for k in missing)
    try:
        model.to(target)
        # Rounds of one shard per rank: each rank attacks its shard, rank 0 writes them all.
        for first in range(0, len(missing), ranks.size):
            positions = missing[first:first + ranks.size]
            payload, failure = b"", None
            try:
                if ranks.rank < len(positions):
                    start, stop = plan[positions[ranks.rank]]
                    payload = _encode(_attack_shard(model, data, attacker, start, stop, batch_size),
                                      compression)
            except BaseException as error:  # every rank must learn of it; agree re-raises it
                failure = error
            agree(failure, ranks)
            payloads = all_gather_arrays({"payload": np.frombuffer(payload, np.uint8)}, ranks)
            try:
                if lead:
                    for position, part in zip(positions, payloads, strict=False):
                        _store_shard(folder, manifest, position, part["payload"].tobytes())
            except BaseException as error:  # every rank must learn of it; agree re-raises it
                failure = error
            agree(failure, ranks)
            done += sum(plan[k][1] - plan[k][0] for k in positions)
            if progress is not None:
                progress(done, len(data))
    finally:
        model.to(home)
    if not lead:
        return None
    manifest["complete"] = True
    write_json_atomic(folder / MANIFEST, manifest)
    return AdversarialSet(folder)


def _shard_plan(n: int, shard_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` sample positions of each shard."""
    return [(start, min(start + shard_size, n)) for start in range(0, n, shard_size)]


def _store_shard(folder: Path, manifest: dict[str, object], position: int, payload: bytes) -> None:
    """Write a shard atomically, then enter it with its sha256 in the (atomically rewritten) manifest."""
    entry = manifest["shards"][position]
    write_bytes_atomic(folder / entry["file"], payload)
    entry["sha256"] = sha256_hex(payload)
    write_json_atomic(folder / MANIFEST, manifest)


def _open_manifest(folder: Path, recipe: dict[str, object], model_spec: str | None) -> dict[str, object]:
    """The existing manifest when it holds ``recipe``, else a new one (refusing foreign folders)."""
    remove_stale_temporaries(folder)  # a run killed mid-write: before the folder is judged empty
    if (folder / MANIFEST).exists():
        manifest = read_manifest(folder)
        differences = _differences(manifest["recipe"], recipe)
        if differences:
            raise ConfigError(
                f"out: {folder} holds an adversarial set made with another recipe ("
                + "; ".join(differences) + "); use another --out or delete it"
            )
        return manifest
    if folder.exists() and any(folder.iterdir()):
        raise InputError(f"out: {folder} exists, is not empty and holds no {MANIFEST}; "
                         "expected a new folder or an adversarial set to resume")
    size, n = int(recipe["shard_size"]), int(recipe["data"]["n_samples"])
    compression = None if recipe["compression"] == "none" else recipe["compression"]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "advcal_version": advcal.__version__,
        "model_spec": model_spec,
        "recipe": recipe,
        "complete": False,
        "shards": [
            {"file": shard_name(k, compression), "start": start, "stop": stop, "sha256": None}
            for k, (start, stop) in enumerate(_shard_plan(n, size))
        ],
    }
    write_json_atomic(folder / MANIFEST, manifest)
    return manifest


def _differences(old: object, new: object, prefix: str = "") -> list[str]:
    """Where two recipes differ, as ``key: old vs new`` (fingerprints shortened)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _differences(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else key)
        return out
    if old == new:
        return []
    return [f"{prefix}: {_shown(old)} in the set vs {_shown(new)} now"]


def _shown(value: object) -> str:
    """A recipe value for a message; long strings (fingerprints) cut to 12 characters."""
    if isinstance(value, str):
        return value[:12] + "…" if len(value) > 16 else value
    return json.dumps(value)


def _shard_is_intact(folder: Path, entry: dict[str, object]) -> bool:
    path = folder / str(entry["file"])
    return bool(entry.get("sha256")) and path.is_file() and sha256_hex(path.read_bytes()) == entry["sha256"]


def _attack_shard(
    model: nn.Module, data: DataSource, attacker: Attack, start: int, stop: int, batch_size: int,
) -> dict[str, torch.Tensor]:
    """The tensors of one shard: samples ``start:stop`` of ``data``, clean and attacked."""
    part = data.rows(start, stop)
    found = collect("", model, ImageAttack(part, attacker, batch_size, keep_inputs=True))
    tensors = {"index": part.index, "y": part.y, "x": part.x, "clean_logits": found.clean_logits.float()}
    for k, (x_adv, logits) in enumerate(zip(found.adversarial_inputs, found.adversarial_logits, strict=True)):
        tensors[f"x_adv.{k}"] = x_adv.float()
        tensors[f"logits.{k}"] = logits.float()
    return {name: tensor.contiguous() for name, tensor in tensors.items()}


def _encode(tensors: dict[str, torch.Tensor], compression: str | None) -> bytes:
    payload = save_safetensors(tensors)
    if compression == "zstd":
        payload = zstandard_module().ZstdCompressor(level=ZSTD_LEVEL).compress(payload)
    return payload
