"""FiNER-style word splitting with character offsets.

FiNER-139 sentences come pre-split: `$`, `%`, brackets and trailing punctuation stand apart,
numbers such as `1,893.6` and `7.00` stay whole. Raw text must be split the same way before
sub-word tokenisation, or `7.00%` reaches the model as `7 . 00 %` and the tags land on fragments.
"""
from __future__ import annotations

import re
from typing import NamedTuple


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
