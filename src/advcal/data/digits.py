"""``digits``: scikit-learn's 1,797 handwritten digits (8x8, shipped inside scikit-learn)."""

from __future__ import annotations

import numpy as np

from advcal.data.base import RawData, SourceKind


def load(argument: str | None, part: str) -> RawData:
    """All 1,797 digits as 1x8x8 float32 images in [0, 1] (pixel values 0..16 divided by 16)."""
    from sklearn.datasets import load_digits  # scikit-learn is a core dependency; import it lazily

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    return RawData(x, digits.target.astype(np.int64), [str(k) for k in range(10)], "digits")


KIND = SourceKind(name="digits", usage="digits", official_test=False, argument="none", load=load)
