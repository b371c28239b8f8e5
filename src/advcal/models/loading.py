"""Loading a model from a spec: a built-in name, ``package.module:factory`` or
``path/to/file.py:factory``, with optional weights and input normalisation.

Weights are read with safetensors, or — for a PyTorch state dict saved as ``.pt``/``.pth`` —
with ``torch.load(weights_only=True)``, which refuses pickled code (DESIGN invariant 5).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from advcal._core.errors import ConfigError, InputError, first_line, foreign_errors_as_input
from advcal._core.registry import Registry
from advcal._core.rng import torch_seeded
from advcal._core.tensor_files import check_tensors, read_state_dict
from advcal._core.user_code import register_user_code
from advcal.models.provenance import FACTORY, FILE, SHIPPED, record_origin
from advcal.models.reference import DigitsCNN, FashionCNN
from advcal.models.state import load_state
from advcal.models.wrappers import Normalized, TemperatureScaled

WEIGHTS_DIR = Path(__file__).parent / "weights"
# The seed of torch's generator while a user's factory builds its model (its initial weights).
FACTORY_SEED = 0


@dataclass(frozen=True)
class BuiltinModel:
    """A reference model shipped with advcal: its architecture, weights file and data."""

    factory: Callable[[], nn.Module]
    weights: str
    data: str
    description: str
    # Served at this temperature (logits divided by it after the weights are loaded): the
    # illusion-of-robustness demonstration models, whose predictions are digits-cnn's.
    temperature: float = 1.0


BUILTIN_MODELS: Registry[BuiltinModel] = Registry("built-in model")
for _name, _model in {
    "digits-cnn": BuiltinModel(DigitsCNN, "digits-cnn.safetensors", "digits",
                               "DigitsCNN, standard training"),
    "digits-cnn-at": BuiltinModel(DigitsCNN, "digits-cnn-at.safetensors", "digits",
                                  "DigitsCNN, PGD adversarial training"),
    "digits-cnn-cold": BuiltinModel(DigitsCNN, "digits-cnn.safetensors", "digits",
                                    "digits-cnn served at T = 0.001 (over-confident)", temperature=1e-3),
    "digits-cnn-hot": BuiltinModel(DigitsCNN, "digits-cnn.safetensors", "digits",
                                   "digits-cnn served at T = 10000 (under-confident)", temperature=1e4),
    "fashion-cnn": BuiltinModel(FashionCNN, "fashion-cnn.safetensors", "fashion-mnist",
                                "FashionCNN, standard training"),
    "fashion-cnn-at": BuiltinModel(FashionCNN, "fashion-cnn-at.safetensors", "fashion-mnist",
                                   "FashionCNN, PGD adversarial training"),
}.items():
    BUILTIN_MODELS.add(_name, _model, f"{_model.description}; data: {_model.data}")


def load_model(
    spec: str,
    weights: str | Path | None = None,
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
) -> nn.Module:
    """The model named by ``spec``, in eval mode.

    Args:
        spec: a built-in name (``digits-cnn``, ``digits-cnn-at``), ``package.module:factory``
            or ``path/to/file.py:factory``; the factory is called without arguments and must
            return an ``nn.Module`` that outputs logits.
        weights: a ``.safetensors`` file or a ``.pt``/``.pth`` state dict (read with
            ``weights_only=True``); built-in models load their shipped weights by default. A
            factory's model without ``weights`` keeps the weights its factory returns — random
            ones unless it loads its own — and the audit's report says so.
        normalize: ``(mean, std)`` per channel when the model expects normalised inputs; the
            returned model then takes [0, 1] inputs (:class:`~advcal.models.Normalized`).
    """
    temperature = 1.0
    source = FILE if weights is not None else FACTORY
    # Building draws initial weights from torch's global generator: the caller's random state
    # is theirs, so it is restored (the weights drawn are the same as without the fork).
    with torch.random.fork_rng(devices=[]):
        model = BUILTIN_MODELS[spec].factory() if spec in BUILTIN_MODELS else _from_factory(spec)
    if spec in BUILTIN_MODELS:
        builtin = BUILTIN_MODELS[spec]
        if weights is None:
            weights, source = WEIGHTS_DIR / builtin.weights, SHIPPED
        temperature = builtin.temperature
    if weights is not None:
        load_weights(model, weights)
    if temperature != 1.0:
        model = TemperatureScaled(model, temperature)
    if normalize is not None:
        model = Normalized(model, *normalize)
    # The report says where the weights came from (advcal.models.provenance).
    record_origin(model, spec, weights if source == FILE else None, source)
    return model.eval()


def new_model(spec: str) -> nn.Module:
    """A freshly initialised model of architecture ``spec``: a built-in name (its architecture,
    not its weights) or ``package.module:factory`` / ``path/to/file.py:factory``."""
    return BUILTIN_MODELS[spec].factory() if spec in BUILTIN_MODELS else _from_factory(spec)


def _from_factory(spec: str) -> nn.Module:
    target, sep, attribute = spec.rpartition(":")
    if not sep or not target or not attribute:
        known = ", ".join(BUILTIN_MODELS)
        raise ConfigError(
            f"model: {spec!r} is neither a built-in model ({known}) nor 'package.module:factory' "
            "or 'path/to/file.py:factory'"
        )
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise InputError(f"model: {path} does not exist")
        module_spec = importlib.util.spec_from_file_location(f"advcal_user_model_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        # The user's code runs here: whatever it raises (a syntax error, a missing import) is
        # reported as the import of their model failing, in one line.
        with _phase(spec, "importing", target):
            module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as error:
            if error.name is None or not target.startswith(error.name):
                raise InputError(_failed(spec, "importing", target, error)) from None
            raise InputError(f"model: cannot import {target!r}: {error}") from None
        except Exception as error:
            raise InputError(_failed(spec, "importing", target, error)) from None
    register_user_code(getattr(module, "__file__", None), spec)  # its errors, later, are the model's
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise InputError(f"model: {target!r} has no callable {attribute!r}")
    # A factory draws its initial weights from torch's global generator: drawn from a fixed seed
    # in a forked generator, the same spec gives the same model on every run, and the caller's
    # random state is left alone.
    with _phase(spec, "building the model with", f"{attribute}()"), torch_seeded(FACTORY_SEED):
        model = factory()
    if not isinstance(model, nn.Module):
        raise InputError(
            f"model: {spec} returned {type(model).__name__}, expected a torch.nn.Module"
        )
    return model


def _phase(spec: str, doing: str, what: str) -> AbstractContextManager[None]:
    """Whatever the user's code raises inside the block, as one InputError naming the spec and
    what advcal was doing; advcal's own errors pass through."""
    return foreign_errors_as_input(lambda error: _failed(spec, doing, what, error))


