from seqeval.metrics.sequence_labeling import get_entities

from finer.spans import decode, tag_spans
from finer.words import split_words

STATED = "DebtInstrumentInterestRateStatedPercentage"


def test_entity_covers_the_whole_number():
    text = "the notes bear interest at 2.25% per year"
    words = split_words(text)
    tags = ["O"] * len(words)
    tags[[w.text for w in words].index("2.25")] = f"B-{STATED}"
    (e,) = decode(text, words, tags, [0.9] * len(words))
    assert (e.text, e.label, text[e.start:e.end], e.score) == ("2.25", STATED, "2.25", 0.9)


def test_multi_word_entity_and_mean_score():
    text = "a one hundred facility"
    words = split_words(text)
    tags = ["O", "B-X", "I-X", "O"]
    (e,) = decode(text, words, tags, [1.0, 0.8, 0.6, 1.0])
    assert (e.text, e.start, e.end, e.score) == ("one hundred", 2, 13, 0.7)


def test_strict_iob2_matches_seqeval_strict():
    cases = [
        ["B-A", "I-A", "O", "B-B", "I-B", "I-B"],
        ["I-A", "I-A", "B-A", "B-A", "I-B", "O"],  # stray I- starts nothing in strict IOB2
        ["B-A", "I-B", "I-A", "O", "B-B"],
    ]
    from seqeval.scheme import IOB2, Entities

    for tags in cases:
        strict = sorted((e.tag, e.start, e.end) for e in Entities([tags], IOB2).entities[0])
        assert sorted(tag_spans(tags)) == strict


def test_mismatched_lengths_raise():
    import pytest

    with pytest.raises(ValueError):
        decode("a b", split_words("a b"), ["O"])


def test_lenient_seqeval_differs_on_stray_inside_tags():
    # documents the choice: seqeval's default (lenient) mode would count the stray I-A as an entity
    assert get_entities(["I-A", "O"]) == [("A", 0, 0)]
    assert tag_spans(["I-A", "O"]) == []
