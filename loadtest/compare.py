"""Entity agreement between paths, and entity F1 against the corpus's gold tags.

Agreement is micro-F1 over (start, end, label) sets, sentence by sentence, with one path as the
reference (1.0 = the same entities everywhere). The Hugging Face pipeline tags sub-words of the
raw text and groups them (`aggregation_strategy`), where our paths tag FiNER words: `7.00%` is
one word for us but `7 . 00 %` for BERT's pre-tokenizer, so its spans can cover part of a number
or run past it. `overlap` agreement counts a same-label entity whose span overlaps as found, which
separates that boundary effect from disagreement on what is an entity.
"""
from __future__ import annotations

from typing import Sequence

from finer.spans import decode as decode_spans
from finer.words import split_words

from loadtest.measure import Spans, spans_of


def _f1(tp: int, n_pred: int, n_ref: int) -> float:
    if not n_pred and not n_ref:
        return 1.0  # nothing to find and nothing found: full agreement
    return 2 * tp / (n_pred + n_ref)


def _overlap_matches(pred: Spans, ref: Spans) -> int:
    """One-to-one matches of same-label, overlapping spans (greedy in span order)."""
    used, tp = set(), 0
    for s, e, label in sorted(pred):
        for r in sorted(ref):
            if r not in used and r[2] == label and s < r[1] and r[0] < e:
                used.add(r)
                tp += 1
                break
    return tp


def agreement(pred: Sequence[Spans], ref: Sequence[Spans]) -> dict:
    """Exact and overlap micro-F1 of `pred` against `ref`, and the share of sentences with identical sets."""
    tp = sum(len(p & r) for p, r in zip(pred, ref))
    overlap = sum(_overlap_matches(p, r) for p, r in zip(pred, ref))
    n_pred, n_ref = sum(map(len, pred)), sum(map(len, ref))
    return {"f1": _f1(tp, n_pred, n_ref), "overlap_f1": _f1(overlap, n_pred, n_ref),
            "identical_sentences": sum(p == r for p, r in zip(pred, ref)) / max(len(ref), 1),
            "entities": n_pred, "reference_entities": n_ref}


def gold_spans(rows: Sequence[dict], labels: Sequence[str]) -> list[Spans] | None:
    """Gold entities of corpus rows as spans into their text (tags outside the model's labels count as O,
    as in evaluation.evaluate); None when a row's text does not split back into its words."""
    known = set(labels)
    out = []
    for row in rows:
        words = split_words(row["text"])
        if [w.text for w in words] != list(row["tokens"]):
            return None
        tags = [t if t in known else "O" for t in row["ner_tags"]]
        out.append(spans_of(decode_spans(row["text"], words, tags)))
    return out


def gold_f1(pred: Sequence[Spans], gold: Sequence[Spans]) -> dict:
    """Entity micro precision/recall/F1 (strict: span and label) against gold, as seqeval's strict IOB2 scores words."""
    tp = sum(len(p & g) for p, g in zip(pred, gold))
    n_pred, n_gold = sum(map(len, pred)), sum(map(len, gold))
    return {"precision": tp / n_pred if n_pred else 0.0, "recall": tp / n_gold if n_gold else 0.0,
            "f1": 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0, "gold_entities": n_gold}
