"""Score-based black-box attacks on text classifiers: character edits and word substitutions.

The classifier is any callable from a list of texts to a ``(n, classes)`` tensor of logits
(:class:`TextClassifierLike`): a bag-of-words model, a Hugging Face pipeline wrapped in a
lambda, a remote API. The attacks only read its scores.

Both attacks work one sample at a time (texts differ in length) and score the candidate texts
of a sample in batched calls. Shared conventions:

* **queries**: each text scored counts as one query of that sample, the clean text included;
  a sample never costs more than ``query_budget`` (a batch that would overshoot is cut);
* **change cap**: at most ``max_change_fraction`` of a text's words change (at least one word
  when the text has any word that is not a stop-word); stop-words are never touched;
* **word importance**: the drop in the true-class probability when the word is deleted (its
  characters removed, the separators around it kept), as in DeepWordBug's "replace-1" score
  with deletion rather than an unknown token, because a black-box text model has no
  vocabulary advcal could name an unknown token from;
* **temperature**: ``loss_temperature`` divides the logits before the softmax whose
  true-class probability drives every scoring decision, which is how a temperature correction
  (e.g. from :mod:`advcal.analyses.illusion`) reaches the attack; success is the raw argmax, which no
  temperature changes. Comparisons use the float64 log-odds of that probability, which order
  texts exactly as the probability does but do not round to 0, 1 or 1/C at extreme
  temperatures, so nothing saturates into ties or NaN (for two classes the ranking is then
  the same at every temperature; PWWS's saliency-weighted scores still depend on it);
* **greedy steps**: a candidate is taken if it flips the prediction (the flipping candidate
  with the lowest true-class probability) or else if it lowers the true-class probability;
  an edit that does not help is not made, so it does not use up the change cap;
* **randomness**: only :class:`CharacterAttack` draws random numbers, from a generator keyed
  on ``(seed, index[i])`` (:func:`advcal._core.rng.sample_keys`), so a sample's result does not
  depend on the batch it is in, and no global random state is touched.

A sample the classifier already gets wrong is not attacked: its perturbed text is the
original, and it counts as a success (success means the final prediction differs from the
label, as for the image attacks).
"""

from __future__ import annotations

import math
import string
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from advcal._core.contract import check_labels
from advcal._core.errors import InputError, describe
from advcal._core.rng import sample_keys
from advcal._core.validation import check_choice, check_fraction, check_int, check_positive, check_seed
from advcal.models.guard import check_logits
from advcal.text.synonyms import SynonymSource, WordNetSynonyms
from advcal.text.words import WordSpans, is_stop_word, is_word


@runtime_checkable
class TextClassifierLike(Protocol):
    """Anything that maps a list of texts to a ``(len(texts), classes)`` tensor of logits."""

    def __call__(self, texts: list[str]) -> torch.Tensor:
        """Logits of each text."""
        ...


@dataclass
class TextAttackResult:
    """One text attack on a batch of texts.

    Attributes:
        original: the texts attacked.
        perturbed: the adversarial texts (the original where nothing was changed).
        logits: the classifier's logits at ``perturbed``.
        clean_logits: the classifier's logits at ``original``.
        success: per sample, whether the final prediction differs from the label.
        queries: per sample, the number of texts scored (clean text included).
        changed_words: per sample, the number of words changed.
        labels: the labels the attack was run with.
        index: the sample indices the randomness was keyed on.
        attack: the attack's name.
        params: every setting of the attack, JSON-ready.
    """

    original: list[str]
    perturbed: list[str]
    logits: torch.Tensor
    clean_logits: torch.Tensor
    success: torch.Tensor
    queries: torch.Tensor
    changed_words: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor
    attack: str = ""
    params: dict[str, object] = field(default_factory=dict)

    @property
    def robust_accuracy(self) -> float:
        """Fraction of samples the classifier still classifies correctly after the attack."""
        return float((self.logits.argmax(1) == self.labels).float().mean())


SCORES = ("probability", "logit")


