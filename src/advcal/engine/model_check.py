"""Whether a user's model can be audited on this data, tried on a few samples before any work.

A model that raises in ``forward``, returns the wrong shape or dtype, is split over devices, or
gives no gradient at its input would otherwise fail deep inside an attack, as a traceback, after
files were begun. Every analysis calls :func:`check_model_fits` first.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
from torch import nn

from advcal._core.devices import single_device
from advcal._core.errors import InputError, first_line, foreign_errors_as_input
from advcal.data import AdversarialSet, DataSource
from advcal.models import check_logits, frozen


def check_model_fits(name: str, model: nn.Module, data: DataSource | AdversarialSet, batch_size: int,
                     needs_gradient: bool = False) -> None:
    """One forward pass on the first few samples: ``model`` must take ``data``'s inputs and return
    ``(n, classes)`` logits with one column per class of the data, and (``needs_gradient``: a
    gradient attack will run) a gradient at the input; else an InputError naming the model, the
    phase and what went wrong (before any attack runs)."""
    label = f"model {name}" if name else "model"
    size = min(batch_size, 8)
    first = next(iter(data.batches(size) if isinstance(data, DataSource) else data.batches(size, [0])))
    x = first[1].to(single_device(model, label))
    shape = "x".join(str(d) for d in x.shape[1:])
    source = data.name if isinstance(data, DataSource) else str(data.path)
    with frozen(model), _model_phase(label, f"cannot take the data's inputs ({source}: {len(x)} x {shape}, "
                                           "values in [0, 1]); its first forward pass"):
        with torch.no_grad():
            logits = model(x)
    check_logits(logits, len(x), label)
    n_classes = len(data.classes)
    if logits.shape[1] != n_classes:
        raise InputError(f"{label}: returns {logits.shape[1]} logits per input, but the data "
                         f"({source}) has {n_classes} classes; expected one logit per class")
    if needs_gradient:
        _check_input_gradient(label, model, x)


def _check_input_gradient(label: str, model: nn.Module, x: torch.Tensor) -> None:
    """The gradient of the logits with respect to the input, as an attack takes it (parameters
    frozen): a model that detaches its output or runs under no_grad inside forward has none, and
    every gradient attack on it would fail — or, worse, search blindly."""
    x = x.clone().requires_grad_(True)
    with frozen(model), torch.enable_grad():
        with _model_phase(label, "a forward pass with gradients on (as the attack makes)"):
            logits = model(x)
        if not logits.requires_grad:
            raise InputError(f"{label}: its logits carry no gradient with respect to the input "
                             "(forward detaches them, runs under torch.no_grad(), or leaves autograd); "
                             "gradient attacks need one: remove the detach/no_grad from forward")
        with _model_phase(label, "the backward pass to the input (as the attack makes)"):
            torch.autograd.grad(logits.float().logsumexp(1).sum(), x)


def _model_phase(label: str, phase: str) -> AbstractContextManager[None]:
    """What the user's model raises inside the block, as one InputError naming the model and the
    phase; advcal's own errors pass through."""
    return foreign_errors_as_input(lambda error: f"{label}: {phase} raised {type(error).__name__}: "
                                                 f"{first_line(error)}")
