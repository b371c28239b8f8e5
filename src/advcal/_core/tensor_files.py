"""Reading tensors from users' files: safetensors, or a PyTorch state dict saved as ``.pt``.

advcal never unpickles a user's objects (DESIGN invariant 5): ``.pt`` files are read with
``torch.load(weights_only=True)``, and when that fails the message says what file was expected
and how to make one — never torch's advice to load with ``weights_only=False``.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from advcal._core.errors import InputError, first_line

HOW_TO_SAVE = ("expected a state dict saved with torch.save(model.state_dict(), PATH), or a .safetensors "
               "file saved with safetensors.torch.save_file(model.state_dict(), PATH)")


def read_safetensors(path: str | Path, argument: str, framework: str = "pt",
                     expected: str = HOW_TO_SAVE) -> dict:
    """The tensors of the safetensors file ``path`` (torch tensors, or numpy arrays with
    ``framework="np"``); a file that is not safetensors is an InputError naming ``argument``
    and saying what was ``expected``."""
    path = Path(path)
    _require_file(path, argument)
    if framework == "np":
        from safetensors.numpy import load_file
    else:
        from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except Exception as error:  # SafetensorError (a bare Exception subclass), or OSError
        raise _not_safetensors(path, argument, expected, error) from None


def read_safetensors_metadata(path: str | Path, argument: str, expected: str = HOW_TO_SAVE) -> dict[str, str]:
    """The string metadata in the header of the safetensors file ``path`` (empty when none),
    with the errors of :func:`read_safetensors`."""
    from safetensors import safe_open

    path = Path(path)
    _require_file(path, argument)
    try:
        with safe_open(str(path), framework="np") as handle:
            return dict(handle.metadata() or {})
    except Exception as error:  # SafetensorError (a bare Exception subclass), or OSError
        raise _not_safetensors(path, argument, expected, error) from None


def _not_safetensors(path: Path, argument: str, expected: str, error: Exception) -> InputError:
    reason = first_line(error) or type(error).__name__
    return InputError(f"{argument}: {path} is not a readable safetensors file ({reason}); {expected}")


def read_state_dict(path: str | Path, argument: str,
                    torch_suffixes: Collection[str] = (".pt", ".pth")) -> dict:
    """A state dict (names to tensors) from ``path``: a ``.safetensors`` file, or one of
    ``torch_suffixes`` read with ``torch.load(weights_only=True)``. Anything else — another
    suffix, a pickle, random bytes, a truncated file, values that are not tensors — is an
    InputError naming ``argument`` and saying how to make the expected file."""
    import torch

    path = Path(path)
    _require_file(path, argument)
    if path.suffix == ".safetensors":
        return read_safetensors(path, argument)
    if path.suffix not in torch_suffixes:
        kinds = ", ".join((".safetensors", *torch_suffixes))
        raise InputError(f"{argument}: expected a {kinds} file, got {path.name!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InputError(f"{argument}: cannot read {path} ({_why_torch_load_failed(error)}); "
                         f"{HOW_TO_SAVE}") from None
    if not isinstance(state, dict):
        raise InputError(f"{argument}: {path} holds a {type(state).__name__}; {HOW_TO_SAVE}")
    return state


def check_tensors(state: dict, path: str | Path, argument: str) -> dict:
    """``state`` itself if every key is a string and every value a finite tensor, else an
    InputError naming the first offending entry."""
    import torch

    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise InputError(f"{argument}: {path} holds a {type(value).__name__} under {key!r}, not a "
                             f"tensor; {HOW_TO_SAVE}")
        # A model with NaN weights answers NaN for everything: name the file, not the first forward.
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise InputError(f"{argument}: {path} holds NaN or inf values in {key!r}; expected finite "
                             "weights (did the training that saved them diverge?)")
    return state


def _require_file(path: Path, argument: str) -> None:
    if not path.is_file():
        raise InputError(f"{argument}: {path} does not exist or is not a file")


def _why_torch_load_failed(error: BaseException) -> str:
    """torch's reason in a few plain words, without its advice to unpickle arbitrary code."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it holds pickled Python objects, not only tensors: {found.group(1)}"
    if "zip" in text.lower() or "central directory" in text.lower() or isinstance(error, EOFError):
        return "it is truncated or not written by torch.save"
    return "it is not written by torch.save"
