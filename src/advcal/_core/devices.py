"""Choosing the torch device an audit runs on, with a clear error when it is not there."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from advcal._core.errors import ConfigError, InputError

_EXPECTED = "expected cpu, cuda, cuda:N, mps or auto"


def resolve_device(spec: str | torch.device) -> torch.device:
    """The device named by ``spec``; ``auto`` picks CUDA, then Apple's MPS, then the CPU."""
    text = str(spec).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ConfigError(f"device: {_EXPECTED}, got {spec!r}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device: {_EXPECTED}, got {spec!r}, but CUDA is not available here")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device: {_EXPECTED}, got {spec!r}, but only {count} CUDA devices exist")
    elif device.type == "mps":
        if not _mps_available():
            raise ConfigError(f"device: {_EXPECTED}, got {spec!r}, but MPS is not available here")
    elif device.type != "cpu":
        raise ConfigError(f"device: {_EXPECTED}, got {spec!r}")
    return device


def module_device(module: torch.nn.Module) -> torch.device:
    """Where ``module`` lives: the device of its first parameter or buffer (CPU if none)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def single_device(module: torch.nn.Module, name: str) -> torch.device:
    """The one device all of ``module``'s parameters and buffers are on, or an InputError naming
    ``name`` and the devices (a model split over devices, or one left on the meta device, whose
    tensors hold no values, cannot be evaluated as one)."""
    devices = sorted({str(t.device) for t in (*module.parameters(), *module.buffers())})
    if "meta" in devices:
        raise InputError(f"{name}: has tensors on the meta device (no values): materialise its weights "
                         "first (model.to_empty(device='cpu') then load_state_dict)")
    if len(devices) > 1:
        raise InputError(f"{name}: its tensors are on several devices ({', '.join(devices)}); expected one "
                         "device: move the model with model.to(device)")
    return torch.device(devices[0]) if devices else torch.device("cpu")


def check_same_device(tensor: torch.Tensor, name: str, device: torch.device, where: str) -> None:
    """An InputError naming ``name`` unless ``tensor`` is on ``device`` (where ``where`` is)."""
    if tensor.device.type == "meta":
        raise InputError(f"{name}: is on the meta device (a tensor without values)")
    if tensor.device != device:
        raise InputError(f"{name}: is on {tensor.device}, but {where} is on {device}; "
                         f"move it with .to({str(device)!r})")


@contextmanager
def placed(module: torch.nn.Module, device: torch.device | None) -> Iterator[torch.nn.Module]:
    """``module`` moved to ``device`` (None: where it is) for the block, then moved back home."""
    home = module_device(module)
    try:
        yield module.to(device or home)
    finally:
        module.to(home)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def physical_memory() -> float:
    """This machine's physical memory in bytes (infinite where the system does not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return math.inf
