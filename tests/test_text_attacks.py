"""Discrete text attacks: word splitting, synonym sources, DeepWordBug- and PWWS-style attacks."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from advcal.errors import InputError, MissingDependencyError
from advcal.text import (
    STOP_WORDS,
    CharacterAttack,
    EmbeddingNeighbours,
    SynonymSource,
    WordNetSynonyms,
    WordSpans,
    WordSubstitutionAttack,
    character_edits,
    count_changed_words,
    is_stop_word,
    is_word,
    match_case,
    split_words,
    word_diff,
    wordnet_lexnames,
)
from conftest import require_system_package

HAS_WORDNET = Path("/usr/share/wordnet/data.noun").is_file()

# A deliberately weak sentiment model: summed word weights, case-insensitive; class 1 positive.
WEIGHTS = {
    "good": 2.0, "great": 2.0, "fun": 1.5, "wonderful": 2.5, "excellent": 2.5, "love": 2.0,
    "enjoyable": 1.5, "bad": -2.0, "terrible": -2.5, "boring": -2.0, "awful": -2.5, "dull": -1.5,
    "waste": -2.0,
}
TEXTS = [
    "This movie is good and great fun, but the ending is dull.",
    "A wonderful film: the cast is excellent and the story is good.",
    "I didn't love it, but it's an enjoyable watch with great music.",
    "The plot is dull and boring, but the music is good.",
    "What a waste of time; bad jokes, though the lead is good.",
]
LABELS = [1, 1, 1, 0, 0]


class BagOfWords:
    """logits [-s, s] from the summed weights of a text's words; counts the texts it scores."""

    def __init__(self) -> None:
        self.scored = 0

    def __call__(self, texts: list[str]) -> torch.Tensor:
        self.scored += len(texts)
        s = torch.tensor([sum(WEIGHTS.get(w.lower(), 0.0) for w in WordSpans.of(t).words) for t in texts])
        return torch.stack([-s, s], 1)


class TemperatureServed:
    """A classifier served at an inference temperature: its logits divided by ``temperature``."""

    def __init__(self, classifier: BagOfWords, temperature: float) -> None:
        self.classifier, self.temperature = classifier, temperature

    def __call__(self, texts: list[str]) -> torch.Tensor:
        return self.classifier(texts) / self.temperature


class TableSynonyms(SynonymSource):
    """A fixed synonym table, so the word attack can be tested without WordNet."""

    name = "table"

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    def candidates(self, word: str) -> list[str]:
        return list(self.table.get(word.lower(), []))


TABLE = TableSynonyms({
    "good": ["fine", "decent"], "great": ["big", "large"], "fun": ["play", "sport"],
    "wonderful": ["grand", "marvellous"], "excellent": ["first"], "love": ["like"],
    "enjoyable": ["pleasant"], "dull": ["slow", "muted"], "boring": ["tedious", "slow"],
    "bad": ["big"], "waste": ["spend"], "music": ["euphony"],
})


def char_attack(**kwargs: object) -> CharacterAttack:
    settings = {"query_budget": 100, "max_change_fraction": 0.5, "seed": 0, **kwargs}
    return CharacterAttack(**settings)


def word_attack(**kwargs: object) -> WordSubstitutionAttack:
    settings = {"query_budget": 300, "max_change_fraction": 0.5, "seed": 0, "synonyms": TABLE, **kwargs}
    return WordSubstitutionAttack(**settings)


@pytest.fixture(scope="module")
def wordnet() -> WordNetSynonyms:
    require_system_package(HAS_WORDNET, "WordNet 3.0", "apt-get install wordnet-base")
    return WordNetSynonyms()


