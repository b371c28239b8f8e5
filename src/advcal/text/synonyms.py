"""Where word-substitution attacks get their replacement words.

A :class:`SynonymSource` maps a word to candidate replacements. Two are provided:

* :class:`WordNetSynonyms`: lemmas sharing a WordNet 3.0 synset with the word (PWWS's source),
  read from the Debian ``wordnet-base`` files with nltk's reader, no nltk download needed;
* :class:`EmbeddingNeighbours`: nearest neighbours in a model's own input-embedding space.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from advcal._core.errors import InputError, MissingDependencyError, describe
from advcal._core.validation import check_fraction, check_int
from advcal.text.words import is_word

DEFAULT_WORDNET_ROOT = "/usr/share/wordnet"
WORDNET_INSTALL_HINT = (
    "install WordNet 3.0 with `apt-get install wordnet-base` (it puts the files in "
    "/usr/share/wordnet) and nltk with `pip install nltk` (or `pip install advcal[text]`)"
)
_WORDNET_FILES = (
    "data.adj", "data.adv", "data.noun", "data.verb",
    "index.adj", "index.adv", "index.noun", "index.verb",
    "adj.exc", "adv.exc", "noun.exc", "verb.exc",
)
# WordNet 3.0's lexicographer files, in the order their numbers appear in the data files, with
# their syntactic category (1 noun, 2 verb, 3 adjective, 4 adverb). Debian's wordnet-base does
# not ship the ``lexnames`` file that nltk's reader insists on, so it is written from this table.
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def wordnet_lexnames() -> str:
    """The content of WordNet 3.0's ``lexnames`` file (45 lines: number, name, category)."""
    return "".join(
        f"{number:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for number, name in enumerate(_LEXNAMES)
    )


class SynonymSource(ABC):
    """Candidate replacements for a word.

    ``candidates(word)`` returns lower-case single words (no spaces, hyphens or underscores,
    so a replacement never changes a text's word count), without the word itself, in an order
    that depends only on the word.
    """

    name: ClassVar[str] = "synonyms"

    @abstractmethod
    def candidates(self, word: str) -> list[str]:
        """Replacement candidates for ``word`` (any case), best first where the source knows."""


# ---------------------------------------------------------------------------- WordNet
_wordnet_cache: dict[str, Any] = {}
_wordnet_lock = threading.Lock()


def _check_wordnet_files(root: Path) -> None:
    missing = [name for name in _WORDNET_FILES if not (root / name).is_file()]
    if missing:
        raise MissingDependencyError(
            f"root: WordNet files {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''} "
            f"are missing from {str(root)!r}; {WORDNET_INSTALL_HINT}"
        )


def load_wordnet(root: str | os.PathLike[str] = DEFAULT_WORDNET_ROOT) -> Any:
    """nltk's ``WordNetCorpusReader`` over the WordNet files in ``root``, once per process.

    nltk >= 3.10 only opens corpora under a folder on ``nltk.data.path`` and refuses symlinks
    and hard links, and the Debian files lack ``lexnames``; so the files are copied, with a
    ``lexnames`` written here, into a private temporary folder that is added to
    ``nltk.data.path`` and removed at exit. Loading takes a few seconds.
    """
    root_path = Path(root).resolve()
    key = str(root_path)
    with _wordnet_lock:
        if key in _wordnet_cache:
            return _wordnet_cache[key]
        _check_wordnet_files(root_path)
        try:
            import nltk
            from nltk.corpus.reader.wordnet import WordNetCorpusReader
        except ImportError as error:
            raise MissingDependencyError(f"WordNetSynonyms needs nltk: {WORDNET_INSTALL_HINT}") from error

        class _LocalWordNet(WordNetCorpusReader):
            def map_wn(self, version: str = "wordnet") -> None:
                # The base class maps synset ids to the "wordnet" corpus for multilingual data
                # (OMW), which would try to load nltk_data's own copy; English needs no map.
                return None

        folder = Path(tempfile.mkdtemp(prefix="advcal-wordnet-")).resolve()
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        corpus = folder / "wordnet"
        corpus.mkdir()
        for name in _WORDNET_FILES:
            shutil.copyfile(root_path / name, corpus / name)
        (corpus / "lexnames").write_text(wordnet_lexnames(), encoding="utf-8")
        if str(folder) not in nltk.data.path:
            nltk.data.path.append(str(folder))
        with warnings.catch_warnings():
            # "The multilingual functions are not available": expected, only English is used.
            warnings.simplefilter("ignore")
            reader = _LocalWordNet(str(corpus), None)
        _wordnet_cache[key] = reader
        return reader


def _wordnet_pos(pos: str) -> str:
    # Adjective satellites ("s") are adjectives for the part-of-speech filter.
    return "a" if pos == "s" else pos