class _Scorer:
    """Scores texts of one sample with the classifier, counting queries against the budget."""

    def __init__(
        self, classifier: TextClassifierLike, label: int, temperature: float, budget: int, batch_size: int,
        scores: str,
    ) -> None:
        self.scores = scores
        self.classifier = classifier
        self.label = label
        self.temperature = temperature
        self.remaining = budget
        self.used = 0
        self.batch_size = batch_size
        self.n_classes: int | None = None

    def score(self, texts: list[str]) -> tuple[np.ndarray, torch.Tensor]:
        """True-class log-odds (at the temperature) and logits of ``texts``.

        The log-odds ``log p_y - log(1 - p_y)`` rank texts exactly as the true-class probability
        does, but stay distinct where the probability rounds to 0 or 1 (a tiny temperature) or
        to 1/C (a huge one), so no comparison degenerates or gives NaN. Only the first
        ``remaining`` texts are scored when the budget cannot cover them all, so the outputs may
        be shorter than ``texts``.
        """
        texts = texts[: self.remaining]
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start:start + self.batch_size]
            with torch.no_grad():
                output = self.classifier(batch)
            logits = check_logits(output, len(batch), "classifier").detach().cpu()
            if self.n_classes is None:
                self.n_classes = logits.shape[1]
                if self.label >= self.n_classes:
                    raise InputError(
                        f"labels: class index {self.label} is out of range for a classifier with "
                        f"{self.n_classes} outputs"
                    )
            elif logits.shape[1] != self.n_classes:
                raise InputError(
                    f"classifier: returned {logits.shape[1]} classes after {self.n_classes} earlier"
                )
            chunks.append(logits)
        self.used += len(texts)
        self.remaining -= len(texts)
        if not chunks:
            return np.zeros(0), torch.zeros(0, self.n_classes or 2)
        logits = torch.cat(chunks)
        if self.scores == "probability":
            # The attacker sees float32 probabilities only: log-odds of the *rounded* value, so
            # a saturated probability (exactly 1 or 0) gives ±inf and ties, as it would in an API.
            p = (logits.float() / self.temperature).softmax(1)[:, self.label].double()
            with np.errstate(divide="ignore"):
                return (torch.log(p) - torch.log1p(-p)).numpy(), logits
        scaled = logits.double() / self.temperature
        others = torch.cat([scaled[:, : self.label], scaled[:, self.label + 1:]], dim=1)
        log_odds = scaled[:, self.label] - torch.logsumexp(others, dim=1)
        return log_odds.numpy(), logits


def _probability(log_odds: np.ndarray | float) -> np.ndarray:
    """The true-class probability from its log-odds (a stable logistic function)."""
    return torch.sigmoid(torch.as_tensor(log_odds, dtype=torch.float64)).numpy()


@dataclass
class _State:
    """A sample's current perturbation during the greedy search."""

    spans: WordSpans
    label: int
    log_odds: float
    logits: torch.Tensor
    changes: dict[int, str] = field(default_factory=dict)

    @property
    def fooled(self) -> bool:
        return int(self.logits.argmax()) != self.label

    def text_with(self, position: int, word: str) -> str:
        return self.spans.replace_many({**self.changes, position: word})


