"""open_clip models from local files: an architecture name, a weights file, class names.

Nothing is downloaded: ``open_clip.create_model(arch, pretrained=None)`` builds the architecture
with random weights, and the user's checkpoint (safetensors, or a state dict read with
``torch.load(weights_only=True)``) replaces them. ``advcal-tiny`` is a small architecture shipped
with advcal (2-layer towers of width 32, 16×16 images) for tests and demonstrations; it runs
through exactly the path a ViT-B/32 checkpoint does.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from advcal._core.errors import ConfigError, InputError, MissingDependencyError
from advcal._core.rng import torch_seeded
from advcal._core.tensor_files import check_tensors, read_state_dict
from advcal._core.torchvision_compat import ensure_torchvision_importable
from advcal.clip.zeroshot import DEFAULT_TEMPLATES, ZeroShotClassifier
from advcal.models.state import load_state

# advcal's own architecture configs (advcal-tiny.json), registered with open_clip on first use.
CONFIGS = Path(__file__).parent / "configs"
TINY = "advcal-tiny"
# Named first when an architecture is unknown: the ones users most likely meant.
FAMILIAR = ("ViT-B-32", "ViT-B-16", "ViT-L-14", "RN50")


def open_clip_module() -> ModuleType:
    """``open_clip`` with advcal's architectures registered, or a clear error saying how to install it."""
    ensure_torchvision_importable()  # open_clip imports torchvision
    try:
        import open_clip
    except ImportError as error:
        raise MissingDependencyError(
            f"clip: open_clip does not import ({error}); install it with `pip install open-clip-torch` "
            "(or `pip install 'advcal[clip]'`)"
        ) from None
    if TINY not in open_clip.list_models():
        open_clip.add_model_config(CONFIGS)
    return open_clip


def _tokenizer(open_clip: ModuleType, arch: str) -> Callable[[list[str]], torch.Tensor]:
    return open_clip.get_tokenizer(arch)  # CLIP's BPE vocabulary ships inside open_clip


@contextmanager
def _quiet() -> Iterator[None]:
    """open_clip warns that it loaded no pretrained weights: advcal loads the user's right after."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def tiny_clip(seed: int = 0) -> tuple[nn.Module, Callable[[list[str]], torch.Tensor]]:
    """The ``advcal-tiny`` CLIP with weights drawn from ``seed`` (global RNG untouched), and its tokenizer."""
    open_clip = open_clip_module()
    with torch_seeded(seed):
        with _quiet():
            model = open_clip.create_model(TINY, pretrained=None, pretrained_text=False)
    return model.eval(), _tokenizer(open_clip, TINY)


def read_class_names(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a text file, one per line (blank lines ignored)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"classes: {path} does not exist; expected a text file with one class name per line")
    names = [line.strip() for line in path.read_text("utf-8").splitlines() if line.strip()]
    if len(names) < 2:
        raise InputError(f"classes: {path} holds {len(names)} class names, expected at least 2, one per line")
    return names


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    state = read_state_dict(path, "weights", torch_suffixes=(".pt", ".pth", ".bin"))
    state = state.get("state_dict", state)  # a training checkpoint's model part
    if not isinstance(state, dict):
        raise InputError(f"weights: {path} holds a {type(state).__name__} under 'state_dict', "
                         "expected a state dict")
    return check_tensors(state, path, "weights")


def _clip_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CLIP state dict from a CLIP checkpoint, a ZeroShotClassifier's (``advcal train`` writes
    those: the CLIP under ``model.``) or a DataParallel one (``module.``)."""
    if "prototypes" in state:
        state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_clip(
    arch: str,
    weights: str | os.PathLike[str] | None = None,
    *,
    classes: Sequence[str] | str | os.PathLike[str] | None,
    templates: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
) -> ZeroShotClassifier:
    """A zero-shot classifier from the open_clip architecture ``arch`` and a local checkpoint.

    Args:
        arch: an open_clip architecture name (``ViT-B-32``, ... or ``advcal-tiny``).
        weights: the checkpoint; ``None`` keeps random weights (for tests only).
        classes: class names, or a text file of them (one per line).
        templates: prompt templates (default ``"This is a photo of a {}"``).
        device: where the model lives.
    """
    if classes is None:
        raise ConfigError("classes: a zero-shot CLIP classifier needs class names (--classes FILE)")
    names = read_class_names(classes) if isinstance(classes, (str, os.PathLike)) else list(classes)
    open_clip = open_clip_module()
    if ":" in arch:  # hf-hub:..., local-dir:...: open_clip would fetch or read a whole model folder
        raise ConfigError(f"arch: {arch!r} names a remote or schema'd model; advcal loads only local "
                          "weights: pass an architecture name (e.g. ViT-B-32) and a weights file")
    known = open_clip.list_models()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=3)
        examples = [name for name in FAMILIAR if name in known] + [TINY]
        raise ConfigError(f"arch: unknown open_clip architecture {arch!r}"
                          + (f" (did you mean {', '.join(close)}?)" if close else "")
                          + f"; expected one of open_clip.list_models() ({len(known)} names), "
                          f"e.g. {', '.join(examples)}")
    with _quiet():
        model = open_clip.create_model(arch, pretrained=None, pretrained_text=False)
    if weights is not None:
        try:
            load_state(model, _clip_state(_read_weights(Path(weights))))
        except RuntimeError as error:
            first = str(error).splitlines()[0]
            raise InputError(f"weights: {Path(weights).name} does not fit {arch}: {first}") from None
    tokenizer = _tokenizer(open_clip, arch)
    return ZeroShotClassifier(model.eval(), tokenizer, names, templates or DEFAULT_TEMPLATES).to(device)