class WordNetSynonyms(SynonymSource):
    """Synonyms from WordNet 3.0: the single-word lemmas of the word's synsets.

    Lookup goes through WordNet's ``morphy``, so an inflected word ("movies", "running") finds
    its lemma's synsets, and the lemma forms themselves ("movie", "run") are left out: they
    change the grammar, not the word. Part-of-speech filter: a candidate must come from a
    synset whose part of speech is one of the word's own WordNet parts of speech (adjective
    satellites count as adjectives); without a tagger this is what can be checked, and it keeps
    candidates of a noun-only word ("movie") to nouns even where a candidate ("film") has verb
    senses of its own.

    Args:
        root: folder holding WordNet's ``data.*``, ``index.*`` and ``*.exc`` files
            (``apt-get install wordnet-base`` puts them in /usr/share/wordnet).
        max_candidates: keep at most this many candidates per word (``None``: all).
    """

    name: ClassVar[str] = "wordnet"

    def __init__(
        self, root: str | os.PathLike[str] = DEFAULT_WORDNET_ROOT, max_candidates: int | None = None
    ) -> None:
        self.root = Path(root)
        # Fail here, not at the first word of an attack, when WordNet is not installed.
        _check_wordnet_files(self.root.resolve())
        self.max_candidates = (
            None if max_candidates is None else check_int(max_candidates, "max_candidates", 1)
        )
        self._cache: dict[str, list[str]] = {}

    def candidates(self, word: str) -> list[str]:
        """Single-word WordNet synonyms of ``word``, lower-case, in WordNet's sense order."""
        key = word.lower()
        if key not in self._cache:
            self._cache[key] = self._lookup(key)
        return list(self._cache[key])

    def parts_of_speech(self, word: str) -> set[str]:
        """The word's WordNet parts of speech (``n``, ``v``, ``a``, ``r``), via ``morphy``."""
        reader = load_wordnet(self.root)
        return {_wordnet_pos(synset.pos()) for synset in reader.synsets(word.lower())}

    def _lookup(self, word: str) -> list[str]:
        reader = load_wordnet(self.root)
        # synsets() runs morphy for every part of speech, so inflected forms reach their lemma.
        synsets = reader.synsets(word)
        own_pos = {_wordnet_pos(synset.pos()) for synset in synsets}
        lemma_forms = {word}
        for pos in own_pos:
            base = reader.morphy(word, pos)
            if base is not None:
                lemma_forms.add(base)
        out: list[str] = []
        seen = set(lemma_forms)
        for synset in synsets:
            if _wordnet_pos(synset.pos()) not in own_pos:
                continue
            for lemma in synset.lemma_names():
                candidate = lemma.lower()
                if candidate in seen or not is_word(candidate):
                    continue
                seen.add(candidate)
                out.append(candidate)
        return out if self.max_candidates is None else out[: self.max_candidates]


# ---------------------------------------------------------------------------- embeddings
def _is_whole_word(token: str) -> bool:
    # Subword pieces ("##ing"), special tokens ("[CLS]", "<s>") and anything with digits or
    # punctuation cannot stand in for a word.
    return bool(token) and not token.startswith(("##", "[", "<")) and token.isalpha()


class EmbeddingNeighbours(SynonymSource):
    """Nearest neighbours by cosine similarity in a model's input-embedding space.

    Only whole-word alphabetic vocabulary entries take part (no ``##`` subwords, no ``[CLS]``
    or ``<s>``-style special tokens, nothing with digits or punctuation). A word not in the
    vocabulary (checked as given, then lower-cased) has no neighbours. Ties in similarity go to
    the lower vocabulary index, so the order is deterministic.

    Args:
        embedding_matrix: ``(V, D)`` input embeddings, row ``i`` for ``vocabulary[i]``.
        vocabulary: the token string of each row.
        k: at most this many neighbours per word.
        min_cosine: only neighbours at least this similar, in (0, 1].
    """

    name: ClassVar[str] = "embedding"

    def __init__(
        self, embedding_matrix: torch.Tensor, vocabulary: list[str], k: int = 8, min_cosine: float = 0.5
    ) -> None:
        if not isinstance(embedding_matrix, torch.Tensor) or embedding_matrix.ndim != 2:
            raise InputError(
                f"embedding_matrix: expected a 2-D (V, D) tensor, got {describe(embedding_matrix)}"
            )
        if not embedding_matrix.is_floating_point() or not bool(torch.isfinite(embedding_matrix).all()):
            raise InputError("embedding_matrix: expected finite floating-point values")
        if not isinstance(vocabulary, list | tuple) or len(vocabulary) != embedding_matrix.shape[0]:
            raise InputError(
                f"vocabulary: expected a list of {embedding_matrix.shape[0]} token strings (one per "
                f"embedding row), got {describe(vocabulary)}"
            )
        self.k = check_int(k, "k", 1)
        self.min_cosine = check_fraction(min_cosine, "min_cosine", allow_one=True)
        rows = [i for i, token in enumerate(vocabulary) if isinstance(token, str) and _is_whole_word(token)]
        self._tokens = [str(vocabulary[i]) for i in rows]
        self._row_of: dict[str, int] = {}
        for position, token in enumerate(self._tokens):
            # First occurrence wins, so a cased vocabulary maps "good" to the entry "good".
            self._row_of.setdefault(token, position)
        for position, token in enumerate(self._tokens):
            self._row_of.setdefault(token.lower(), position)
        vectors = embedding_matrix.detach().to("cpu", torch.float32)[rows]
        # Zero rows stay zero (cosine 0 with everything) instead of dividing by zero.
        self._unit = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self._cache: dict[str, list[str]] = {}

    def candidates(self, word: str) -> list[str]:
        """Up to ``k`` vocabulary words nearest to ``word``, most similar first."""
        if word not in self._cache:
            self._cache[word] = self._lookup(word)
        return list(self._cache[word])

    def _lookup(self, word: str) -> list[str]:
        row = self._row_of.get(word, self._row_of.get(word.lower()))
        if row is None:
            return []
        similarity = (self._unit @ self._unit[row]).double().numpy()
        # A stable sort on the negated similarity keeps equal similarities in vocabulary order.
        order = np.argsort(-similarity, kind="stable")
        own = word.lower()
        out: list[str] = []
        for position in order:
            if similarity[position] < self.min_cosine or len(out) == self.k:
                break
            candidate = self._tokens[position].lower()
            if candidate != own and candidate not in out:
                out.append(candidate)
        return out
