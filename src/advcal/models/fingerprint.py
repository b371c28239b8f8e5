"""A model's fingerprint: which weights made an adversarial set, which weights are audited."""

from __future__ import annotations

import hashlib

import numpy as np
from torch import nn


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 (hex) of the model's class name and every state-dict entry (name, dtype, shape, bytes).

    Parameters and buffers (BatchNorm statistics, normalisation constants) are hashed in name
    order as little-endian bytes, so the same weights give the same fingerprint on every
    machine and device; any change to any weight changes it.
    """
    digest = hashlib.sha256(f"advcal.model\0{type(model).__qualname__}\0".encode())
    for name, tensor in sorted(model.state_dict().items()):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}\0{array.dtype.str}\0{tuple(array.shape)}\0".encode())
        digest.update(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes())
    return digest.hexdigest()