class TextAttack(ABC):
    """What the text attacks share: checks, budgets, the change cap, word importance.

    Args:
        query_budget: most texts scored per sample, the clean text included.
        max_change_fraction: most words changed, as a fraction of the text's words, in (0, 1];
            at least one word may change when the text has any word that is not a stop-word.
        seed: seed of all randomness; sample ``i``'s draws depend on ``(seed, index[i])``.
        loss_temperature: divides the logits before the softmax behind every scoring decision.
        batch_size: most texts per classifier call.
        scores: what the attacker reads. ``probability`` (default): float32 softmax
            probabilities, as a deployed model's API returns them and as the score-based attacks
            of TextAttack read them — so a model served at an extreme temperature, whose
            probabilities round to 0 or 1, starves the attack of signal: the illusion of
            robustness of arXiv 2402.17509, which ``loss_temperature`` (the illusion check's
            ``cal``) undoes. ``logit``: float64 log-odds from the logits, which never saturate:
            a stronger attacker with logit access, immune to that illusion.
    """

    name: ClassVar[str] = "text-attack"

    def __init__(
        self,
        *,
        query_budget: int = 500,
        max_change_fraction: float = 0.25,
        seed: int = 0,
        loss_temperature: float = 1.0,
        batch_size: int = 64,
        scores: str = "probability",
    ) -> None:
        self.scores = check_choice(scores, "scores", SCORES)
        self.query_budget = check_int(query_budget, "query_budget", 1)
        self.max_change_fraction = check_fraction(max_change_fraction, "max_change_fraction", allow_one=True)
        self.seed = check_seed(seed)
        self.loss_temperature = check_positive(loss_temperature, "loss_temperature")
        self.batch_size = check_int(batch_size, "batch_size", 1)

    @property
    def params(self) -> dict[str, object]:
        """Every setting of this attack, JSON-ready (for manifests and reports)."""
        out: dict[str, object] = {
            "attack": self.name,
            "query_budget": self.query_budget,
            "max_change_fraction": self.max_change_fraction,
            "seed": self.seed,
            "loss_temperature": self.loss_temperature,
            "batch_size": self.batch_size,
            "scores": self.scores,
        }
        out.update(self._extra_params())
        return out

    def max_changes(self, n_words: int, n_attackable: int) -> int:
        """How many words a text with ``n_words`` words, ``n_attackable`` of them not stop-words,
        may have changed."""
        if n_attackable == 0:
            return 0
        # The small epsilon keeps 0.3 * 10 from flooring to 2 through float rounding.
        allowed = max(1, math.floor(self.max_change_fraction * n_words + 1e-9))
        return min(allowed, n_attackable)

    def __call__(
        self,
        classifier: TextClassifierLike,
        texts: Sequence[str],
        labels: torch.Tensor | Sequence[int],
        index: torch.Tensor | Sequence[int] | None = None,
    ) -> TextAttackResult:
        """Attack ``classifier`` on ``texts`` with true ``labels``; ``index`` keys the randomness."""
        texts_l, labels_t, index_t = self._check_inputs(classifier, texts, labels, index)
        keys = sample_keys(self.seed, index_t.numpy())
        perturbed, logits, clean_logits, queries, changed = [], [], [], [], []
        for i, text in enumerate(texts_l):
            label = int(labels_t[i])
            scorer = _Scorer(classifier, label, self.loss_temperature, self.query_budget, self.batch_size,
                             self.scores)
            log_odds, clean = scorer.score([text])
            state = _State(WordSpans.of(text), label, float(log_odds[0]), clean[0])
            clean_logits.append(clean[0])
            if not state.fooled:
                attackable = [j for j, word in enumerate(state.spans.words) if not is_stop_word(word)]
                cap = self.max_changes(len(state.spans), len(attackable))
                if cap > 0:
                    rng = np.random.Generator(np.random.PCG64(int(keys[i])))
                    self._perturb(state, attackable, cap, scorer, rng)
            perturbed.append(state.spans.replace_many(state.changes))
            logits.append(state.logits)
            queries.append(scorer.used)
            words = state.spans.words
            changed.append(sum(new != words[j] for j, new in state.changes.items()))
        dtype = clean_logits[0].dtype
        logits_t = torch.stack([row.to(dtype) for row in logits])
        return TextAttackResult(
            original=texts_l,
            perturbed=perturbed,
            logits=logits_t,
            clean_logits=torch.stack([row.to(dtype) for row in clean_logits]),
            success=logits_t.argmax(1) != labels_t,
            queries=torch.tensor(queries, dtype=torch.int64),
            changed_words=torch.tensor(changed, dtype=torch.int64),
            labels=labels_t,
            index=index_t,
            attack=self.name,
            params=self.params,
        )

    # ------------------------------------------------------------------ for subclasses
    @abstractmethod
    def _perturb(
        self, state: _State, attackable: list[int], cap: int, scorer: _Scorer, rng: np.random.Generator
    ) -> None:
        """Change at most ``cap`` of the ``attackable`` words of ``state`` in place."""

    def _extra_params(self) -> dict[str, object]:
        return {}

    def importance(
        self, state: _State, attackable: list[int], scorer: _Scorer
    ) -> tuple[np.ndarray, np.ndarray]:
        """How much deleting each attackable word lowers the true class.

        Returns the drop in the true-class probability and the drop in its log-odds. Both rank
        words alike; the log-odds keep the ranking where the probabilities round to the same
        number (a tiny or huge temperature). Positions the budget did not cover get NaN.
        """
        texts = [state.spans.replace(j, "") for j in attackable]
        log_odds, _ = scorer.score(texts)
        p_drop = np.full(len(attackable), np.nan)
        odds_drop = np.full(len(attackable), np.nan)
        p_drop[: len(log_odds)] = _probability(state.log_odds) - _probability(log_odds)
        with np.errstate(invalid="ignore"):  # saturated scores: inf - inf is NaN, "no signal"
            odds_drop[: len(log_odds)] = state.log_odds - log_odds
        return p_drop, odds_drop

    @staticmethod
    def _rank(scores: np.ndarray, tie_break: np.ndarray) -> list[int]:
        """Indices by decreasing score, then decreasing ``tie_break``, then position; NaN last."""
        covered = ~np.isnan(scores)
        # np.lexsort sorts by the last key first and is stable, so equal keys keep position order.
        order = np.lexsort((-np.nan_to_num(tie_break, nan=-np.inf), -np.where(covered, scores, -np.inf)))
        return [int(k) for k in order if covered[k]] + [int(k) for k in order if not covered[k]]

    @staticmethod
    def _step(state: _State, position: int, words: list[str], scorer: _Scorer) -> bool:
        """Score ``words`` at ``position`` and keep the best if it helps; whether one was kept."""
        log_odds, logits = scorer.score([state.text_with(position, word) for word in words])
        if len(log_odds) == 0:
            return False
        flips = (logits.argmax(1) != state.label).numpy()
        if flips.any():
            # The flipping candidate that pushes the true class furthest down; ties to the first.
            choice = int(np.flatnonzero(flips)[np.argmin(log_odds[flips])])
        else:
            choice = int(np.argmin(log_odds))
            if not log_odds[choice] < state.log_odds:
                return False
        state.changes[position] = words[choice]
        state.log_odds = float(log_odds[choice])
        state.logits = logits[choice]
        return True

    def _check_inputs(
        self, classifier: object, texts: object, labels: object, index: object
    ) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        if not callable(classifier):
            raise InputError(
                "classifier: expected a callable from a list of texts to logits, got "
                f"{type(classifier).__name__}"
            )
        if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
            raise InputError(f"texts: expected a non-empty list of strings, got {describe(texts)}")
        bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
        if bad is not None:
            raise InputError(f"texts: expected strings, got {type(texts[bad]).__name__} at position {bad}")
        labels_t = _as_int_tensor(labels, "labels")
        # The label range is checked against the classifier's outputs at the first call.
        labels_t = check_labels(labels_t, len(texts), n_classes=2**62, name="labels").cpu()
        if index is None:
            index_t = torch.arange(len(texts))
        else:
            index_t = _as_int_tensor(index, "index")
            if index_t.is_floating_point() or index_t.shape != (len(texts),) or bool((index_t < 0).any()):
                raise InputError(
                    f"index: expected {len(texts)} non-negative integer sample indices, "
                    f"got {describe(index_t)}"
                )
            index_t = index_t.long().cpu()
        return list(texts), labels_t, index_t


