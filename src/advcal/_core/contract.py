"""The output-type contract shared by the whole package.

A classifier's scores come as ``"logits"`` (the default everywhere in advcal),
``"probs"`` (rows of non-negative numbers summing to 1) or ``"log_probs"``. Every peer guesses
which one it was given, silently; advcal is told, and checks. The one guess it does make is
defensive: a tensor passed as logits that looks exactly like softmax output is refused,
because softmaxing probabilities again flattens every reliability diagram.

Everything downstream works on float64 log-probabilities from :func:`to_log_probs`, so no
probability saturates to exactly 0 or 1 by accident of float32 rounding.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from advcal._core.errors import InputError, describe

OutputKind = Literal["logits", "probs", "log_probs"]
OUTPUT_KINDS: tuple[str, ...] = ("logits", "probs", "log_probs")

# Rows within this distance of summing to one count as probabilities.
ROW_SUM_TOLERANCE = 1e-3
# log of the smallest normal float64: a probability of exactly 0 is counted as this, so that
# an NLL stays finite (about 708 nats) and JSON stays valid.
LOG_TINY = float(np.log(np.finfo(np.float64).tiny))


def as_tensor(values: object, name: str) -> torch.Tensor:
    """``values`` as a torch tensor without copying (numpy arrays are shared, not copied, unless
    their byte order is not this machine's); meta tensors and non-numeric arrays are refused."""
    if isinstance(values, torch.Tensor):
        if values.device.type == "meta":
            raise InputError(f"{name}: is on the meta device (a tensor without values); expected real values")
        return values.detach()
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "biufc":  # strings, objects, dates, raw bytes
            raise InputError(f"{name}: expected a numeric array, got {describe(values)}")
        if not values.dtype.isnative:  # e.g. big-endian floats from another machine: same values
            values = values.astype(values.dtype.newbyteorder("="))
        return torch.from_numpy(np.ascontiguousarray(values))
    raise InputError(
        f"{name}: expected a torch.Tensor or a numpy array, got {type(values).__name__}"
    )


def check_scores(
    values: object, inputs: str = "logits", name: str = "logits"
) -> torch.Tensor:
    """Validate a ``(N, C)`` score matrix of kind ``inputs`` and return it as a tensor.

    Raises :class:`~advcal.errors.InputError` for a wrong type, dtype or shape, NaN or inf,
    probabilities that do not sum to one, or (for ``inputs="logits"``) a matrix that looks
    like softmax output.
    """
    if inputs not in OUTPUT_KINDS:
        raise InputError(f"inputs: expected one of {', '.join(OUTPUT_KINDS)}, got {inputs!r}")
    scores = as_tensor(values, name)
    if not scores.is_floating_point():
        raise InputError(f"{name}: expected a floating-point dtype, got {describe(scores)}")
    if scores.ndim != 2:
        raise InputError(f"{name}: expected a 2-D (samples, classes) array, got {describe(scores)}")
    if scores.shape[0] == 0:
        raise InputError(f"{name}: expected at least one sample, got {describe(scores)}")
    if scores.shape[1] < 2:
        raise InputError(
            f"{name}: expected at least 2 class columns, got {describe(scores)}; a binary "
            "classifier's single logit z is the 2-column matrix [0, z]"
        )
    # One pass finds the range; NaN propagates through it, so clean inputs pay nothing more.
    low, high = (float(v) for v in torch.aminmax(scores))
    if not (np.isfinite(low) and np.isfinite(high)):
        if bool(torch.isnan(scores).any()):
            raise InputError(f"{name}: contains NaN")
        if inputs != "log_probs" or high == np.inf or not bool(torch.isfinite(scores).any(1).all()):
            raise InputError(f"{name}: contains inf")
    if inputs == "log_probs":
        if high > 1e-6:
            raise InputError(f"{name}: log-probabilities must be <= 0 (inputs='log_probs')")
        _check_rows_sum_to_one(torch.logsumexp(scores.double(), 1).exp(), name, inputs)
    elif inputs == "probs":
        if low < 0 or high > 1 + ROW_SUM_TOLERANCE:
            raise InputError(f"{name}: probabilities must lie in [0, 1] (inputs='probs')")
        _check_rows_sum_to_one(scores.double().sum(1), name, inputs)
    elif low >= 0 and looks_like_probabilities(scores):
        raise InputError(
            f"{name}: every row is non-negative and sums to 1, so these look like softmax "
            "probabilities, not logits; pass the model's raw logits, or say inputs='probs'"
        )
    return scores


def looks_like_probabilities(scores: torch.Tensor) -> bool:
    """True when every row is non-negative and sums to one (within ``ROW_SUM_TOLERANCE``)."""
    if bool((scores < 0).any()):
        return False
    row_sums = scores.double().sum(1)
    return bool(((row_sums - 1).abs() <= ROW_SUM_TOLERANCE).all())


def _check_rows_sum_to_one(row_sums: torch.Tensor, name: str, inputs: str) -> None:
    error = (row_sums - 1).abs()
    if bool((error > ROW_SUM_TOLERANCE).any()):
        worst = int(error.argmax())
        raise InputError(
            f"{name}: row {worst} sums to {float(row_sums[worst]):.6g}, expected 1 "
            f"(inputs={inputs!r}); pass inputs='logits' for raw model outputs"
        )


def as_logits64(scores: torch.Tensor, inputs: str = "logits") -> torch.Tensor:
    """A float64 copy of validated scores on the logit scale (safe to modify in place).

    Probabilities become log-probabilities, which are valid logits: ``softmax`` maps them
    back to the (renormalised) probabilities.
    """
    logits = scores.to(torch.float64, copy=True)
    if inputs == "probs":
        logits.clamp_min_(0).log_()
    return logits


def to_log_probs(scores: torch.Tensor, inputs: str = "logits") -> torch.Tensor:
    """float64 log-probabilities from validated scores (see :func:`check_scores`).

    Logits go through ``log_softmax`` in float64, never ``log(softmax)``. Probabilities are
    renormalised exactly; a probability of 0 is counted as the smallest normal float64.
    """
    log_probs = torch.log_softmax(as_logits64(scores, inputs), dim=1)
    return log_probs.clamp_min(LOG_TINY) if inputs != "logits" else log_probs


def check_labels(values: object, n_samples: int, n_classes: int, name: str = "labels") -> torch.Tensor:
    """Validate integer class labels of length ``n_samples`` in ``[0, n_classes)``; int64 tensor."""
    labels = as_tensor(values, name)
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise InputError(f"{name}: expected integer class indices, got {describe(labels)}")
    if labels.ndim != 1 or labels.shape[0] != n_samples:
        raise InputError(
            f"{name}: expected a 1-D array of {n_samples} class indices (one per row of the "
            f"scores), got {describe(labels)}"
        )
    labels = labels.long()
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= n_classes:
        bad = low if low < 0 else high
        raise InputError(
            f"{name}: class index {bad} is out of range; expected 0 <= label < {n_classes} "
            f"(the number of score columns)"
        )
    return labels
