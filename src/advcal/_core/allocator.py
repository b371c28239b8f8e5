"""Keep freed memory in the process, so torch's CPU passes do not fault it back in.

glibc's malloc serves large blocks (a batch's activations and gradients) with fresh ``mmap``
pages and returns freed heap tops to the system. Every forward and backward pass then faults
its buffers in again, page by page: on the Fashion-MNIST audit (``advcal audit --model
fashion-cnn --model fashion-cnn-at --data fashion-mnist --limit 256``) that was 0.5 to 5.7
million page faults per run, 1.4 to 13 s of system time and 17.7 to 25.6 s of wall time for
the same command. Told to keep what it frees (no ``mmap`` for large blocks, no trimming),
malloc hands the same pages back on the next pass: about 140 thousand faults, 0.6 s of system
time and 15.8 to 17.5 s, for about 10% more peak memory. (jemalloc or tcmalloc, as PyTorch's
CPU tuning guide suggests, do the same from outside the process.)

This changes how the whole process allocates, so advcal's command line does it when it starts
(it owns its process), and the Python API never does it unasked.
"""

from __future__ import annotations

import ctypes
import os

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of freed heap top (mallopt takes an int)
_TOP_PAD = 64 << 20  # grow the heap 64 MiB at a time: fewer brk calls

OPT_OUT = "ADVCAL_MALLOC"


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse; True if it now does.

    Does nothing (and returns False) off glibc, when ``ADVCAL_MALLOC=system`` is set, or when
    the user tunes malloc through glibc's own ``MALLOC_*`` variables. Call it once, early: it
    holds for the rest of the process.
    """
    if os.environ.get(OPT_OUT, "").lower() == "system":
        return False
    if any(name.startswith("MALLOC_") for name in os.environ):
        return False
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):  # (TypeError: platforms without a process-wide library handle)
        return False
    # glibc only: other C libraries' mallopt takes other parameters, or is absent.
    if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(parameter, value) == 1 for parameter, value in (
        (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD), (_M_TOP_PAD, _TOP_PAD)))