def _as_int_tensor(values: object, name: str) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.detach()
    try:
        return torch.as_tensor(np.asarray(values))
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"{name}: expected a tensor or a list of integers, got {describe(values)}") from None


# ---------------------------------------------------------------------------- DeepWordBug
def _keyboard_neighbours() -> dict[str, str]:
    # QWERTY rows with their horizontal stagger: keys whose centres are within one key width
    # on the same or an adjacent row are the typos a hurried typist makes.
    rows = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
    offsets = (0.0, 0.25, 0.75)
    places = {key: (r, c + offsets[r]) for r, row in enumerate(rows) for c, key in enumerate(row)}
    return {
        key: "".join(
            other for other, (r2, x2) in places.items()
            if other != key and abs(r2 - r) <= 1 and abs(x2 - x) <= 1.0
        )
        for key, (r, x) in places.items()
    }


KEYBOARD_NEIGHBOURS = _keyboard_neighbours()
EDIT_KINDS = ("swap", "substitute", "delete", "insert")


def _match_case(letter: str, like: str) -> str:
    return letter.upper() if like.isupper() else letter


def character_edits(word: str, rng: np.random.Generator, count: int) -> list[str]:
    """Up to ``count`` distinct one-edit variants of ``word`` (DeepWordBug's four edits).

    The edit kinds cycle through: swap two adjacent inner characters, substitute a character
    (by a keyboard neighbour when it has one, else a random letter), delete a character, insert
    a random letter. Variants that are no longer a single word (an apostrophe moved to an end)
    or equal ``word`` are dropped, and a bounded number of draws keeps this finite.
    """
    out: list[str] = []
    all_caps = word.isupper() and len(word) > 1
    for attempt in range(4 * count):
        if len(out) == count:
            break
        kind = EDIT_KINDS[attempt % len(EDIT_KINDS)]
        alnum = [i for i, char in enumerate(word) if char.isalnum()]
        if kind == "swap":
            pairs = [i for i in range(len(word) - 1) if word[i].isalnum() and word[i + 1].isalnum()
                     and word[i] != word[i + 1]]
            # Swapping inside the word keeps its first and last letters, which readers rely on.
            inner_pairs = [i for i in pairs if 1 <= i and i + 1 <= len(word) - 2]
            pairs = inner_pairs or pairs
            if not pairs:
                continue
            i = pairs[int(rng.integers(len(pairs)))]
            variant = word[:i] + word[i + 1] + word[i] + word[i + 2:]
        elif kind == "substitute":
            i = alnum[int(rng.integers(len(alnum)))]
            neighbours = KEYBOARD_NEIGHBOURS.get(word[i].lower(), "")
            pool = neighbours or string.ascii_lowercase.replace(word[i].lower(), "")
            variant = word[:i] + _match_case(pool[int(rng.integers(len(pool)))], word[i]) + word[i + 1:]
        elif kind == "delete":
            if len(alnum) < 2:
                continue
            i = alnum[int(rng.integers(len(alnum)))]
            variant = word[:i] + word[i + 1:]
        else:
            i = int(rng.integers(len(word) + 1))
            letter = string.ascii_lowercase[int(rng.integers(26))]
            variant = word[:i] + (letter.upper() if all_caps else letter) + word[i:]
        if variant != word and variant not in out and is_word(variant):
            out.append(variant)
    return out


