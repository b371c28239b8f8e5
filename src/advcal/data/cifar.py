"""``cifar10:DIR`` and ``cifar100:DIR``: the official *binary* releases of CIFAR-10 and CIFAR-100.

Each file is a run of fixed-size records: the label byte(s) (CIFAR-100: coarse then fine; the
fine label is used), then 3,072 image bytes, the red, green and blue 32x32 planes in row-major
order, which is already (C, H, W). The python release is pickled and is never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from advcal._core.errors import InputError
from advcal.data.base import RawData, SourceKind

IMAGE_BYTES = 3 * 32 * 32


@dataclass(frozen=True)
class Layout:
    """Where a CIFAR binary release keeps things and how its records look."""

    kind: str
    folder: str  # the folder the release's archive unpacks to
    archive: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    names: str  # class names, one per line
    label_bytes: int
    n_classes: int

    @property
    def record(self) -> int:
        return self.label_bytes + IMAGE_BYTES


CIFAR10 = Layout(
    "cifar10", "cifar-10-batches-bin", "cifar-10-binary.tar.gz",
    tuple(f"data_batch_{k}.bin" for k in range(1, 6)), ("test_batch.bin",), "batches.meta.txt", 1, 10,
)
CIFAR100 = Layout(
    "cifar100", "cifar-100-binary", "cifar-100-binary.tar.gz",
    ("train.bin",), ("test.bin",), "fine_label_names.txt", 2, 100,
)


def resolve_folder(layout: Layout, argument: str) -> Path:
    """The folder holding the release's files: ``argument`` itself or its ``layout.folder``."""
    given = Path(argument).expanduser()
    if not given.is_dir():
        raise InputError(f"{layout.kind}: directory {given} does not exist")
    for folder in (given, given / layout.folder):
        files = (layout.names, *layout.train, *layout.test)
        if any((folder / name).is_file() for name in files):
            return folder
    # The python release unpacks to *-py with files lacking the .bin suffix: say so plainly.
    python_release = any(given.glob("*-py")) or any((given / f).exists() for f in ("data_batch_1", "train"))
    hint = " (this looks like the python release, which advcal does not read)" if python_release else ""
    raise InputError(
        f"{layout.kind}: {given} holds neither the binary release's files nor its {layout.folder} "
        f"folder{hint}; expected {', '.join(layout.train + layout.test)} and {layout.names} "
        f"from {layout.archive}"
    )


def read_records(layout: Layout, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) of one binary file."""
    if not path.is_file():
        raise InputError(f"{layout.kind}: {path} is missing; expected the files of {layout.archive}")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0 or data.size % layout.record:
        raise InputError(
            f"{path}: {data.size} bytes is not a positive multiple of {layout.record}, the size of a "
            f"{layout.kind} record ({layout.label_bytes} label byte(s) + {IMAGE_BYTES} image bytes); "
            "truncated, or not the binary release"
        )
    records = data.reshape(-1, layout.record)
    labels = records[:, layout.label_bytes - 1].astype(np.int64)  # the last label byte: the fine label
    bad = np.flatnonzero(labels >= layout.n_classes)
    if bad.size:
        raise InputError(
            f"{path}: record {bad[0]} has label {labels[bad[0]]}, expected 0..{layout.n_classes - 1}"
        )
    return records[:, layout.label_bytes :].reshape(-1, 3, 32, 32), labels


def read_names(layout: Layout, folder: Path) -> list[str]:
    """Class names from the release's names file (blank lines, as at its end, are dropped)."""
    path = folder / layout.names
    if not path.is_file():
        raise InputError(
            f"{layout.kind}: {path} is missing; expected the class names file of {layout.archive}"
        )
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(names) != layout.n_classes:
        raise InputError(f"{path}: {len(names)} class names, expected {layout.n_classes} (one per line)")
    return names


def load(layout: Layout, argument: str | None, part: str) -> RawData:
    """The official training or test set of a CIFAR binary release as 3x32x32 uint8 images."""
    folder = resolve_folder(layout, argument or "")
    classes = read_names(layout, folder)
    files = layout.train if part == "train" else layout.test
    pieces = [read_records(layout, folder / name) for name in files]
    x = np.concatenate([images for images, _ in pieces]) if len(pieces) > 1 else pieces[0][0]
    y = np.concatenate([labels for _, labels in pieces])
    return RawData(x, y, classes, str(folder))


CIFAR10_KIND = SourceKind(
    name="cifar10", usage="cifar10:DIR", official_test=True, argument="required",
    load=partial(load, CIFAR10),
)
CIFAR100_KIND = SourceKind(
    name="cifar100", usage="cifar100:DIR", official_test=True, argument="required",
    load=partial(load, CIFAR100),
)
