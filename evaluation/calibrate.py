"""Calibrated decisions: a minimum entity score per type, fitted on validation to maximise micro-F1.

The model's argmax over-tags on whole filings (recall high, precision low): a number whose best
label is a debt tag at probability 0.4 is more often wrong than right. For each type, the minimum
score that maximises validation micro-F1 (all types together, coordinate ascent over a coarse
grid) goes into finer.json as `min_scores`; `finer.spans.drop_below`, the one decoder of serving
and evaluation, leaves out the entities below it. A type with few validation predictions keeps 0:
a threshold fitted on a handful of entities is noise.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from finer.labels import UNKNOWN
from finer.spans import tag_spans

GRID = (0.0, *np.round(np.arange(0.30, 0.96, 0.05), 2).tolist())
MIN_PREDICTIONS = 8  # validation entities of a type needed before its threshold moves
PASSES = 3


def scored_spans(gold: Sequence[Sequence[str]], scored: Sequence[tuple[Sequence[str], Sequence[float]]]):
    """Per type: (entity scores, is true positive) arrays of the predicted entities, and the gold count."""
    spans: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    n_gold = 0
    for g, (tags, scores) in zip(gold, scored):
        truth = set(tag_spans(g))
        n_gold += len(truth)
        for kind, first, last in tag_spans(tags):
            spans[kind].append((sum(scores[first:last]) / (last - first), (kind, first, last) in truth))
    return {k: (np.array([s for s, _ in v]), np.array([t for _, t in v])) for k, v in spans.items()}, n_gold


def fit_min_scores(gold: Sequence[Sequence[str]], scored: Sequence[tuple[Sequence[str], Sequence[float]]]
                   ) -> tuple[dict[str, float], dict]:
    """({type: minimum score} where above 0, a report of micro P/R/F1 before and after)."""
    spans, n_gold = scored_spans(gold, scored)
    # kept[t][g] = (true positives, false positives) of type t at GRID[g]
    kept = {t: np.array([[(tp & (s >= x)).sum(), (~tp & (s >= x)).sum()] for x in GRID]) for t, (s, tp) in spans.items()}
    choice = {t: 0 for t in spans}
    tunable = [t for t, (s, _) in spans.items() if len(s) >= MIN_PREDICTIONS]

    def totals(ch: dict[str, int]) -> tuple[int, int]:
        tp_fp = sum((kept[t][g] for t, g in ch.items()), np.zeros(2, dtype=np.int64))
        return int(tp_fp[0]), int(tp_fp[1])

    def f1(tp: int, fp: int) -> float:
        return 2 * tp / max(1, tp + fp + n_gold)

    for _ in range(PASSES):
        for t in tunable:
            # ties go to the lower threshold: keep recall when precision does not pay for it
            choice[t] = max(range(len(GRID)), key=lambda g: (f1(*totals({**choice, t: g})), -g))
    before, after = totals({t: 0 for t in spans}), totals(choice)

    def prf(tp: int, fp: int) -> dict:
        return {"precision": round(tp / max(1, tp + fp), 4), "recall": round(tp / max(1, n_gold), 4),
                "f1": round(f1(tp, fp), 4)}

    thresholds = {t: GRID[g] for t, g in sorted(choice.items()) if g}
    return thresholds, {"before": prf(*before), "after": prf(*after), "gold_entities": n_gold,
                        "predicted": {t: int(len(s)) for t, (s, _) in spans.items()}}


def calibrate(logits_fn, tokenizer, rows: Sequence[dict], config, scope, batch_size: int = 32
              ) -> tuple[dict[str, float], dict]:
    """Fit the minimum scores of `config`'s model on `rows` (validation), gold read in `scope`."""
    from evaluation.evaluate import known_only, predict_scored

    known = set(config.labels)
    scored = predict_scored(logits_fn, tokenizer, rows, config, batch_size, desc="calibrating on validation")
    gold, pred = [], []
    for r, (tags, scores) in zip(rows, scored):
        g = [t if t in known or t == UNKNOWN else "O" for t in scope.restrict(r["ner_tags"])]
        gold_known, tags_known = known_only(g, tags)
        gold.append(gold_known)
        pred.append((tags_known, scores))
    return fit_min_scores(gold, pred)
