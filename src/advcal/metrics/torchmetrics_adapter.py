"""A torchmetrics ``Metric`` over :class:`CalibrationStats`, for Lightning validation loops.

>>> from advcal.metrics.torchmetrics_adapter import CalibrationMetric    # doctest: +SKIP
>>> metric = CalibrationMetric(num_classes=10)                          # doctest: +SKIP
>>> metric.update(logits, labels); report = metric.compute()            # doctest: +SKIP

Under DDP, torchmetrics gathers the per-sample records and sums the class-wise cells across
processes, so the report equals that of the whole validation set (see the invariant on
exact merging). Requires the optional ``torchmetrics`` package.
"""

from __future__ import annotations

import numpy as np
import torch

from advcal._core.errors import InputError, MissingDependencyError
from advcal._core.torchvision_compat import ensure_torchvision_importable
from advcal.metrics.report import CalibrationReport
from advcal.metrics.stats import CalibrationStats, state_checksum

ensure_torchvision_importable()  # torchmetrics imports torchvision when it is installed
try:
    from torchmetrics import Metric
    from torchmetrics.utilities import dim_zero_cat
except ImportError as error:  # pragma: no cover - exercised only without torchmetrics
    raise MissingDependencyError(
        "CalibrationMetric needs torchmetrics: pip install 'advcal[test]' or torchmetrics"
    ) from error

_RECORDS = ("key", "label", "confidence", "correct", "brier", "nll")
_CELLS = ("class_count", "class_prob", "class_hits")


class CalibrationMetric(Metric):
    """The whole advcal calibration report as one torchmetrics ``Metric``.

    Args:
        num_classes: number of classes (fixed up front, as torchmetrics needs state shapes).
        n_bins: number of confidence bins.
        inputs: ``"logits"`` (default), ``"probs"`` or ``"log_probs"``.
        smooth: include smooth ECE in ``compute``.
        bootstrap: bootstrap replicates; requires ``index`` in every ``update``.
        seed: bootstrap seed.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    def __init__(
        self,
        num_classes: int,
        n_bins: int = 15,
        inputs: str = "logits",
        smooth: bool = False,
        bootstrap: int = 0,
        seed: int = 0,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        # Validates every argument the same way CalibrationStats does.
        self._config = CalibrationStats(n_bins, num_classes, inputs, True, bootstrap, seed)
        self.smooth = smooth
        for name in _RECORDS:
            self.add_state(name, default=[], dist_reduce_fx="cat")
        lead = (bootstrap,) if bootstrap else ()
        for name in _CELLS:
            dtype = torch.float64 if name == "class_prob" else torch.int64
            self.add_state(name, torch.zeros(num_classes, n_bins, dtype=dtype), "sum")
            if bootstrap:
                self.add_state(
                    "replicate_" + name,
                    torch.zeros(*lead, num_classes, n_bins, dtype=torch.float64),
                    "sum",
                )

    def update(self, preds: torch.Tensor, target: torch.Tensor, index: torch.Tensor | None = None) -> None:
        """Add a batch of scores ``preds`` ``(N, C)`` and labels ``target`` ``(N,)``."""
        config = self._config
        if config.bootstrap and index is None:
            raise InputError(
                "index: bootstrap intervals across processes need the sample indices; "
                "pass index= to update"
            )
        batch = CalibrationStats(
            config.n_bins, config.n_classes, config.inputs, True, config.bootstrap, config.seed
        )
        batch.update(
            preds.detach().cpu(), target.detach().cpu(),
            index=None if index is None else index.detach().cpu(),
        )
        state = batch.state_dict()
        for name in _RECORDS:
            getattr(self, name).append(torch.from_numpy(state[name].copy()))
        for name in _CELLS:
            setattr(self, name, getattr(self, name) + torch.from_numpy(state[name]))
            if config.bootstrap:
                key = "replicate_" + name
                setattr(self, key, getattr(self, key) + torch.from_numpy(state[key]))

    def compute(self) -> CalibrationReport:
        """The :class:`~advcal.metrics.CalibrationReport` of every sample seen."""
        config = self._config
        state = {name: dim_zero_cat(getattr(self, name)).numpy() for name in _RECORDS}
        for name in _CELLS:
            state[name] = getattr(self, name).numpy()
            if config.bootstrap:
                state["replicate_" + name] = getattr(self, "replicate_" + name).numpy()
        # Unindexed keys are batch positions; renumber them after gathering.
        if not config.bootstrap:
            state["key"] = np.arange(len(state["key"]), dtype=np.int64)
        state["config"] = config.config_vector(indexed=bool(config.bootstrap))
        state["checksum"] = state_checksum(state)  # made here from synced tensors: nothing to verify
        return CalibrationStats.from_state_dict(state).compute(smooth=self.smooth)
