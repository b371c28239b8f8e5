"""``fashion-mnist[:DIR]``: Zalando's Fashion-MNIST from its original idx files.

The default folder is where Debian's ``dataset-fashion-mnist`` package installs the files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from advcal._core.errors import InputError
from advcal.data.base import RawData, SourceKind
from advcal.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
HINT = (
    "install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu, into "
    f"{DEFAULT_DIR}) or pass fashion-mnist:DIR, a folder holding "
    + ", ".join(f"{name}.gz" for pair in FILES.values() for name in pair)
)


def _find(folder: Path, stem: str) -> Path:
    # The files as distributed are gzipped; accept them gunzipped too, as people often do that.
    for path in (folder / f"{stem}.gz", folder / stem):
        if path.is_file():
            return path
    raise InputError(f"fashion-mnist: {folder} has no {stem}.gz; {HINT}")


def load(argument: str | None, part: str) -> RawData:
    """The official training (60,000) or test (10,000) set as 1x28x28 uint8 images."""
    folder = Path(argument).expanduser() if argument else DEFAULT_DIR
    if not folder.is_dir():
        raise InputError(f"fashion-mnist: directory {folder} does not exist; {HINT}")
    images_stem, labels_stem = FILES[part]
    images_path, labels_path = _find(folder, images_stem), _find(folder, labels_stem)
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if len(labels) != len(images):
        raise InputError(
            f"fashion-mnist: {labels_path} holds {len(labels)} labels but {images_path} "
            f"holds {len(images)} images; expected one label per image"
        )
    if len(labels) and labels.max() >= len(CLASSES):
        raise InputError(f"{labels_path}: label {int(labels.max())} found, expected 0..{len(CLASSES) - 1}")
    return RawData(images[:, None], labels.astype(np.int64), list(CLASSES), str(images_path))


KIND = SourceKind(
    name="fashion-mnist", usage="fashion-mnist[:DIR]", official_test=True, argument="optional", load=load
)