def _failed(spec: str, doing: str, what: str, error: BaseException) -> str:
    if isinstance(error, SyntaxError):
        message = f"{error.msg} ({Path(error.filename or '?').name}, line {error.lineno})"
    else:
        message = first_line(error)
    return f"model {spec}: {doing} {what} failed: {type(error).__name__}: {message}"


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a state dict from ``path`` into ``model`` (strict: every key must match, tied
    weights may be stored once: :func:`~advcal.models.state.load_state`)."""
    path = Path(path)
    state = check_tensors(read_state_dict(path, "weights"), path, "weights")
    try:
        load_state(model, state)
    except RuntimeError as error:
        raise InputError(f"weights: {path.name} does not fit the model: {first_line(error)}") from None


def parse_normalize(text: str) -> tuple[list[float], list[float]]:
    """``"MEAN,STD"`` or ``"M1,M2,M3,S1,S2,S3"`` (per channel) as ``(mean, std)``."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"normalize: expected comma-separated numbers MEAN,STD, got {text!r}") from None
    if len(values) < 2 or len(values) % 2:
        raise InputError(
            f"normalize: expected MEAN,STD or per-channel means then stds (an even count), got {text!r}"
        )
    half = len(values) // 2
    if not all(math.isfinite(v) for v in values) or any(v <= 0 for v in values[half:]):
        raise InputError(f"normalize: expected finite means and positive finite stds, got {text!r}")
    return values[:half], values[half:]
