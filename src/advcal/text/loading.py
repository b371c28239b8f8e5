"""Text models and data from the specs users type: ``hf:DIR``, ``csv:PATH``, ``jsonl:PATH``, ``tweets``.

Kept free of heavy imports (transformers, nltk load inside the functions), because the CLI asks
:func:`is_text_audit` on every audit, text or not.
"""

from __future__ import annotations

import numpy as np

from advcal._core.errors import ConfigError, InputError

TEXT_DATA_KINDS = ("csv", "jsonl", "tweets")
TEXT_SPLITS = ("train", "calibration", "test", "all")


def is_text_audit(model_specs: list[str], data_spec: str | None) -> bool:
    """Whether these ``--model`` / ``--data`` specs ask for a text audit (refusing a mixture)."""
    from advcal.text.reference import BUILTIN_TEXT_MODELS

    text_models = [spec for spec in model_specs if spec.startswith("hf:") or spec in BUILTIN_TEXT_MODELS]
    text_data = data_spec is not None and data_spec.split(":", 1)[0] in TEXT_DATA_KINDS
    if text_models and len(text_models) != len(model_specs):
        raise ConfigError(f"model: text classifiers ({', '.join(text_models)}) and image models "
                          "cannot be audited together")
    if text_models and data_spec is None:
        raise ConfigError("data: a text classifier needs text data; pass --data csv:PATH, jsonl:PATH "
                          "or tweets")
    if text_data and model_specs and not text_models:
        raise ConfigError(f"model: {data_spec} is text data; expected text classifiers (--model hf:DIR)")
    if text_data and not model_specs:
        raise ConfigError(f"model: {data_spec} is text data; pass --model hf:DIR (a local Hugging Face "
                          "sequence classifier) or tweets-minilm")
    return bool(text_models) or text_data


def load_text_model(spec: str, max_length: int = 128, weights: str | None = None):  # -> TextClassifier
    """The text classifier named by ``spec``: ``hf:DIR`` (a local Hugging Face sequence
    classifier) or a built-in name (``tweets-minilm`` and its ``-cold`` / ``-hot`` variants).

    ``weights`` replaces a built-in model's whole state (a safetensors file or a ``.pt`` state
    dict, as ``advcal train`` writes after fine-tuning it); an ``hf:`` folder carries its own.
    """
    from advcal.models.loading import load_weights
    from advcal.text.models import from_hf
    from advcal.text.reference import BUILTIN_TEXT_MODELS, tweets_minilm

    if spec in BUILTIN_TEXT_MODELS:
        model = tweets_minilm(temperature=BUILTIN_TEXT_MODELS[spec])
        if weights is not None:
            load_weights(model, weights)
        return model
    kind, sep, path = spec.partition(":")
    if kind != "hf" or not sep or not path:
        raise ConfigError(f"model: expected hf:DIR (a local Hugging Face sequence classifier) or one of "
                          f"{', '.join(BUILTIN_TEXT_MODELS)}, got {spec!r}")
    if weights is not None:
        raise ConfigError(f"weights: {spec} is a Hugging Face folder and carries its own weights; "
                          "expected no --weights")
    return from_hf(path, max_length=max_length)


def default_text_split(spec: str) -> str:
    """``all`` for a user's own file (``csv:``, ``jsonl:``), ``test`` for the built-in ``tweets``."""
    return "test" if spec.split(":", 1)[0] == "tweets" else "all"


def load_text_data(spec: str, split: str | None = None, limit: int | None = None, text_column: str = "text",
                   label_column: str = "label"):  # -> TextDataset (lazy import)
    """``split`` of the texts named by ``spec`` (``csv:PATH``, ``jsonl:PATH`` or ``tweets``).

    ``train``, ``calibration`` and ``test`` are the fixed stratified 60/20/20 split of
    :func:`advcal.text.split_text_dataset` (seed 0), ``all`` every row; by default a user's own
    file is read whole and ``tweets`` gives its test split (:func:`default_text_split`). ``limit``
    keeps the first N of a stratified order, so a small look still holds every class.
    """
    from advcal.data.splits import stratified_order
    from advcal.text.data import parse_text_source, split_text_dataset

    if split is None:
        split = default_text_split(spec)
    if split not in TEXT_SPLITS:
        raise InputError(f"split: expected one of {', '.join(TEXT_SPLITS)}, got {split!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"limit: expected a positive integer, got {limit!r}")
    data = parse_text_source(spec, text_column=text_column, label_column=label_column)
    if split != "all":
        data = split_text_dataset(data, seed=0)[split]
    if limit is not None and limit < len(data):
        data = data.subset(np.sort(stratified_order(data.labels)[:limit]))
    return data
