"""``npz:PATH``: images and labels saved with ``numpy.savez`` (read without pickle).

Arrays: ``x`` (N, C, H, W), float in [0, 1] or uint8 (divided by 255); ``y`` (N,) integer
labels; optionally ``classes``, a 1-D array of strings naming the labels 0, 1, ... (without it
the classes are named "0", "1", ... up to the largest label).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from advcal._core.errors import InputError, describe
from advcal._core.validation import check_label_bound
from advcal.data.base import RawData, SourceKind


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(f"npz: file {path} does not exist or is not a file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise InputError(f"npz: cannot read {path} as an .npz archive: {error}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):  # a bare .npy loads as an array
        raise InputError(f"npz: {path} holds a single array, expected an .npz archive with x and y")
    with archive:
        missing = [key for key in ("x", "y") if key not in archive.files]
        if missing:
            found = ", ".join(archive.files) or "none"
            raise InputError(f"npz: {path} has no array {' or '.join(missing)}; arrays found: {found}")
        try:
            return {key: archive[key] for key in ("x", "y", "classes") if key in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # e.g. an object array
            raise InputError(f"npz: cannot read the arrays of {path}: {error}") from None


def _check_x(x: np.ndarray, path: Path) -> np.ndarray:
    if x.ndim != 4:
        raise InputError(f"npz: x in {path}: expected a 4-D (N, C, H, W) array, got {describe(x)}")
    if x.shape[3] in (1, 3) and x.shape[1] not in (1, 3):
        raise InputError(
            f"npz: x in {path}: shape {x.shape} looks channels-last (N, H, W, C); expected (N, C, H, W): "
            "save x.transpose(0, 3, 1, 2)"
        )
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"npz: x in {path}: expected float values in [0, 1] or uint8, got {describe(x)}")
    if not np.isfinite(x).all():
        raise InputError(f"npz: x in {path}: contains NaN or inf, expected values in [0, 1]")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise InputError(
            f"npz: x in {path}: values range over [{x.min():g}, {x.max():g}], expected [0, 1] "
            "(scale float images to [0, 1], or store them as uint8)"
        )
    return x


def _check_y(y: np.ndarray, n: int, path: Path) -> np.ndarray:
    if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"npz: y in {path}: expected {n} integer labels in a 1-D array, got {describe(y)}")
    if n and y.min() < 0:
        raise InputError(f"npz: y in {path}: label {int(y.min())} found, expected labels >= 0")
    if n:
        check_label_bound(int(y.max()), f"npz: y in {path}")
    return y.astype(np.int64)


def _classes(arrays: dict[str, np.ndarray], y: np.ndarray, path: Path) -> list[str]:
    n_classes = int(y.max()) + 1 if len(y) else 0
    if "classes" not in arrays:
        return [str(k) for k in range(n_classes)]
    names = arrays["classes"]
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise InputError(f"npz: classes in {path}: expected a 1-D array of strings, got {describe(names)}")
    if len(names) < n_classes:
        raise InputError(
            f"npz: classes in {path}: {len(names)} names, but y has labels up to {n_classes - 1}; "
            f"expected at least {n_classes}"
        )
    return [name.decode("utf-8") if isinstance(name, bytes) else str(name) for name in names.tolist()]


def load(argument: str | None, part: str) -> RawData:
    """All samples of the archive at ``argument``, validated."""
    path = Path(argument or "").expanduser()
    arrays = _read(path)
    x = _check_x(arrays["x"], path)
    y = _check_y(arrays["y"], len(x), path)
    return RawData(x, y, _classes(arrays, y, path), str(path))


KIND = SourceKind(name="npz", usage="npz:PATH", official_test=False, argument="required", load=load,
                  own_data=True)