class CharacterAttack(TextAttack):
    """DeepWordBug-style character edits (Gao et al., 2018), greedy by word importance.

    Words are visited by decreasing importance (deletion score). For each, ``candidates_per_word``
    random one-character edits are scored in one batch and the one that lowers the true-class
    probability most is kept, on top of the edits already made; the attack stops when the
    prediction flips, the change cap is reached or the query budget runs out.

    Args:
        candidates_per_word: edits tried per word.
        **common: ``query_budget``, ``max_change_fraction``, ``seed``, ``loss_temperature``,
            ``batch_size``, ``scores`` (see :class:`TextAttack`).
    """

    name: ClassVar[str] = "deepwordbug"

    def __init__(self, *, candidates_per_word: int = 4, **common: object) -> None:
        super().__init__(**common)
        self.candidates_per_word = check_int(candidates_per_word, "candidates_per_word", 1)

    def _extra_params(self) -> dict[str, object]:
        return {"candidates_per_word": self.candidates_per_word}

    def _perturb(
        self, state: _State, attackable: list[int], cap: int, scorer: _Scorer, rng: np.random.Generator
    ) -> None:
        _, odds_drop = self.importance(state, attackable, scorer)
        words = state.spans.words
        # Ranking by the log-odds drop is ranking by the probability drop, without its rounding.
        for k in self._rank(odds_drop, odds_drop):
            if len(state.changes) >= cap or scorer.remaining == 0 or state.fooled:
                break
            position = attackable[k]
            edits = character_edits(words[position], rng, self.candidates_per_word)
            if edits:
                self._step(state, position, edits, scorer)