# ---------------------------------------------------------------------------- words
@pytest.mark.parametrize("text", [
    "It's a 'great' film -- isn't it?!",
    "  Rock'n'roll, o'clock;\tthe dogs' bowls\n",
    "Café naïve’s 3 movies...",
    "",
    "?!",
    "word",
])
def test_split_words_round_trips(text: str) -> None:
    tokens = split_words(text)
    assert "".join(token.text for token in tokens) == text
    assert all(token.text for token in tokens)
    assert all(text[token.start:token.start + len(token.text)] == token.text for token in tokens)
    # Words and separators alternate: two words are always parted by a separator.
    assert all(a.is_word != b.is_word for a, b in itertools.pairwise(tokens))


def test_words_keep_inner_apostrophes_and_drop_quotes() -> None:
    spans = WordSpans.of("It's a 'great' film -- isn't it? rock'n'roll")
    assert spans.words == ["It's", "a", "great", "film", "isn't", "it", "rock'n'roll"]
    assert [spans.text[a:b] for a, b in spans.spans] == spans.words
    assert spans.replace(2, "fine") == "It's a 'fine' film -- isn't it? rock'n'roll"
    assert spans.replace_many({0: "Tis", 6: "jazz"}) == "Tis a 'great' film -- isn't it? jazz"
    with pytest.raises(InputError, match="i: expected a word index"):
        spans.replace(7, "x")
    assert is_word("don't") and not is_word("don'") and not is_word("two words") and not is_word("a-b")


def test_stop_words_cover_function_words_and_negations() -> None:
    assert len(STOP_WORDS) >= 120
    for word in ("the", "a", "is", "not", "no", "never", "nor", "and", "of", "they", "isn't", "don't"):
        assert word in STOP_WORDS
    assert is_stop_word("Not") and is_stop_word("Don\u2019t")
    for word in ("good", "movie", "terrible", "plot"):
        assert not is_stop_word(word)


def test_word_diff_marks_changed_words() -> None:
    original, perturbed = "A good film, truly good.", "A fine film, truly goood."
    diff = word_diff(original, perturbed)
    assert "".join(piece for piece, _ in diff) == original
    assert [(piece, new) for piece, new in diff if new is not None] == [("good", "fine"), ("good", "goood")]
    assert count_changed_words(original, perturbed) == 2
    assert count_changed_words(original, original) == 0
    # Different word counts: aligned, with the inserted word marked.
    diff = word_diff("a good film", "a very good film")
    assert "".join(piece for piece, _ in diff) == "a good film"
    assert [new for _, new in diff if new is not None] == ["very"]


# ---------------------------------------------------------------------------- synonyms
def test_lexnames_table_is_wordnet_30() -> None:
    lines = wordnet_lexnames().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[2] == "02\tadv.all\t4" and lines[3] == "03\tnoun.Tops\t1"
    assert lines[29] == "29\tverb.body\t2" and lines[44] == "44\tadj.ppl\t3"


def test_wordnet_synonyms_are_real(wordnet: WordNetSynonyms) -> None:
    good = wordnet.candidates("good")
    assert {"beneficial", "well", "full", "honest"} <= set(good)
    assert "good" not in good and all(is_word(c) and c == c.lower() for c in good)
    assert len(good) == len(set(good))
    assert wordnet.candidates("Good") == good == wordnet.candidates("good")  # deterministic, any case
    assert wordnet.candidates("xyzzyq") == []


def test_wordnet_finds_inflected_words_through_morphy(wordnet: WordNetSynonyms) -> None:
    movies = wordnet.candidates("movies")
    assert {"film", "picture", "flick"} <= set(movies)
    assert "movie" not in movies  # the word's own lemma is an inflection, not a synonym
    assert "run" not in wordnet.candidates("running")


def test_wordnet_keeps_candidates_to_the_words_parts_of_speech(wordnet: WordNetSynonyms) -> None:
    # "movie" is only a noun; "film" is also a verb ("shoot", "take"), and those verb senses
    # must not reach "movie" through the shared noun sense.
    assert wordnet.parts_of_speech("movie") == {"n"}
    assert {"shoot", "take"} <= set(wordnet.candidates("film"))
    assert not {"shoot", "take"} & set(wordnet.candidates("movie"))
    # An adverb-only word gets adverbs only: "quickly" -> "rapidly", not the adjective "fast".
    assert wordnet.parts_of_speech("quickly") == {"r"}
    assert "rapidly" in wordnet.candidates("quickly") and "fast" not in wordnet.candidates("quickly")


