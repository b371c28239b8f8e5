"""Reading saved scores and labels from ``.npz`` or ``.safetensors`` files (never pickle).

A file holds one score matrix under a key that says what it is — ``logits``, ``probs`` or
``log_probs`` — and the labels under ``labels`` (or ``y``); optionally sample indices under
``index``.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from advcal._core.errors import InputError
from advcal._core.tensor_files import read_safetensors

SCORE_KEYS = ("logits", "probs", "log_probs")
SAVE_SCORES = ("expected scores and labels saved with safetensors.numpy.save_file(PATH, {\"logits\": ..., "
               "\"labels\": ...}) or numpy.savez")
LABEL_KEYS = ("labels", "y")


@dataclass
class ScoresFile:
    """The arrays of a scores file and the kind of its scores."""

    scores: np.ndarray
    labels: np.ndarray
    inputs: str
    index: np.ndarray | None = None


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(f"file: {path} does not exist or is not a file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, RuntimeError) as error:
        raise InputError(f"file: cannot read {path} as {suffix}: {error}") from None
    if suffix == ".safetensors":
        return read_safetensors(path, "file", framework="np", expected=SAVE_SCORES)
    raise InputError(f"file: expected a .npz or .safetensors file, got {path.name!r}")


def read_scores_file(path: str | Path, scores_key: str | None = None) -> ScoresFile:
    """Read scores, labels and optional indices from ``path``.

    The kind of the scores (logits, probabilities or log-probabilities) is the name of the
    key they are stored under; ``scores_key`` picks one explicitly.
    """
    path = Path(path)
    arrays = _load_arrays(path)
    available = ", ".join(sorted(arrays)) or "none"
    keys = [scores_key] if scores_key else [k for k in SCORE_KEYS if k in arrays]
    if not keys or keys[0] not in arrays:
        raise InputError(
            f"file: {path.name} has no score array under "
            f"{scores_key or ' or '.join(SCORE_KEYS)!r}; arrays found: {available}"
        )
    if len(keys) > 1:
        raise InputError(
            f"file: {path.name} holds several score arrays ({', '.join(keys)}); "
            "choose one with --scores-key"
        )
    label_key = next((k for k in LABEL_KEYS if k in arrays), None)
    if label_key is None:
        raise InputError(
            f"file: {path.name} has no labels under 'labels' or 'y'; arrays found: {available}"
        )
    kind = keys[0] if keys[0] in SCORE_KEYS else "logits"
    return ScoresFile(arrays[keys[0]], arrays[label_key], kind, arrays.get("index"))
