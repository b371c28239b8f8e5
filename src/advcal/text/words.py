"""Words of a text: splitting that round-trips exactly, stop-words, and word-level diffs.

Text attacks change whole words or characters inside one word and must leave everything else
byte-identical, so a text is split into *word* tokens and the *separators* between them
(spaces, punctuation, quotes), and ``"".join`` of the pieces always gives the text back.

A word is a run of letters and digits, possibly joined by apostrophes inside it ("don't",
"o'clock", "rock'n'roll"). An apostrophe at either end of a run is a separator: in reviews
it is far more often a quotation mark ('best') than part of the word, and keeping it out
lets "best" be looked up in a synonym source.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import NamedTuple

from advcal._core.errors import InputError

# [^\W_] is a Unicode letter or digit: \w without the underscore.
WORD_PATTERN = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


class Token(NamedTuple):
    """One piece of a text: a word or the separator between two words.

    Attributes:
        text: the characters of the piece (never empty).
        start: its offset in the text.
        is_word: whether it is a word (else a separator).
    """

    text: str
    start: int
    is_word: bool


def split_words(text: str) -> list[Token]:
    """Split ``text`` into word and separator tokens; ``"".join`` of their texts is ``text``."""
    if not isinstance(text, str):
        raise InputError(f"text: expected a str, got {type(text).__name__}")
    tokens: list[Token] = []
    position = 0
    for match in WORD_PATTERN.finditer(text):
        if match.start() > position:
            tokens.append(Token(text[position:match.start()], position, False))
        tokens.append(Token(match.group(), match.start(), True))
        position = match.end()
    if position < len(text):
        tokens.append(Token(text[position:], position, False))
    return tokens


def is_word(candidate: str) -> bool:
    """Whether ``candidate`` is exactly one word, so that putting it in place of a word keeps the
    text's word count and leaves the neighbouring separators untouched."""
    return WORD_PATTERN.fullmatch(candidate) is not None


@dataclass(frozen=True)
class WordSpans:
    """A text's words and where they are, for replacing one word without touching the rest.

    >>> spans = WordSpans.of("It's good, isn't it?")
    >>> spans.words
    ["It's", 'good', "isn't", 'it']
    >>> spans.replace(1, "fine")
    "It's fine, isn't it?"
    """

    text: str
    tokens: tuple[Token, ...]
    word_tokens: tuple[int, ...]  # position in ``tokens`` of each word

    @classmethod
    def of(cls, text: str) -> WordSpans:
        """Split ``text`` (see :func:`split_words`)."""
        tokens = tuple(split_words(text))
        return cls(text, tokens, tuple(i for i, token in enumerate(tokens) if token.is_word))

    @property
    def words(self) -> list[str]:
        """The words, in order."""
        return [self.tokens[i].text for i in self.word_tokens]

    @property
    def spans(self) -> list[tuple[int, int]]:
        """``(start, end)`` character offsets of each word."""
        words = [self.tokens[i] for i in self.word_tokens]
        return [(token.start, token.start + len(token.text)) for token in words]

    def __len__(self) -> int:
        return len(self.word_tokens)

    def replace(self, i: int, new_word: str) -> str:
        """The text with word ``i`` changed to ``new_word`` and every other character kept."""
        return self.replace_many({i: new_word})

    def replace_many(self, changes: dict[int, str]) -> str:
        """The text with word ``i`` changed to ``changes[i]`` for each key; the rest kept."""
        pieces = [token.text for token in self.tokens]
        for i, new_word in changes.items():
            if not 0 <= i < len(self.word_tokens):
                raise InputError(f"i: expected a word index in [0, {len(self.word_tokens)}), got {i}")
            pieces[self.word_tokens[i]] = new_word
        return "".join(pieces)


def _stop_words() -> frozenset[str]:
    # Function words carry grammar rather than sentiment or topic: changing them makes a text
    # ungrammatical before it fools anyone. Negations are here too because swapping "not" or
    # "never" flips the meaning, so a label-preserving attack must not touch them.
    words = """
        a an the
        i me my mine myself we us our ours ourselves you your yours yourself yourselves
        he him his himself she her hers herself it its itself they them their theirs themselves
        this that these those who whom whose which what whatever whoever
        am is are was were be been being have has had having do does did doing done
        will would shall should can could may might must ought
        i'm you're he's she's it's we're they're i've you've we've they've i'd you'd he'd she'd
        we'd they'd i'll you'll he'll she'll we'll they'll that's there's here's what's who's let's
        not no nor never none nothing nobody neither cannot
        don't doesn't didn't isn't aren't wasn't weren't hasn't haven't hadn't won't wouldn't
        can't couldn't shouldn't mustn't mightn't needn't shan't ain't
        and or but if then else because as so than too very just only also either
        of at by for with about against between into through during before after above below
        to from up down in out on off over under again further once
        here there when where why how all any both each few more most other some such own same
    """
    return frozenset(words.split())


STOP_WORDS: frozenset[str] = _stop_words()


def is_stop_word(word: str) -> bool:
    """Whether ``word`` (any case; a curly apostrophe counts as a straight one) is a stop-word."""
    return word.lower().replace("\u2019", "'") in STOP_WORDS


def word_diff(original: str, perturbed: str) -> list[tuple[str, str | None]]:
    """The pieces of ``original`` marked with what replaced them, for highlighting in a report.

    Returns ``(piece, replacement)`` pairs whose pieces join to ``original``: ``replacement``
    is ``None`` for separators and unchanged words, and the perturbed word for a changed word
    (the report shows ``piece`` struck out and ``replacement`` inserted). With equal word
    counts, words are compared position by position (an edit inside a word changes that word).
    Otherwise the words are aligned with :class:`difflib.SequenceMatcher`: a deleted word has
    the replacement ``""`` and an inserted word is a piece ``""`` with the new word.
    """
    before, after = WordSpans.of(original), WordSpans.of(perturbed)
    old_words, new_words = before.words, after.words
    replacement: list[str | None] = [None] * len(old_words)
    inserted: dict[int, list[str]] = {}  # words inserted after old word i (-1: before the first)
    if len(old_words) == len(new_words):
        for i, (old, new) in enumerate(zip(old_words, new_words, strict=True)):
            if old != new:
                replacement[i] = new
    else:
        matcher = difflib.SequenceMatcher(a=old_words, b=new_words, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            # Pair words one to one while both sides have them; the rest are deletions or
            # insertions.
            for i in range(i1, i2):
                j = j1 + (i - i1)
                replacement[i] = new_words[j] if j < j2 else ""
            if j2 - j1 > i2 - i1:
                inserted.setdefault(i2 - 1, []).extend(new_words[j1 + (i2 - i1):j2])
    pieces: list[tuple[str, str | None]] = [("", word) for word in inserted.get(-1, [])]
    word_number = 0
    for token in before.tokens:
        if token.is_word:
            pieces.append((token.text, replacement[word_number]))
            pieces.extend(("", word) for word in inserted.get(word_number, []))
            word_number += 1
        else:
            pieces.append((token.text, None))
    return pieces


def count_changed_words(original: str, perturbed: str) -> int:
    """How many words differ between ``original`` and ``perturbed`` (see :func:`word_diff`)."""
    return sum(new is not None for _, new in word_diff(original, perturbed))
