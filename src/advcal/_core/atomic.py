"""Atomic file writes: a reader never sees a half-written file, a crash leaves the old one.

A write goes to ``.NAME.XXXXXXXX.tmp`` beside ``NAME`` and is renamed over it. A kill between
the two leaves that temporary file behind; :func:`remove_stale_temporaries` recognises and
deletes them, and every command calls it on its outputs before it writes
(:func:`advcal.configs.check_config`).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

# What tempfile.mkstemp(prefix=".NAME.", suffix=".tmp") makes: eight characters between them.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete the temporary files interrupted atomic writes left in ``folder`` (only those of
    ``name`` when given) and return them. One advcal process writes a folder at a time: a
    temporary file found when it starts is a dead one's."""
    root = Path(folder)
    if not root.is_dir():
        return []
    stale = []
    for path in root.iterdir():
        found = _TEMPORARY.match(path.name)
        if found and (name is None or found.group("name") == name) and path.is_file():
            path.unlink(missing_ok=True)
            stale.append(path)
    return stale


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp makes the file private (0600); a report is an ordinary file: 0666 minus umask.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def write_json_atomic(path: str | os.PathLike, payload: object) -> Path:
    """Write ``payload`` as indented JSON (NaN and inf refused: they are not JSON)."""
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))