def test_missing_wordnet_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(MissingDependencyError, match="apt-get install wordnet-base"):
        WordNetSynonyms(root=tmp_path)


def test_embedding_neighbours_on_a_small_matrix() -> None:
    vocabulary = ["[CLS]", "good", "##ood", "great", "nice", "fine", "bad", "<s>", "g00d", "terrible", "Good"]
    rows = {
        "[CLS]": [1, 0, 0], "good": [1, 0, 0], "##ood": [1, 0, 0], "great": [0.9, 0.1, 0],
        "nice": [0.9, 0.1, 0], "fine": [0.6, 0.6, 0], "bad": [-1, 0, 0], "<s>": [1, 0, 0],
        "g00d": [1, 0, 0], "terrible": [-0.9, 0, 0.1], "Good": [1, 0, 0],
    }
    matrix = torch.tensor([rows[token] for token in vocabulary], dtype=torch.float32)
    source = EmbeddingNeighbours(matrix, vocabulary, k=8, min_cosine=0.5)
    # Subwords, special tokens, digits and the word itself (in any case) are skipped; equal
    # similarities keep vocabulary order (great before nice); "fine" (cos 0.71) passes 0.5.
    assert source.candidates("good") == ["great", "nice", "fine"]
    assert source.candidates("GOOD") == ["great", "nice", "fine"]
    assert EmbeddingNeighbours(matrix, vocabulary, k=1).candidates("good") == ["great"]
    assert EmbeddingNeighbours(matrix, vocabulary, min_cosine=0.9).candidates("good") == ["great", "nice"]
    assert source.candidates("bad") == ["terrible"]
    assert source.candidates("unknown") == [] and source.candidates("##ood") == []
    with pytest.raises(InputError, match="vocabulary"):
        EmbeddingNeighbours(matrix, vocabulary[:-1])


# ---------------------------------------------------------------------------- attacks
def changed_positions(original: str, perturbed: str) -> list[int]:
    before, after = WordSpans.of(original), WordSpans.of(perturbed)
    # Non-attacked text is byte-identical: same separators, same word count.
    assert [t.text for t in before.tokens if not t.is_word] == [t.text for t in after.tokens if not t.is_word]
    assert len(before) == len(after)
    return [i for i, (a, b) in enumerate(zip(before.words, after.words, strict=True)) if a != b]


@pytest.mark.parametrize("make", [char_attack, word_attack], ids=["char", "word"])
def test_attacks_fool_a_bag_of_words_model_within_the_caps(make) -> None:
    attack = make()
    model = BagOfWords()
    result = attack(model, TEXTS, LABELS)
    assert int(result.success.sum()) >= 4
    assert result.robust_accuracy == pytest.approx(1 - float(result.success.float().mean()))
    assert bool((result.clean_logits.argmax(1) == torch.tensor(LABELS)).all())
    assert torch.equal(result.logits, model(result.perturbed))
    assert bool((result.logits.argmax(1) != torch.tensor(LABELS)).eq(result.success).all())
    for i, (original, perturbed) in enumerate(zip(result.original, result.perturbed, strict=True)):
        changed = changed_positions(original, perturbed)
        words = WordSpans.of(original).words
        assert not any(is_stop_word(words[j]) for j in changed)
        assert len(changed) == int(result.changed_words[i]) == count_changed_words(original, perturbed)
        assert len(changed) <= math.floor(0.5 * len(words))
    assert bool((result.queries <= attack.query_budget).all())
    assert model.scored == int(result.queries.sum()) + len(TEXTS)  # + the check above


