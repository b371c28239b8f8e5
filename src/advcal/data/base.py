"""The contract between a data-source kind and :func:`advcal.data.load_data`.

A kind's loader returns one part of a dataset as it is stored (:class:`RawData`); splitting,
``limit`` and scaling to float32 in [0, 1] happen once, in the registry, for every kind alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from advcal._core.errors import InputError, describe

# The part of a dataset a loader is asked for: the official training or test set of a dataset
# that has one, or everything of a dataset that does not.
PARTS = ("train", "test", "all")


@dataclass
class RawData:
    """All samples of one part of a dataset, unsplit and unscaled.

    ``x`` is (N, C, H, W), either uint8 (0..255, divided by 255 later) or floating point already
    in [0, 1]; ``y`` is (N,) integer labels below ``len(classes)``. ``origin`` names the file or
    folder the arrays came from, for error messages.
    """

    x: np.ndarray
    y: np.ndarray
    classes: list[str]
    origin: str

    def __post_init__(self) -> None:
        # A safety net behind each loader's own, more specific checks: whatever a kind returns,
        # the registry can rely on these shapes and ranges.
        if self.x.ndim != 4 or not (self.x.dtype == np.uint8 or np.issubdtype(self.x.dtype, np.floating)):
            raise InputError(
                f"{self.origin}: expected images as a 4-D (N, C, H, W) uint8 or float array, "
                f"got {describe(self.x)}"
            )
        if len(self.x) == 0:
            raise InputError(f"{self.origin}: holds no samples, expected at least one")
        if self.y.ndim != 1 or len(self.y) != len(self.x) or not np.issubdtype(self.y.dtype, np.integer):
            raise InputError(
                f"{self.origin}: expected {len(self.x)} integer labels in a 1-D array, got {describe(self.y)}"
            )
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= len(self.classes)):
            raise InputError(
                f"{self.origin}: labels range over {int(self.y.min())}..{int(self.y.max())}, "
                f"expected 0..{len(self.classes) - 1} for {len(self.classes)} classes"
            )


@dataclass(frozen=True)
class SourceKind:
    """One kind of data source: how its spec is written and how its raw arrays are loaded.

    ``load(argument, part)`` gets the text after ``kind:`` (``None`` if there is none) and
    ``part``, one of :data:`PARTS` ("train" or "test" when ``official_test``, else "all").
    ``argument`` says whether the spec takes an argument: "none", "optional" or "required".
    ``own_data`` marks a user's own file (``npz:``, ``folder:``): it is audited whole unless a
    split is asked for, since cutting a user's held-out set to 20% would change what is measured.
    """

    name: str
    usage: str
    official_test: bool
    argument: str
    load: Callable[[str | None, str], RawData]
    own_data: bool = False
