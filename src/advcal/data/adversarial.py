"""Static adversarial sets on disk: a manifest and safetensors shards, each with its sha256.

A set is a directory::

    manifest.json                 format, advcal version, the recipe, the shard list
    shard-00000.safetensors[.zst] index, y, x, clean_logits, x_adv.K, logits.K (K = ε position)

The recipe names everything that determines the files: the attack and all its settings (seed
and ε list included), the fingerprints of the model and of the data, the shard size and the
compression. Shards are made by :func:`advcal.analyses.adversarial_sets.make_adversarial_set`; this module
reads them. Every shard is checked against its sha256 when read; a zstandard-compressed shard
is recognised by its magic bytes, whatever its name. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

import torch
from safetensors.torch import load as load_safetensors

from advcal._core.errors import InputError, MissingDependencyError

FORMAT = "advcal.adversarial-set"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

SHARD_FILE = re.compile(r"shard-\d{5}\.safetensors(\.zst)?")
SHA256 = re.compile(r"[0-9a-f]{64}")


def shard_name(position: int, compression: str | None) -> str:
    """File name of shard ``position``."""
    return f"shard-{position:05d}.safetensors" + (".zst" if compression == "zstd" else "")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zstandard_module() -> ModuleType:
    """The ``zstandard`` module, or a clear error saying how to install it."""
    try:
        import zstandard
    except ImportError as error:
        raise MissingDependencyError(
            "compression: zstandard is not installed; pip install 'advcal[zstd]' (or zstandard)"
        ) from error
    return zstandard


def decode_shard(data: bytes) -> dict[str, torch.Tensor]:
    """The tensors of a shard file's bytes, decompressing zstandard frames."""
    if data[:4] == ZSTD_MAGIC:
        data = zstandard_module().ZstdDecompressor().decompress(data)
    return load_safetensors(data)


