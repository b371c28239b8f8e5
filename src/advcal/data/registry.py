"""Data sources by spec string (``digits``, ``cifar10:DIR``, ...): parsing, splitting, ``limit``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from advcal._core.errors import ConfigError, InputError
from advcal._core.registry import Registry
from advcal._core.validation import check_int
from advcal.data import cifar, digits, fashion_mnist, folder, npz, torchvision_source
from advcal.data.base import SourceKind
from advcal.data.source import DataSource
from advcal.data.splits import SPLITS, WHOLE, split_official_train, split_three_way, stratified_order

KINDS: Registry[SourceKind] = Registry("data kind")
for _kind, _summary in (
    (digits.KIND, "scikit-learn's 8x8 digits (1,797 images, 10 classes)"),
    (fashion_mnist.KIND, "Fashion-MNIST's IDX files, from DIR or the offline copy"),
    (cifar.CIFAR10_KIND, "CIFAR-10's binary release in DIR (its official test set)"),
    (cifar.CIFAR100_KIND, "CIFAR-100's binary release in DIR (its official test set)"),
    (npz.KIND, "a numpy.savez file: x (N, C, H, W) in [0, 1] or uint8 and y (N,) labels, audited whole"),
    (folder.KIND, "an image folder, one subfolder per class (ImageFolder layout), audited whole"),
    (torchvision_source.KIND, "a torchvision.datasets class NAME, from its files under ROOT (no download)"),
):
    KINDS.add(_kind.name, _kind, f"{_kind.usage}: {_summary}")


def available_sources() -> list[str]:
    """The spec kinds ``load_data`` understands, in the order the documentation lists them."""
    return list(KINDS)


def _known() -> str:
    return ", ".join(kind.usage for kind in KINDS.values())


def parse_spec(spec: object) -> tuple[SourceKind, str | None, str]:
    """``(kind, argument, canonical name)`` of a spec such as ``cifar10:/data/cifar``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"data: expected a spec string, got {spec!r}; known kinds: {_known()}")
    head, sep, argument = spec.strip().partition(":")
    kind = KINDS.get(head)
    if kind is None:
        raise ConfigError(f"data: unknown kind {head!r} in {spec!r}; known kinds: {_known()}")
    if kind.argument == "none" and sep:
        raise ConfigError(f"data: {kind.name} takes no argument, got {spec!r}; write {kind.usage}")
    if kind.argument == "required" and not argument:
        raise ConfigError(f"data: {kind.name} needs an argument, got {spec!r}; write {kind.usage}")
    if not argument:
        return kind, None, kind.name
    # Paths are normalised ("a/./b/" -> "a/b") but not resolved, so a name stays as portable as
    # the spec it came from. torchvision's argument is NAME:ROOT: only ROOT is a path.
    if kind.name == "torchvision":
        dataset, _, root = argument.partition(":")
        return kind, argument, f"{kind.name}:{dataset}:{Path(root)}" if root else f"{kind.name}:{argument}"
    return kind, argument, f"{kind.name}:{Path(argument)}"


def _to_unit_float(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        out = x.astype(np.float32)
        out /= np.float32(255)
        return out
    return x.astype(np.float32)


def default_split(spec: str) -> str:
    """The split audited when none is asked for: ``all`` of a user's own file (``npz:``,
    ``folder:``), ``test`` of a built-in dataset (advcal's fixed split of ``digits``; the official
    test set of the others)."""
    kind, _, _ = parse_spec(spec)
    return WHOLE if kind.own_data else "test"


def load_data(spec: str, split: str | None = None, limit: int | None = None) -> DataSource:
    """Load ``split`` ("train", "calibration", "test" or "all") of the data source ``spec``.

    ``all`` is every sample of a source without an official test set (``npz:``, ``folder:``,
    ``digits``), for data that is already a held-out set. By default (:func:`default_split`) a
    user's own ``npz:`` or ``folder:`` is read whole and a built-in dataset's test split is used.

    ``limit`` keeps at most that many samples, the first of the split's fixed stratified order
    (see :mod:`advcal.data`), returned in index order. Raises ConfigError for an unknown spec and
    InputError for a bad split, a limit below 1, or a missing or malformed file.
    """
    kind, argument, name = parse_spec(spec)
    if split is None:
        split = default_split(spec)
    if split not in (*SPLITS, WHOLE):
        raise InputError(f"split: expected one of {', '.join((*SPLITS, WHOLE))}, got {split!r}")
    if limit is not None:
        check_int(limit, "limit", 1)
    if kind.official_test and split == WHOLE:
        raise InputError(f"split: {name} has an official test set; expected train, calibration or test, "
                         f"got {split!r}")
    if kind.official_test:
        raw = kind.load(argument, "test" if split == "test" else "train")
        positions = np.arange(len(raw.y)) if split == "test" else split_official_train(raw.y)[split]
    else:
        raw = kind.load(argument, "all")
        positions = np.arange(len(raw.y)) if split == WHOLE else split_three_way(raw.y)[split]
    if len(positions) == 0:
        raise InputError(
            f"split: {name} has no {split!r} samples ({len(raw.y)} samples in all are too few to split)"
        )
    index = np.arange(len(positions))
    if limit is not None and limit < len(positions):
        index = np.sort(stratified_order(raw.y[positions])[:limit])
        positions = positions[index]
    return DataSource(
        name=name,
        split=split,
        x=torch.from_numpy(_to_unit_float(raw.x[positions])),
        y=torch.from_numpy(raw.y[positions].astype(np.int64)),
        index=torch.from_numpy(index.astype(np.int64)),
        classes=list(raw.classes),
    )
