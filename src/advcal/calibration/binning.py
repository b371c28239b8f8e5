"""Non-parametric calibrators: isotonic regression and histogram binning, one-vs-rest.

Both calibrate each class's probability ``softmax(logits)_k`` against ``1[y == k]`` on its own
and renormalise the row, so the calibrated probabilities sum to 1. Neither keeps the argmax
in general: two classes mapped to the same plateau tie, and renormalisation can reorder
classes whose maps differ. Their outputs are piecewise constant or piecewise linear, so they
have no useful gradient: :class:`~advcal.calibration.CalibratedModel` passes gradients
straight through them (BPDA) when they are attacked.
"""

from __future__ import annotations

import numpy as np
import torch

from advcal._core.validation import check_int
from advcal.calibration.base import Calibrator

# A calibrated probability of 0 everywhere in a row would leave nothing to renormalise.
FLOOR = 1e-12


def _renormalised_log(probabilities: torch.Tensor) -> torch.Tensor:
    """Log of the rows of ``probabilities`` scaled to sum to 1 (uniform where a row is all 0)."""
    clipped = probabilities.clamp_min(FLOOR)
    return torch.log(clipped / clipped.sum(1, keepdim=True))


class IsotonicCalibration(Calibrator):
    """scikit-learn's ``IsotonicRegression`` per class on ``softmax(logits)_k``, renormalised.

    The fitted maps are stored as their breakpoints and applied by linear interpolation
    (clipped at the ends), exactly as ``IsotonicRegression.predict`` does, so a saved
    calibrator needs no pickle.
    """

    kind = "isotonic"
    differentiable = False

    def __init__(self) -> None:
        super().__init__()
        self.knots: list[tuple[np.ndarray, np.ndarray]] = []

    def _fit(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        # Imported here: scikit-learn costs about a second to import, and only this fit needs it.
        from sklearn.isotonic import IsotonicRegression

        probabilities = torch.softmax(logits, 1).numpy()
        self.knots = []
        for k in range(probabilities.shape[1]):
            regression = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            regression.fit(probabilities[:, k], (labels.numpy() == k).astype(np.float64))
            self.knots.append((regression.X_thresholds_.copy(), regression.y_thresholds_.copy()))

    def _transform(self, logits: torch.Tensor) -> torch.Tensor:
        probabilities = torch.softmax(logits.detach().double(), 1).cpu().numpy()
        calibrated = np.stack([np.interp(probabilities[:, k], x, y) for k, (x, y) in enumerate(self.knots)],
                              axis=1)
        return _renormalised_log(torch.from_numpy(calibrated)).to(logits)

    def _tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for k, (x, y) in enumerate(self.knots):
            out[f"x.{k}"], out[f"y.{k}"] = torch.from_numpy(x), torch.from_numpy(y)
        return out

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        self.knots = [(tensors[f"x.{k}"].double().numpy(), tensors[f"y.{k}"].double().numpy())
                      for k in range(self.n_classes)]


class HistogramBinning(Calibrator):
    """Per class, ``n_bins`` equal-width bins of ``softmax(logits)_k``; each bin maps to the
    share of its calibration samples that belong to class ``k`` (an empty bin to its centre);
    rows renormalised (Zadrozny & Elkan 2001)."""

    kind = "histogram"
    differentiable = False

    def __init__(self, n_bins: int = 15) -> None:
        super().__init__()
        self.n_bins = check_int(n_bins, "n_bins", 1)
        self.values: torch.Tensor | None = None  # (classes, bins)

    def _settings(self) -> dict[str, object]:
        return {"n_bins": self.n_bins}

    def _bins(self, probabilities: torch.Tensor) -> torch.Tensor:
        return (probabilities * self.n_bins).long().clamp(0, self.n_bins - 1)

    def _fit(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        bins = self._bins(torch.softmax(logits, 1))
        classes = logits.shape[1]
        hits = torch.zeros(classes, self.n_bins, dtype=torch.float64)
        counts = torch.zeros(classes, self.n_bins, dtype=torch.float64)
        for k in range(classes):
            counts[k].index_add_(0, bins[:, k], torch.ones(len(labels), dtype=torch.float64))
            hits[k].index_add_(0, bins[:, k], (labels == k).double())
        centres = (torch.arange(self.n_bins, dtype=torch.float64) + 0.5) / self.n_bins
        self.values = torch.where(counts > 0, hits / counts.clamp_min(1), centres.expand(classes, -1))

    def _transform(self, logits: torch.Tensor) -> torch.Tensor:
        bins = self._bins(torch.softmax(logits.detach().double(), 1)).cpu()
        calibrated = torch.gather(self.values.expand(len(bins), -1, -1), 2, bins[:, :, None])[:, :, 0]
        return _renormalised_log(calibrated).to(logits)

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"values": self.values}

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        self.values = tensors["values"].double()
