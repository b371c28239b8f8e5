"""Write real logits to a file for ``advcal metrics``: a classifier on scikit-learn's digits.

    python examples/digits_logits.py digits-logits.npz
    advcal metrics digits-logits.npz

A multinomial logistic regression is fitted on a fixed stratified half of the 1,797 digits and
its logits (``decision_function``) on the other half are saved with their labels and sample
indices, as a ``.npz`` of plain arrays. Deterministic: same file on every run.
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

SEED = 0


def main(path: str) -> None:
    digits = load_digits()
    x = digits.data / 16.0
    index = np.arange(len(x))
    x_train, x_test, y_train, y_test, _, index_test = train_test_split(
        x, digits.target, index, test_size=0.5, stratify=digits.target, random_state=SEED
    )
    model = LogisticRegression(C=10.0, max_iter=2000).fit(x_train, y_train)
    logits = model.decision_function(x_test).astype(np.float32)
    np.savez(path, logits=logits, labels=y_test.astype(np.int64), index=index_test)
    print(f"Wrote {len(y_test)} test logits to {path} (accuracy {model.score(x_test, y_test):.3f})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "digits-logits.npz")