@pytest.mark.parametrize("make", [char_attack, word_attack], ids=["char", "word"])
def test_attacks_respect_a_small_change_cap_and_budget(make) -> None:
    text = ["good great fun wonderful excellent enjoyable love good great fun"]
    result = make(max_change_fraction=0.2)(BagOfWords(), text, [1])
    assert len(changed_positions(text[0], result.perturbed[0])) <= 2
    assert not bool(result.success[0])  # two changes cannot flip ten positive words
    for budget in (1, 3, 12):
        tight = make(query_budget=budget)(BagOfWords(), TEXTS, LABELS)
        assert bool((tight.queries <= budget).all())
    # With a budget of one query only the clean text is scored: nothing changes.
    assert make(query_budget=1)(BagOfWords(), TEXTS, LABELS).perturbed == TEXTS


@pytest.mark.parametrize("make", [char_attack, word_attack], ids=["char", "word"])
def test_attacks_are_deterministic_and_keyed_by_index(make) -> None:
    first = make(seed=3)(BagOfWords(), TEXTS, LABELS, index=[10, 11, 12, 13, 14])
    second = make(seed=3)(BagOfWords(), TEXTS, LABELS, index=[10, 11, 12, 13, 14])
    assert first.perturbed == second.perturbed
    assert torch.equal(first.queries, second.queries) and torch.equal(first.logits, second.logits)
    # Sample 12 alone, with its index, gets the perturbation it got in the batch.
    alone = make(seed=3)(BagOfWords(), [TEXTS[2]], torch.tensor([LABELS[2]]), index=torch.tensor([12]))
    assert alone.perturbed == [first.perturbed[2]]
    assert first.params["seed"] == 3 and first.params["attack"] in ("deepwordbug", "pwws")


def test_character_attack_randomness_follows_seed_and_index() -> None:
    by_seed = {tuple(char_attack(seed=seed)(BagOfWords(), TEXTS, LABELS).perturbed) for seed in range(4)}
    assert len(by_seed) > 1
    shifted = char_attack(seed=0)(BagOfWords(), TEXTS, LABELS, index=[5, 6, 7, 8, 9])
    assert shifted.perturbed != char_attack(seed=0)(BagOfWords(), TEXTS, LABELS).perturbed


def test_character_edits_are_single_word_variants() -> None:
    rng = np.random.Generator(np.random.PCG64(7))
    edits = character_edits("wonderful", rng, 4)
    assert len(edits) == 4 and len(set(edits)) == 4 and "wonderful" not in edits
    assert all(is_word(e) and abs(len(e) - len("wonderful")) <= 1 for e in edits)
    again = character_edits("wonderful", np.random.Generator(np.random.PCG64(7)), 4)
    assert edits == again
    assert all(is_word(e) for e in character_edits("isn't", rng, 8))
    assert all(len(e) >= 1 and e != "x" for e in character_edits("x", rng, 4))
    assert all(e.isupper() for e in character_edits("GREAT", rng, 8))


def test_word_attack_picks_the_best_synonym_and_keeps_case() -> None:
    synonyms = TableSynonyms({"good": ["fine", "bad"], "great": ["big"]})
    attack = word_attack(synonyms=synonyms, max_change_fraction=1.0)
    result = attack(BagOfWords(), ["Good acting, GREAT cast, dull plot."], [1])
    # "bad" lowers the positive score most, so it beats "fine", and it is enough on its own;
    # cases follow the originals.
    assert result.perturbed == ["Bad acting, GREAT cast, dull plot."]
    assert bool(result.success[0]) and int(result.changed_words[0]) == 1
    assert match_case("fine", "GOOD") == "FINE" and match_case("fine", "Good") == "Fine"
    assert match_case("fine", "good") == "fine" and match_case("fine", "I") == "Fine"
    assert result.params["synonyms"] == "table"


def test_word_attack_with_wordnet(wordnet: WordNetSynonyms) -> None:
    result = WordSubstitutionAttack(query_budget=300, max_change_fraction=0.5, seed=0, synonyms=wordnet)(
        BagOfWords(), TEXTS, LABELS
    )
    assert int(result.success.sum()) >= 4
    for original, perturbed in zip(result.original, result.perturbed, strict=True):
        words = WordSpans.of(original).words
        for j in changed_positions(original, perturbed):
            assert WordSpans.of(perturbed).words[j].lower() in wordnet.candidates(words[j])


