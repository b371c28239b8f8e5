"""Reading the idx format of (Fashion-)MNIST: a big-endian header, then unsigned bytes.

An idx file starts with a magic number — two zero bytes, a type byte (0x08: unsigned byte) and
the number of dimensions — then one 32-bit big-endian size per dimension, then the data. Files
are read whole (gzip-compressed when the name ends in ``.gz``) and checked byte for byte, so a
truncated download fails here with the file's name rather than later as a bad reshape.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from advcal._core.errors import InputError

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (count, rows, cols)
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (count)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:  # bad gzip header, cut-off stream, bad CRC
        raise InputError(f"{path}: cannot read the file (corrupt or truncated?): {error}") from None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array stored in the idx file ``path``, whose magic number must be ``magic``."""
    data = _read_bytes(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise InputError(f"{path}: truncated: {len(data)} bytes, shorter than its {header}-byte idx header")
    found, *shape = struct.unpack(f">I{ndim}I", data[:header])
    if found != magic:
        what = "images" if magic == IMAGES_MAGIC else "labels"
        raise InputError(f"{path}: magic number {found}, expected {magic} (an idx file of {what})")
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing bytes"
        raise InputError(
            f"{path}: {problem}: {len(data)} bytes, expected {expected} for a header of shape {tuple(shape)}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
