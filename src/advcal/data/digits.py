"""``digits``: scikit-learn's 1,797 handwritten digits (8x8, shipped inside scikit-learn)."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from advcal._core.errors import MissingDependencyError
from advcal.data.base import RawData, SourceKind


def digits_file() -> Path:
    """The CSV scikit-learn ships its digits in, found without importing scikit-learn (whose
    import costs more than a second, against milliseconds to read the file)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("data: the digits dataset ships inside scikit-learn, which is not "
                                     "installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise MissingDependencyError(f"data: scikit-learn's digits file {path} is missing")
    return path


def load(argument: str | None, part: str) -> RawData:
    """All 1,797 digits as 1x8x8 float32 images in [0, 1] (pixel values 0..16 divided by 16),
    read as ``sklearn.datasets.load_digits`` reads them: 64 pixels then the label per row."""
    with gzip.open(digits_file(), "rt") as text:
        table = np.loadtxt(text, delimiter=",")
    x = (table[:, :-1].reshape(-1, 8, 8) / 16.0).astype(np.float32)[:, None]
    return RawData(x, table[:, -1].astype(np.int64), [str(k) for k in range(10)], "digits")


KIND = SourceKind(name="digits", usage="digits", official_test=False, argument="none", load=load)