def read_manifest(folder: Path) -> dict[str, object]:
    """The manifest of the set in ``folder``, checked for its format."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise InputError(f"adv_set: {folder} holds no {MANIFEST}; expected an advcal adversarial set "
                         "(made by advcal attack)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"adv_set: cannot read {path}: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"adv_set: {path} is not an advcal adversarial-set manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"adv_set: {path} has format version {manifest.get('format_version')!r}; this advcal "
            f"reads version {FORMAT_VERSION}"
        )
    _check_manifest(manifest, path)
    return manifest


def _check_manifest(manifest: dict[str, object], path: Path) -> None:
    """Refuse a manifest that was truncated or tampered with: every key of the layout with its
    type, shards that tile the samples in order, and shard files that are plain names inside the
    set's folder (a name such as ``../x`` would read or write outside it)."""
    def bad(what: str) -> InputError:
        return InputError(f"adv_set: {path} is not a valid manifest: {what}; regenerate the set with "
                          "advcal attack")

    recipe, shards = manifest.get("recipe"), manifest.get("shards")
    if not isinstance(recipe, dict) or not isinstance(shards, list):
        raise bad("expected a recipe object and a shards list")
    data, attack = recipe.get("data"), recipe.get("attack")
    model = recipe.get("model")
    epsilons = recipe.get("epsilons")
    if not (isinstance(data, dict) and isinstance(attack, dict) and isinstance(model, dict)
            and isinstance(model.get("fingerprint"), str) and isinstance(attack.get("attack"), str)):
        raise bad("the recipe lacks its data, attack or model")
    if not (isinstance(epsilons, list) and epsilons and all(_is_number(e) for e in epsilons)):
        raise bad(f"epsilons {epsilons!r} is not a list of numbers")
    n, classes = data.get("n_samples"), data.get("classes")
    if not (_is_count(n) and isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise bad("the recipe's data lacks n_samples or classes")
    start = 0
    for position, entry in enumerate(shards):
        if not isinstance(entry, dict):
            raise bad(f"shard {position} is not an object")
        file, sha = entry.get("file"), entry.get("sha256")
        if not isinstance(file, str) or not SHARD_FILE.fullmatch(file):
            raise bad(f"shard {position} names the file {file!r}, expected a plain name like "
                      f"{shard_name(position, None)!r} inside the set's folder")
        if sha is not None and not (isinstance(sha, str) and SHA256.fullmatch(sha)):
            raise bad(f"shard {position} has sha256 {sha!r}, expected 64 hexadecimal digits")
        if entry.get("start") != start or not _is_count(entry.get("stop")) or entry["stop"] <= start:
            raise bad(f"shard {position} covers {entry.get('start')!r}:{entry.get('stop')!r}, expected "
                      f"to start at {start} and hold at least one sample")
        start = entry["stop"]
    if start != n:
        raise bad(f"the shards hold {start} samples, the recipe says {n}")
    if manifest.get("complete") is True and any(entry["sha256"] is None for entry in shards):
        raise bad("it is marked complete with shards missing")


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class AdversarialSet:
    """A stored adversarial set, read shard by shard with every shard's hash checked.

    Args:
        path: the directory written by ``advcal attack`` (or
            :func:`advcal.analyses.adversarial_sets.make_adversarial_set`).

    Example:
        >>> adv = AdversarialSet("adv-pgd")                       # doctest: +SKIP
        >>> for index, x, y, x_adv in adv.batches(256): ...       # doctest: +SKIP
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.recipe: dict[str, object] = self.manifest["recipe"]
        if not self.manifest.get("complete"):
            missing = sum(1 for shard in self.manifest["shards"] if not shard.get("sha256"))
            raise InputError(
                f"adv_set: {self.path} is incomplete ({missing} of {len(self.manifest['shards'])} "
                "shards missing); rerun the same advcal attack command to finish it"
            )

    @property
    def epsilons(self) -> list[float]:
        return list(self.recipe["epsilons"])

    @property
    def model_fingerprint(self) -> str:
        return str(self.recipe["model"]["fingerprint"])

    @property
    def attack(self) -> dict[str, object]:
        return dict(self.recipe["attack"])

    @property
    def classes(self) -> list[str]:
        return list(self.recipe["data"]["classes"])

    def __len__(self) -> int:
        return int(self.recipe["data"]["n_samples"])

    def __repr__(self) -> str:
        return (f"AdversarialSet({str(self.path)!r}, attack={self.attack['attack']!r}, "
                f"epsilons={self.epsilons}, samples={len(self)})")

    def read_shard(self, position: int) -> dict[str, torch.Tensor]:
        """The tensors of shard ``position``; refused if the file does not match its sha256."""
        entry = self.manifest["shards"][position]
        path = self.path / entry["file"]
        try:
            data = path.read_bytes()
        except OSError as error:
            raise InputError(f"adv_set: cannot read shard {path}: {error}") from None
        if sha256_hex(data) != entry["sha256"]:
            raise InputError(
                f"adv_set: shard {path} does not match its sha256 in the manifest (altered or "
                "truncated); rerun the same advcal attack command to regenerate it"
            )
        return decode_shard(data)

    def shard_size(self, position: int) -> int:
        """Number of samples in shard ``position``."""
        entry = self.manifest["shards"][position]
        return int(entry["stop"]) - int(entry["start"])

    def shards(self, positions: Sequence[int] | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """The tensors of every shard (or of shards ``positions``), in sample order."""
        for position in range(len(self.manifest["shards"])) if positions is None else positions:
            yield self.read_shard(position)

    def accuracies(self) -> dict[str, float]:
        """Accuracy of the model that made the set, from its stored logits: ``clean`` and per ε."""
        hits, total = [0] * (1 + len(self.epsilons)), 0
        for shard in self.shards():
            y = shard["y"]
            names = ["clean_logits", *(f"logits.{k}" for k in range(len(self.epsilons)))]
            for k, name in enumerate(names):
                hits[k] += int((shard[name].argmax(1) == y).sum())
            total += len(y)
        keys = ["clean", *(f"eps={eps:g}" for eps in self.epsilons)]
        return {key: count / total for key, count in zip(keys, hits, strict=True)}

    def batches(
        self, batch_size: int, positions: Sequence[int] | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]]:
        """``(index, x, y, [x_adv per ε])`` in batches of at most ``batch_size`` within a shard
        (of every shard, or of shards ``positions``)."""
        for shard in self.shards(positions):
            adversarial = [shard[f"x_adv.{k}"] for k in range(len(self.epsilons))]
            for start in range(0, len(shard["index"]), batch_size):
                cut = slice(start, start + batch_size)
                yield shard["index"][cut], shard["x"][cut], shard["y"][cut], [a[cut] for a in adversarial]
