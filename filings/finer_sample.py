"""FiNER-139's own training sentences from a question-batch file (FinLoRA's format), partially labelled.

Each line holds numbered questions `N. What is best tag for entity "WORD" in sentence: "SENTENCE?"`
and `target`, the gold concepts in question order. The batches kept only the first three labelled
tokens of each sentence, and a sentence's questions may straddle two batches of which only one is in
the file, so some tokens have no known label. They get `UNKNOWN`: never trained on (no loss) and
never scored. What is certain:
- a sentence with fewer than three labels is complete, unless its questions touch the start or the
  end of every batch they sit in (the rest may be in a batch the file lacks);
- tokens before the first label are complete when some batch shows the sentence's first question
  after another sentence's; tokens after the last label when some batch shows its last question
  before another sentence's and the sentence has fewer than three labels.
A question names a word, not a position: the word is placed at its first occurrence after the
previous label's (questions follow token order); when several occurrences fit, all get `UNKNOWN`.

The file is split once, by a hash of each sentence, into a FiNER-era `dev` part (never trained on),
a `validation` part (mixed into validation: early stopping, calibration) and a `train` part.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from finer.labels import OUTSIDE, UNKNOWN, finer_types
from filings.sources import DataError, LoadReport

QUESTION = re.compile(r'^\d+\. What is best tag for entity "(.*)" in sentence: "(.*)\?"$', re.M)
# Parts of the file by sentence hash (out of 6): 2 dev, 1 validation, 3 train.
PARTS = (("dev", 2), ("validation", 1), ("train", 3))
FINER_DEV = "finer_dev"  # the name the dev part is scored under, beside the test split (evaluation, export)
MAX_LABELS = 3  # the batches kept this many labelled tokens per sentence


@dataclass
class _Sentence:
    labels: dict[tuple[str, int], str] = field(default_factory=dict)  # (word, k-th question on it) -> concept
    order: list[tuple[str, int]] = field(default_factory=list)
    start_known: bool = False  # some batch shows its first question after another sentence's
    end_known: bool = False  # ... its last question before another sentence's


def part_of(sentence: str) -> str:
    slot = int(hashlib.sha1(sentence.encode("utf-8")).hexdigest(), 16) % sum(n for _, n in PARTS)
    for name, n in PARTS:
        if slot < n:
            return name
        slot -= n
    raise AssertionError("unreachable")


def read_batches(path: str | Path, report: LoadReport | None = None) -> dict[str, _Sentence]:
    """Sentences of the file with their labels merged over every batch that asks about them."""
    report = report if report is not None else LoadReport()
    known = set(finer_types())
    sentences: dict[str, _Sentence] = defaultdict(_Sentence)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the FiNER sample ({e})") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        at = f"{path}:{lineno}"
        try:
            row = json.loads(line)
            questions = QUESTION.findall(row["context"])
            answers = [t.strip() for t in row["target"].split(",")]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            report.skip(at, f"not a question batch ({type(e).__name__}: {e})")
            continue
        if not questions or len(questions) != len(answers):
            report.skip(at, f"{len(questions)} questions but {len(answers)} answers")
            continue
        unknown = sorted({a for a in answers if a not in known})
        if unknown:
            report.skip(at, f"unknown FiNER concept(s) {', '.join(unknown)}")
            continue
        seen: dict[str, int] = defaultdict(int)  # (sentence, word) -> questions so far in this batch
        for j, ((word, text), concept) in enumerate(zip(questions, answers)):
            s = sentences[text]
            key = (word, seen[text + "\0" + word])
            seen[text + "\0" + word] += 1
            if key not in s.labels:
                s.labels[key] = concept
                s.order.append(key)
            first = j == 0 or questions[j - 1][1] != text
            last = j == len(questions) - 1 or questions[j + 1][1] != text
            s.start_known |= first and j > 0
            s.end_known |= last and j < len(questions) - 1
    return sentences


def _place(tokens: list[str], order: list[tuple[str, int]]) -> list[list[int]] | None:
    """Candidate positions of each label in turn (each after the previous label's first fit)."""
    after, spots = -1, []
    for word, _ in order:
        fits = [i for i, t in enumerate(tokens) if t == word and i > after]
        if not fits:
            return None
        spots.append(fits)
        after = fits[0]
    return spots


def to_row(text: str, s: _Sentence) -> tuple[dict | None, str]:
    """A FiNER-format row (tags B-/I-, `O` or `UNKNOWN`), or None and why it cannot be placed."""
    tokens = text.split(" ")
    tags = [OUTSIDE] * len(tokens)
    order = s.order
    spots = _place(tokens, order)
    if spots is None:  # batches merged out of order: place by the words' first occurrences instead
        order = sorted(order, key=lambda k: (tokens.index(k[0]) if k[0] in tokens else len(tokens), k[1]))
        spots = _place(tokens, order)
    if spots is None:
        missing = next(w for w, _ in order if w not in tokens)
        return None, f"entity {missing!r} is not in its sentence"
    labels = [s.labels[k] for k in order]
    for n, (fits, concept) in enumerate(zip(spots, labels)):
        if len(fits) > 1:
            for i in fits:
                tags[i] = UNKNOWN
            continue
        i = fits[0]
        # FiNER asks one question per word of a multi-word entity: the next word of the same concept continues it.
        inside = n > 0 and labels[n - 1] == concept and spots[n - 1] == [i - 1]
        tags[i] = ("I-" if inside else "B-") + concept
    complete_end = s.end_known and len(labels) < MAX_LABELS
    if not complete_end:
        tags[spots[-1][0] + 1:] = [UNKNOWN] * (len(tokens) - spots[-1][0] - 1)
    if not s.start_known:
        tags[: spots[0][-1]] = [UNKNOWN if t == OUTSIDE else t for t in tags[: spots[0][-1]]]
    return {"tokens": tokens, "ner_tags": tags, "source": "finer139-train-sample"}, ""


def load_sample(path: str | Path, report: LoadReport | None = None) -> dict[str, list[dict]]:
    """The sample as {'dev', 'validation', 'train'} rows; unplaceable sentences are counted skips."""
    report = report if report is not None else LoadReport()
    parts: dict[str, list[dict]] = {name: [] for name, _ in PARTS}
    for text, s in read_batches(path, report).items():
        row, why = to_row(text, s)
        if row is None:
            report.skip(f"{path}:sentence", why)
            continue
        report.rows[str(path)] += 1
        parts[part_of(text)].append(row)
    return parts


def sample_report(parts: dict[str, list[dict]]) -> str:
    """One line per part: sentences, labels known, debt labels, unknown tokens."""
    from finer.labels import DEBT_TYPES

    lines = []
    for name, rows in parts.items():
        entities = [t[2:] for r in rows for t in r["ner_tags"] if t.startswith("B-")]
        unknown = sum(t == UNKNOWN for r in rows for t in r["ner_tags"])
        lines.append(f"{name}: {len(rows)} sentences, {len(entities)} entities "
                     f"({sum(e in DEBT_TYPES for e in entities)} debt), {unknown} tokens of unknown label")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    rep = LoadReport()
    print(sample_report(load_sample(sys.argv[1], rep)))
    print(rep.summary())
