"""Real filing sentences for load tests and benchmarks.

The corpus (`.cache/corpus/ixbrl/*.jsonl`, FiNER format) stores sentences as words; `detokenize`
joins them back into text a filing would hold (`7.00 %` -> `7.00%`, `( d )` -> `(d)`), which
`finer.words.split_words` splits into the same words again, so gold tags still line up.
A random sample keeps the corpus's natural mix of short headings and long paragraphs.

Locust reads a sentence file that `loadtest.run` writes (`FINER_SENTENCES`, JSON lines with a
`text`); without one it uses the few built-in sentences below, so the locustfile works in the
Locust container, where no corpus is mounted. Only the standard library is used here.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

DEFAULT_CORPUS = Path(".cache/corpus/ixbrl")

# Used when no corpus exists (e.g. inside the Locust container).
BUILTIN = [
    "In March 2014, the Company issued an additional $100 million of its 7.00% Senior Notes due 2022.",
    "Borrowings under the revolving credit facility bear interest at LIBOR plus 1.75%.",
    "The facility has a maximum borrowing capacity of $750.0 million and matures in 2027.",
    "The effective interest rate on the term loan was 4.3% for the year ended December 31, 2023.",
    "As of September 30, 2024, we had $1,893.6 million outstanding under our commercial paper program.",
    "The notes bear interest at a fixed rate of 5.25% per annum, payable semi-annually in arrears.",
    "Net cash provided by operating activities was $2.1 billion in fiscal 2023.",
    "Revenue increased 8% to $4,512 million, primarily due to higher volumes in the Americas.",
    "The 2031 Notes were issued at 99.512% of par and have a stated interest rate of 3.625%.",
    "Interest accrues at the Secured Overnight Financing Rate (SOFR) plus a spread of 2.50%.",
    "Total debt was $3.2 billion.",
    "We lease office space in New York.",
]

_NO_SPACE_BEFORE = {",", ".", ";", ":", ")", "]", "}", "%", "?", "!", "’", "'"}
_NO_SPACE_AFTER = {"(", "[", "{", "$", "€", "£"}


def detokenize(tokens: list[str]) -> str:
    """FiNER words back to text: punctuation, `%` and closing brackets attach to the word before,
    `$` and opening brackets to the word after."""
    out: list[str] = []
    for i, token in enumerate(tokens):
        if i and token not in _NO_SPACE_BEFORE and tokens[i - 1] not in _NO_SPACE_AFTER:
            out.append(" ")
        out.append(token)
    return "".join(out)


def read_corpus(path: str | Path, n: int | None, seed: int = 13, min_words: int = 3, *,
                tagged_share: float = 0.0, labels: set[str] | None = None) -> list[dict]:
    """A seeded random sample of `n` sentences (all if None) of a FiNER-format jsonl file, as
    {"text", "tokens", "ner_tags"}; sentences under `min_words` words (page furniture) are skipped.

    With `tagged_share`, that share of the sample is drawn from sentences holding a gold tag in
    `labels` (entities are rare in filings: a plain sample may hold none to compare), the rest from
    all sentences; the order is shuffled.
    """
    rows = []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            tokens = row.get("tokens") or []
            if len(tokens) >= min_words:
                rows.append({"text": detokenize(tokens), "tokens": tokens,
                             "ner_tags": row.get("ner_tags") or ["O"] * len(tokens)})
    if n is None or n >= len(rows):
        return rows
    rng = random.Random(seed)
    tagged = [i for i, r in enumerate(rows) if labels and any(t != "O" and t in labels for t in r["ner_tags"])]
    picked = rng.sample(tagged, min(len(tagged), round(n * tagged_share)))
    taken = set(picked)
    rest = [i for i in range(len(rows)) if i not in taken]
    picked += rng.sample(rest, n - len(picked))
    rng.shuffle(picked)
    return [rows[i] for i in picked]


def write_sentences(path: str | Path, texts: list[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path


def read_sentences(path: str | Path | None) -> list[str]:
    """Texts of a sentence file (JSON lines with "text", or plain lines); the built-in sentences if
    `path` is empty or missing."""
    if not path or not Path(path).is_file():
        return list(BUILTIN)
    texts = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            texts.append(json.loads(line)["text"] if line.startswith("{") else line)
    return texts or list(BUILTIN)


_WORD = re.compile(r"\S+")


def long_document(texts: list[str], rng: random.Random, min_words: int = 500) -> str:
    """Consecutive sentences from a random start, joined until the text has more than `min_words` words."""
    start = rng.randrange(len(texts))
    parts, words = [], 0
    i = start
    while words <= min_words:
        parts.append(texts[i % len(texts)])
        words += len(_WORD.findall(parts[-1]))
        i += 1
    return " ".join(parts)