def test_misclassified_samples_are_left_alone() -> None:
    result = char_attack()(BagOfWords(), TEXTS[:2], [0, 1])
    assert result.perturbed[0] == TEXTS[0] and int(result.queries[0]) == 1
    assert bool(result.success[0]) and int(result.changed_words[0]) == 0
    # A text of stop-words only has nothing to attack.
    only_stop = char_attack()(BagOfWords(), ["it is not what they were"], [0])
    assert only_stop.perturbed == ["it is not what they were"] and int(only_stop.queries[0]) == 1


@pytest.mark.parametrize("temperature", [1e-3, 1e6])
@pytest.mark.parametrize("make", [char_attack, word_attack], ids=["char", "word"])
def test_an_attacker_reading_logits_is_immune_to_the_temperature(make, temperature: float) -> None:
    result = make(loss_temperature=temperature, scores="logit")(BagOfWords(), TEXTS, LABELS)
    assert result.params["loss_temperature"] == temperature and result.params["scores"] == "logit"
    assert bool(torch.isfinite(result.logits).all())
    # Whether the softmax saturates (1e-3) or flattens (1e6), the comparisons are made on
    # float64 log-odds, so the attacks still work.
    assert int(result.success.sum()) >= 4
    if make is char_attack:
        # For two classes, ranking by the true-class probability does not depend on the
        # temperature at all, and the character attack only ranks.
        assert result.perturbed == make(scores="logit")(BagOfWords(), TEXTS, LABELS).perturbed


@pytest.mark.parametrize("make", [char_attack, word_attack], ids=["char", "word"])
def test_saturated_probabilities_starve_an_attacker_reading_them(make) -> None:
    """The illusion of robustness: served at T = 1e-3, the float32 probabilities are 0 or 1, so a
    probability-reading attack (the default, like TextAttack's) finds no direction except by a
    lucky flip; an attack temperature of 1/1e-3 (what the illusion check's ``cal`` fits) restores it."""
    cold = TemperatureServed(BagOfWords(), 1e-3)
    served = make()(cold, TEXTS, LABELS)
    corrected = make(loss_temperature=1e3)(cold, TEXTS, LABELS)
    assert int(served.success.sum()) < int(corrected.success.sum())
    assert int(corrected.success.sum()) == int(make()(BagOfWords(), TEXTS, LABELS).success.sum())


@pytest.mark.parametrize("kwargs, name", [
    ({"query_budget": 0}, "query_budget"),
    ({"max_change_fraction": 1.5}, "max_change_fraction"),
    ({"max_change_fraction": 0}, "max_change_fraction"),
    ({"loss_temperature": -1.0}, "loss_temperature"),
    ({"seed": -1}, "seed"),
    ({"candidates_per_word": 0}, "candidates_per_word"),
])
def test_bad_settings_name_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(InputError, match=name):
        char_attack(**kwargs)


def test_bad_inputs_name_the_argument() -> None:
    attack = char_attack()
    with pytest.raises(InputError, match="labels"):
        attack(BagOfWords(), TEXTS, LABELS[:3])
    with pytest.raises(InputError, match="labels"):
        attack(BagOfWords(), TEXTS[:1], [2])  # out of range for two classes
    with pytest.raises(InputError, match="index"):
        attack(BagOfWords(), TEXTS, LABELS, index=[0, 1])
    with pytest.raises(InputError, match="texts"):
        attack(BagOfWords(), "one text", [1])
    with pytest.raises(InputError, match="texts"):
        attack(BagOfWords(), [], [])
    with pytest.raises(InputError, match="classifier"):
        attack(lambda texts: torch.zeros(len(texts) + 1, 2), TEXTS, LABELS)
    with pytest.raises(InputError, match="synonyms"):
        WordSubstitutionAttack(synonyms=object())
