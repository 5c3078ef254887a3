"""Bootstrap intervals and the error report agree with seqeval's strict scores."""
import random

import numpy as np
import pytest

from finer.labels import LabelScope
from evaluation.confidence import bootstrap, entity_counts, f1_scores
from evaluation.errors import MISSED, SPURIOUS, error_report, error_table
from training.metrics import entity_scores

TYPES = LabelScope.parse("debt").types
A, B = TYPES[0], TYPES[1]


def noisy(n, seed, keep=0.7):
    rng = random.Random(seed)
    gold, pred = [], []
    for _ in range(n):
        g = ["O"] * 12
        for i in rng.sample(range(0, 12, 2), 2):
            g[i] = f"B-{rng.choice(TYPES)}"
            if rng.random() < 0.3:
                g[i + 1] = f"I-{g[i][2:]}"
        p = [t if rng.random() < keep else rng.choice(["O", f"B-{A}", f"I-{A}", f"B-{B}"]) for t in g]
        gold.append(g)
        pred.append(p)
    return gold, pred


def test_counts_reproduce_seqeval_micro_and_macro():
    gold, pred = noisy(200, 0)
    counts = entity_counts(gold, pred, TYPES)
    micro, macro, per_type = f1_scores(counts.sum(0), counts.sum(axis=(0, 2)) > 0)
    report = entity_scores(gold, pred)
    assert micro == pytest.approx(report["micro avg"]["f1-score"])
    assert macro == pytest.approx(report["macro avg"]["f1-score"])
    for i, t in enumerate(TYPES):
        assert per_type[i] == pytest.approx(report.get(t, {}).get("f1-score", 0.0))


def test_intervals_hold_the_estimate_and_shrink_with_more_sentences():
    small, large = noisy(60, 1), noisy(2000, 1)
    widths = []
    for gold, pred in (small, large):
        ci = bootstrap(entity_counts(gold, pred, TYPES), TYPES, samples=500)
        point = entity_scores(gold, pred)["micro avg"]["f1-score"]
        lo, hi = ci["micro_f1"]
        assert lo < point < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3  # ~1/sqrt(33) as wide


def test_sentences_without_entities_still_count_in_the_resample():
    gold, pred = noisy(50, 2)
    ci = bootstrap(entity_counts(gold, pred, TYPES), TYPES, seed=3)
    padded = bootstrap(entity_counts(gold + [["O"] * 5] * 5000, pred + [["O"] * 5] * 5000, TYPES), TYPES, seed=3)
    assert ci["micro_f1"] != padded["micro_f1"]  # the draw depends on all n sentences
    assert bootstrap(np.zeros((0, len(TYPES), 3)), TYPES) == {}


def test_error_report_outcomes():
    words = [["rate", "7.00", "%", "and", "1.50", "%", "on", "$", "500"]]
    gold = [["O", f"B-{A}", "O", "O", f"B-{B}", "O", "O", "O", f"B-{TYPES[2]}"]]
    pred = [["O", f"B-{A}", "O", "O", f"B-{A}", "O", f"B-{B}", "O", "O"]]
    r = error_report(words, gold, pred)
    assert r["outcomes"] == {"correct": 1, "wrong type": 1, "missed": 1, "spurious": 1}
    assert r["examples"]["spurious"] == [[SPURIOUS, B, "rate 7.00 % and 1.50 % **on** $ 500"]]
    assert r["confusion"][B] == {A: 1} and r["confusion"][TYPES[2]] == {MISSED: 1} and r["confusion"][SPURIOUS] == {B: 1}
    assert r["shapes"]["[X.XX]"] == {"total": 2, "found": 1} and r["shapes"]["[XXX]"] == {"total": 1, "found": 0}
    table = error_table(r)
    assert f"| {B} | {A} | 1 |" in table and "| `[X.XX]` | 2 | 1 | 0.50 |" in table


def test_paired_difference_is_tighter_than_separate_intervals(tmp_path):
    from evaluation.confidence import load_counts, paired_difference, save_counts

    gold, pred = noisy(300, 4, keep=0.8)
    better = [[g if random.Random(i).random() < 0.5 else p for g, p in zip(gs, ps)]
              for i, (gs, ps) in enumerate(zip(gold, pred))]  # half the wrong tags fixed
    a, b = entity_counts(gold, pred, TYPES), entity_counts(gold, better, TYPES)
    save_counts(tmp_path / "a.npz", a, TYPES)
    again, types = load_counts(tmp_path / "a.npz")
    assert (again == a).all() and types == list(TYPES)
    point, lo, hi = paired_difference(a, b)
    assert point == pytest.approx(entity_scores(gold, better)["micro avg"]["f1-score"]
                                  - entity_scores(gold, pred)["micro avg"]["f1-score"])
    assert 0 < lo < point < hi
    sa, sb = bootstrap(a, TYPES)["micro_f1"], bootstrap(b, TYPES)["micro_f1"]
    assert hi - lo < min(sa[1] - sa[0], sb[1] - sb[0])
    assert paired_difference(a, a)[0] == 0
    with pytest.raises(ValueError):
        paired_difference(a, a[:10])
