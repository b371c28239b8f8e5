"""Text classifiers: models, data, attacks and the audit (the illusion paper's own setting).

- models: :class:`TextClassifier` (``from_hf`` for a local Hugging Face sequence classifier,
  ``minilm_classifier``, ``tiny_text_classifier``), split at the input embeddings so both
  discrete and continuous attacks reach them;
- data: ``csv:``, ``jsonl:`` and the offline tweet corpus (:func:`load_text_data`);
- attacks: DeepWordBug-style character edits, PWWS-style synonym substitution (WordNet or the
  model's embedding neighbours) and embedding-space PGD;
- the audit of text classifiers is ``advcal.audit`` given a :class:`TextDataset`
  (:mod:`advcal.analyses.text_audit`).

transformers and nltk are imported only when a model or WordNet is loaded.

>>> from advcal.text import CharacterAttack, WordSubstitutionAttack
>>> result = CharacterAttack(query_budget=200, max_change_fraction=0.2, seed=0)(
...     classifier, texts, labels)                                          # doctest: +SKIP
>>> result.robust_accuracy                                                  # doctest: +SKIP

Layer (docs/architecture.md; lint-imports holds it): imports only from results, attacks,
metrics, data, models and _core.
Its audit, illusion check and fixes are analyses (:mod:`advcal.analyses`), above it.
"""

from advcal.text.attack_table import TEXT_ATTACKS
from advcal.text.attacks import (
    CharacterAttack,
    TextAttack,
    TextAttackResult,
    TextClassifierLike,
    WordSubstitutionAttack,
    character_edits,
    match_case,
)
from advcal.text.data import (
    TextDataset,
    load_tweets,
    parse_text_source,
    read_csv,
    read_jsonl,
    split_text_dataset,
)
from advcal.text.embedding_pgd import EmbeddingAttackResult, EmbeddingPGD
from advcal.text.loading import is_text_audit, load_text_data, load_text_model
from advcal.text.models import TextClassifier, from_hf, minilm_classifier, tiny_text_classifier
from advcal.text.synonyms import (
    EmbeddingNeighbours,
    SynonymSource,
    WordNetSynonyms,
    load_wordnet,
    wordnet_lexnames,
)
from advcal.text.words import (
    STOP_WORDS,
    Token,
    WordSpans,
    count_changed_words,
    is_stop_word,
    is_word,
    split_words,
    word_diff,
)

__all__ = [
    "STOP_WORDS",
    "TEXT_ATTACKS",
    "CharacterAttack",
    "EmbeddingAttackResult",
    "EmbeddingNeighbours",
    "EmbeddingPGD",
    "SynonymSource",
    "TextAttack",
    "TextAttackResult",
    "TextClassifier",
    "TextClassifierLike",
    "TextDataset",
    "Token",
    "WordNetSynonyms",
    "WordSpans",
    "WordSubstitutionAttack",
    "character_edits",
    "count_changed_words",
    "from_hf",
    "is_stop_word",
    "is_text_audit",
    "is_word",
    "load_text_data",
    "load_text_model",
    "load_tweets",
    "load_wordnet",
    "match_case",
    "minilm_classifier",
    "parse_text_source",
    "read_csv",
    "read_jsonl",
    "split_text_dataset",
    "split_words",
    "tiny_text_classifier",
    "word_diff",
    "wordnet_lexnames",
]
