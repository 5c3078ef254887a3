"""Calibrated decisions (per-type minimum scores), the debt family scope and the behavioural checklist."""
import json

import pytest

from finer.labels import DEBT_TYPES, LabelScope, ScopeError
from finer.pipeline import TaggerConfig
from finer.spans import decode, drop_below
from finer.words import split_words
from evaluation.calibrate import GRID, MIN_PREDICTIONS, fit_min_scores
from evaluation.checklist import CHECKLIST, OTHER, load, score, table
from evaluation.scopes import neighbour_counts

SPREAD, STATED = "DebtInstrumentBasisSpreadOnVariableRate1", "DebtInstrumentInterestRateStatedPercentage"


def test_entities_below_their_minimum_are_dropped_whole():
    tags = [f"B-{SPREAD}", "O", f"B-{STATED}", f"I-{STATED}"]
    assert drop_below(tags, [0.4, 1.0, 0.9, 0.5], {SPREAD: 0.5, STATED: 0.7}) == ["O", "O", f"B-{STATED}", f"I-{STATED}"]
    assert drop_below(tags, [0.4, 1.0, 0.9, 0.4], {STATED: 0.7})[2:] == ["O", "O"]  # mean 0.65 < 0.7
    assert drop_below(tags, [0.4, 1.0, 0.9, 0.5], {}) == tags
    text = "LIBOR plus 2.5 % and 7.00 %"
    words = split_words(text)
    kept = decode(text, words, ["O", "O", f"B-{SPREAD}", "O", "O", f"B-{STATED}", "O"],
                  [1, 1, 0.45, 1, 1, 0.95, 1], {SPREAD: 0.5})
    assert [e.text for e in kept] == ["7.00"]


def test_fit_raises_a_threshold_only_where_it_pays():
    gold, scored = [], []
    # spread: confident predictions are right, unsure ones wrong; stated: all right at any score
    for i in range(20):
        right = i % 2 == 0
        gold.append([f"B-{SPREAD}" if right else "O", f"B-{STATED}"])
        scored.append(([f"B-{SPREAD}", f"B-{STATED}"], [0.9 if right else 0.4, 0.35]))
    thresholds, report = fit_min_scores(gold, scored)
    assert 0.4 < thresholds[SPREAD] <= 0.9 and SPREAD in thresholds
    assert STATED not in thresholds  # dropping right answers never pays
    assert report["after"]["f1"] > report["before"]["f1"] and report["after"]["precision"] == 1.0


def test_a_type_with_few_predictions_keeps_every_entity():
    gold = [["O"]] * (MIN_PREDICTIONS - 1)
    scored = [([f"B-{SPREAD}"], [0.31])] * (MIN_PREDICTIONS - 1)
    assert fit_min_scores(gold, scored)[0] == {}
    assert GRID[0] == 0.0


def test_min_scores_travel_in_finer_json(tmp_path):
    config = TaggerConfig(labels=["O", f"B-{SPREAD}"], cls_id=1, sep_id=2, pad_id=0, min_scores={SPREAD: 0.55})
    config.save(tmp_path)
    assert TaggerConfig.load(tmp_path).min_scores == {SPREAD: 0.55}
    assert json.loads((tmp_path / "finer.json").read_text())["min_scores"] == {SPREAD: 0.55}


def test_the_debt_family_is_a_named_scope():
    family = LabelScope.parse("debt-family")
    assert family.types[:4] == DEBT_TYPES and len(family.types) > 4
    assert "DebtInstrumentFaceAmount" in family.types
    with pytest.raises(ScopeError, match="debt-family"):
        LabelScope.parse("NotAType")


def test_neighbours_are_counted_in_debt_sentences_only():
    rows = [{"tokens": ["a", "b"], "ner_tags": [f"B-{STATED}", "B-DebtInstrumentFaceAmount"]},
            {"tokens": ["c"], "ner_tags": ["B-Goodwill"]}]
    assert neighbour_counts(rows) == {"DebtInstrumentFaceAmount": 1}


def test_the_checklist_reads_and_scores_by_pattern():
    items = load(CHECKLIST)
    assert len(items) >= 60
    patterns = {it.pattern for it in items}
    assert "% Senior Notes due" in patterns and any("commitment fee" in p for p in patterns)
    assert all(it.expected for it in items)

    class Perfect:  # tags exactly what the checklist expects
        def entities(self, texts):
            from finer.spans import Entity

            out = []
            for it in items:
                out.append([Entity(it.text[s:e], want, s, e, 0.9) for (s, e), want in it.expected.items() if want != OTHER])
            return out

    class Nothing:
        def entities(self, texts):
            return [[] for _ in texts]

    perfect = score(Perfect(), items)
    assert all(p["right"] == p["sentences"] for p in perfect.values())
    nothing = score(Nothing(), items)
    assert nothing["% Senior Notes due"]["right"] == 0
    assert all(p["right"] == p["sentences"] for name, p in nothing.items() if "neighbour" in name)
    assert "Misses:" in table(nothing) and "expected stated, got other" in table(nothing)