# ---------------------------------------------------------------------------- PWWS
def match_case(candidate: str, like: str) -> str:
    """``candidate`` in the case pattern of ``like``: ALL CAPS, Capitalised, or as is."""
    if len(like) > 1 and like.isupper():
        return candidate.upper()
    if like[:1].isupper():
        return candidate[:1].upper() + candidate[1:]
    return candidate


class WordSubstitutionAttack(TextAttack):
    """PWWS: probability-weighted word saliency (Ren et al., 2019), greedy synonym substitution.

    For each non-stop-word position the best synonym is the one whose substitution lowers the
    true-class probability most (by Δp*); the word's saliency is the softmax over positions of
    its deletion importance. Positions are ranked by saliency × Δp* and substituted in that
    order with their best synonym, each substitution kept only if it lowers the true-class
    probability of the text so far (or flips it), until the prediction flips, the change cap
    is reached or the budget runs out. Replacements take the case of the word they replace.

    Args:
        synonyms: where candidates come from (default :class:`WordNetSynonyms`).
        **common: ``query_budget``, ``max_change_fraction``, ``seed``, ``loss_temperature``,
            ``batch_size``, ``scores`` (see :class:`TextAttack`).
    """

    name: ClassVar[str] = "pwws"

    def __init__(self, *, synonyms: SynonymSource | None = None, **common: object) -> None:
        super().__init__(**common)
        if synonyms is not None and not callable(getattr(synonyms, "candidates", None)):
            raise InputError(f"synonyms: expected a SynonymSource, got {type(synonyms).__name__}")
        self.synonyms = synonyms if synonyms is not None else WordNetSynonyms()

    def _extra_params(self) -> dict[str, object]:
        return {"synonyms": getattr(self.synonyms, "name", type(self.synonyms).__name__)}

    def _perturb(
        self, state: _State, attackable: list[int], cap: int, scorer: _Scorer, rng: np.random.Generator
    ) -> None:
        words = state.spans.words
        p_drop, _ = self.importance(state, attackable, scorer)
        covered = ~np.isnan(p_drop)
        saliency = np.zeros(len(attackable))
        if covered.any():
            shifted = np.exp(p_drop[covered] - p_drop[covered].max())
            saliency[covered] = shifted / shifted.sum()
        # Every synonym of every position, scored against the original text in shared batches.
        options: list[list[str]] = []
        texts: list[str] = []
        for position in attackable:
            original = words[position]
            found = [match_case(c, original) for c in self.synonyms.candidates(original)]
            found = [c for c in dict.fromkeys(found) if c != original and is_word(c)]
            options.append(found)
            texts.extend(state.spans.replace(position, c) for c in found)
        log_odds, _ = scorer.score(texts)
        p_clean = float(_probability(state.log_odds))
        scores = np.full(len(attackable), np.nan)
        odds_gain = np.full(len(attackable), np.nan)
        best: list[str | None] = [None] * len(attackable)
        start = 0
        for k, found in enumerate(options):
            scored = log_odds[start:start + len(found)]
            start += len(found)
            if len(scored) == 0:
                continue
            j = int(np.argmin(scored))
            best[k] = found[j]
            scores[k] = saliency[k] * (p_clean - float(_probability(scored[j])))
            with np.errstate(invalid="ignore"):  # saturated scores: inf - inf is NaN, "no signal"
                odds_gain[k] = state.log_odds - scored[j]
        # PWWS order; where saturated probabilities make scores equal, the larger log-odds gain
        # goes first.
        for k in self._rank(scores, odds_gain):
            if len(state.changes) >= cap or scorer.remaining == 0 or state.fooled:
                break
            if best[k] is not None:
                self._step(state, attackable[k], [best[k]], scorer)
