"""FiNER-style word splitting with character offsets.

FiNER-139 sentences come pre-split: `$`, `%`, brackets and trailing punctuation stand apart,
numbers such as `1,893.6` and `7.00` stay whole. Raw text must be split the same way before
sub-word tokenisation, or `7.00%` reaches the model as `7 . 00 %` and the tags land on fragments.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Collection, Iterable, NamedTuple, Sequence


class Word(NamedTuple):
    text: str
    start: int  # character offsets into the original text: text[start:end] == word
    end: int


_WORD_RE = re.compile(
    r"""
    (?:\w+-)?(?:[A-Za-z]\.){2,}(?![A-Za-z])  # abbreviations: U.S., L.P., non-U.S.
    | \d+(?:[.,]\d+)*(?!\w|-\w)            # numbers: 2014, 1,893.6, 7.00 (not 15th, not 10-K)
    | \.\d+(?!\w)                          # .5
    | (?=[\w'’-]*[^\W\d_])\w+(?:[-'’]\w+)+  # compounds with a letter: 10-K, three-year, company's
    | \w+                                  # plain words
    | \S                                   # any other character stands alone: $ % ( ) , . ; :
    """,
    re.VERBOSE,
)

NUMBER_RE = re.compile(r"^(?:\d+(?:[.,]\d+)*|\.\d+)$")


def split_words(text: str) -> list[Word]:
    """Split `text` into FiNER words, each with its character span in `text`."""
    return [Word(m.group(), m.start(), m.end()) for m in _WORD_RE.finditer(text)]


def is_number(word: str) -> bool:
    return NUMBER_RE.match(word) is not None


# FiNER tags numbers only: digits, and for durations and counts their words ("three years",
# "no" shares = zero) and compounds ("three-year", "364-day"). Every other word is decoded as O,
# which also lets evaluation skip sentences that hold no such word without changing a score.
# The words that count things in durations ("four years", "one-half"); the corpus builder tags
# a duration fact on them.
COUNT_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
    " sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety"
    " hundred half".split())
NUMBER_WORDS = COUNT_WORDS | {"zero", "no"}  # filers also tag "no" (shares, awards) as zero
_NUMERIC_COMPOUND_RE = re.compile(
    r"^(?:\d+(?:[.,]\d+)*|" + "|".join(sorted(NUMBER_WORDS)) + r")(?:-[a-z]+)+$", re.I)


def may_be_entity(word: str) -> bool:
    """True for the words a FiNER entity can sit on: numbers, number words and their compounds."""
    return is_number(word) or word.lower() in NUMBER_WORDS or _NUMERIC_COMPOUND_RE.match(word) is not None


def may_hold_entity(text: str) -> bool:
    """Whether a word of `text` may be an entity; a text without one is all O, whatever the model says."""
    return any(may_be_entity(m.group()) for m in _WORD_RE.finditer(text))


# Numeric-shape pseudo-tokens (FiNER paper, Loukas et al. 2022): sub-word tokenisers cut `1,893.6`
# into fragments whose first piece carries the label; a shape token keeps the number one token and
# tells the model its form (a rate looks like X.XX, an amount like X,XXX.X) without its value.
NUM_TOKEN = "[NUM]"  # numbers whose shape is too rare to have a token of its own
_DIGIT_RE = re.compile(r"\d")


def number_shape(word: str) -> str:
    """`7.00` -> `[X.XX]`, `1,893.6` -> `[X,XXX.X]`."""
    return "[" + _DIGIT_RE.sub("X", word) + "]"


def shape_numbers(words: Iterable[str], shapes: Collection[str]) -> list[str]:
    """The words a shape-token model reads: each number becomes its shape token, or `[NUM]` when
    its shape is not in `shapes`. The word count is unchanged, so character offsets still apply."""
    return [(s if (s := number_shape(w)) in shapes else NUM_TOKEN) if is_number(w) else w for w in words]


def common_shapes(sentences: Iterable[Sequence[str]], min_count: int = 3) -> list[str]:
    """`[NUM]` plus the shapes of numbers seen at least `min_count` times, most frequent first."""
    counts = Counter(number_shape(w) for words in sentences for w in words if is_number(w))
    return [NUM_TOKEN] + [s for s, n in counts.most_common() if n >= min_count and s != NUM_TOKEN]
