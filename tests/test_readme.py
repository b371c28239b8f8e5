"""Every Python block of the README runs as written, in a fresh namespace, in an empty folder.

The text block audits "the user's own" model and CSV: the test first writes a tiny Hugging Face
classifier to ./my-sentiment-model and a small reviews.csv, the files the block names.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text("utf-8"), flags=re.S | re.M)
REVIEWS = [("a wonderful film, I loved it", 1), ("dull and far too long", 0),
           ("great acting, great story", 1), ("a boring mess", 0),
           ("I loved every minute", 1), ("the worst film this year", 0)]


def write_the_users_files(folder: Path) -> None:
    from advcal.text import tiny_text_classifier

    with open(folder / "reviews.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(REVIEWS)
    model = tiny_text_classifier([text for text, _ in REVIEWS], 2, seed=0)
    model.save_pretrained(folder / "my-sentiment-model")


def test_the_readme_has_its_python_blocks():
    assert len(BLOCKS) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_a_readme_python_block_runs_as_written(number, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    block = BLOCKS[number]
    if "my-sentiment-model" in block:
        write_the_users_files(tmp_path)
    exec(compile(block, f"README.md python block {number + 1}", "exec"), {"__name__": "readme"})
