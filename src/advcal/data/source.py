"""A loaded data split: images, labels, stable sample ids and class names, in batches."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from advcal._core.errors import InputError, describe
from advcal._core.validation import check_int


@dataclass(repr=False)
class DataSource:
    """One split of a dataset, in memory.

    ``x`` is (N, C, H, W) float32 in [0, 1]; ``y`` is (N,) int64; ``index`` is (N,) int64, each
    sample's position in the full split (before ``limit``), the id that keys its per-sample
    randomness; ``classes`` names the classes, label ``k`` being ``classes[k]``. ``name`` is the
    canonical spec it was loaded from and ``split`` one of train, calibration, test.
    """

    name: str
    split: str
    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        # Users may build a DataSource from their own tensors: check what everything after
        # relies on, cheaply (shapes and dtypes; the loaders guarantee the value range).
        n = len(self.y) if isinstance(self.y, torch.Tensor) else -1
        if not isinstance(self.x, torch.Tensor) or self.x.ndim != 4 or self.x.dtype != torch.float32:
            raise InputError(f"x: expected a 4-D (N, C, H, W) float32 tensor, got {describe(self.x)}")
        for label, tensor in (("y", self.y), ("index", self.index)):
            if not isinstance(tensor, torch.Tensor) or tensor.ndim != 1 or tensor.dtype != torch.int64:
                raise InputError(f"{label}: expected a 1-D int64 tensor, got {describe(tensor)}")
        if not len(self.x) == n == len(self.index):
            raise InputError(
                f"x, y, index: expected one entry per sample, got {len(self.x)}, {n} and {len(self.index)}"
            )

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        return (
            f"DataSource(name={self.name!r}, split={self.split!r}, samples={len(self)}, "
            f"shape={tuple(self.x.shape[1:])}, classes={len(self.classes)})"
        )

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(index, x, y)`` batches of at most ``batch_size`` samples, in order (views, no copies)."""
        check_int(batch_size, "batch_size", 1)
        for start in range(0, len(self), batch_size):
            stop = start + batch_size
            yield self.index[start:stop], self.x[start:stop], self.y[start:stop]

    def rows(self, start: int, stop: int) -> DataSource:
        """Samples ``start:stop`` as a DataSource of their own (views, no copies; each keeps its
        ``index``, hence its per-sample randomness)."""
        return DataSource(name=self.name, split=self.split, x=self.x[start:stop], y=self.y[start:stop],
                          index=self.index[start:stop], classes=list(self.classes))

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the name, split, image shape, and the bytes of ``x`` and ``y``.

        The bytes are hashed in a fixed byte order (little-endian float32 and int64), so the same
        data gives the same fingerprint on every machine and run.
        """
        digest = hashlib.sha256()
        header = f"advcal.data\0{self.name}\0{self.split}\0{tuple(self.x.shape)}\0"
        digest.update(header.encode("utf-8"))
        digest.update(np.ascontiguousarray(self.x.detach().cpu().numpy(), dtype="<f4"))
        digest.update(np.ascontiguousarray(self.y.detach().cpu().numpy(), dtype="<i8"))
        return digest.hexdigest()
