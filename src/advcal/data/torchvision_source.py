"""``torchvision:NAME:ROOT``: a dataset class of ``torchvision.datasets``, from files on disk.

torchvision is optional: its wheels pin the exact torch they were built for, and a mismatched
pair fails on import. Nothing is downloaded (``download=False``); the dataset's own files must
already be under ROOT. The official train/test switch of the class gives the ``test`` split.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from advcal._core.errors import ConfigError, InputError, MissingDependencyError
from advcal._core.torchvision_compat import ensure_torchvision_importable
from advcal.data.base import RawData, SourceKind

USAGE = "torchvision:NAME:ROOT"
WITHOUT_IT = "cifar10:DIR, cifar100:DIR, fashion-mnist[:DIR], folder:PATH and npz:PATH cover the common cases"


def import_datasets() -> ModuleType:
    """``torchvision.datasets``, or a MissingDependencyError that says what to do instead."""
    ensure_torchvision_importable()
    try:
        import torchvision.datasets as datasets
    # A torchvision built for another torch imports with a RuntimeError ("operator
    # torchvision::nms does not exist"), not an ImportError: both mean "not usable here".
    except (ImportError, RuntimeError, OSError, AttributeError) as error:
        raise MissingDependencyError(
            f"torchvision: torchvision is optional and does not import here ({type(error).__name__}: "
            f"{error}); the torchvision: loader needs it. `pip install 'advcal[vision]'` works only with a "
            f"torch/torchvision pair that import together; without it, {WITHOUT_IT}"
        ) from None
    return datasets


def _construct(datasets: ModuleType, name: str, root: Path, part: str) -> Any:
    cls = getattr(datasets, name, None)
    if not inspect.isclass(cls):
        raise ConfigError(
            f"torchvision: torchvision.datasets has no dataset class {name!r} (names are case-sensitive)"
        )
    parameters = inspect.signature(cls).parameters
    if "train" in parameters:
        switch = {"train": part == "train"}
    elif "split" in parameters:
        switch = {"split": part}
    else:
        raise InputError(
            f"torchvision: {name} has neither a train= nor a split= argument, so advcal cannot tell its "
            "official test set; use folder:PATH or npz:PATH instead"
        )
    try:
        return cls(root=str(root), download=False, **switch)
    except (RuntimeError, OSError, ValueError) as error:  # "Dataset not found or corrupted" and kin
        raise InputError(f"torchvision: cannot load {name} from {root} (download is off): {error}") from None


def _to_nchw(x: np.ndarray) -> np.ndarray | None:
    """Stored images as (N, C, H, W), or None when their layout is not one of the usual ones."""
    if x.ndim == 3:  # (N, H, W) greyscale, as MNIST keeps them
        return x[:, None]
    if x.ndim == 4 and x.shape[1] in (1, 3):  # already channels-first, as SVHN and STL10
        return x
    if x.ndim == 4 and x.shape[3] in (1, 3):  # channels-last, as CIFAR keeps them
        return x.transpose(0, 3, 1, 2)
    return None


def _arrays(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, C, H, W) images and (N,) labels of a torchvision dataset object."""
    data = getattr(dataset, "data", None)
    targets = getattr(dataset, "targets", None)
    if targets is None:
        targets = getattr(dataset, "labels", None)
    if data is not None and targets is not None:  # the fast path: arrays the class already holds
        x = _to_nchw(np.asarray(data))
        if x is not None and x.dtype == np.uint8:
            return np.ascontiguousarray(x), np.asarray(targets, dtype=np.int64)
    # Otherwise decode sample by sample: with no transform, each item is (PIL image, label).
    images, labels = [], []
    for i in range(len(dataset)):
        image, label = dataset[i]
        images.append(np.asarray(image))
        labels.append(int(label))
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise InputError(
            f"torchvision: the dataset's images differ in shape ({sorted(shapes)[:2]}); expected one size"
        )
    x = _to_nchw(np.stack(images)) if images else None
    if x is None or x.dtype != np.uint8:
        raise InputError("torchvision: expected 8-bit greyscale or RGB images from the dataset")
    return x, np.array(labels, dtype=np.int64)


def load(argument: str | None, part: str) -> RawData:
    """The official training or test set of ``torchvision.datasets.NAME`` under ROOT."""
    name, _, root_text = (argument or "").partition(":")
    if not name or not root_text:
        raise ConfigError(f"torchvision: expected {USAGE}, e.g. torchvision:CIFAR10:/data, got {argument!r}")
    datasets = import_datasets()
    root = Path(root_text).expanduser()
    if not root.is_dir():
        raise InputError(f"torchvision: directory {root} does not exist")
    dataset = _construct(datasets, name, root, part)
    x, y = _arrays(dataset)
    n_classes = int(y.max()) + 1 if len(y) else 0
    classes = [str(c) for c in getattr(dataset, "classes", None) or []]
    if len(classes) < n_classes:
        classes = [str(k) for k in range(n_classes)]
    return RawData(x, y, classes, f"torchvision {name} in {root}")


KIND = SourceKind(name="torchvision", usage=USAGE, official_test=True, argument="required", load=load)
