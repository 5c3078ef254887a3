import json
from pathlib import Path

from finer.words import is_number, split_words

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def texts(text):
    return [w.text for w in split_words(text)]


def test_sample_row_is_reproduced_from_raw_text():
    row = json.loads((SHARED / "finer139" / "sample_dataset_card_train_id40.jsonl").read_text())
    raw = ("In March 2014, the Rialto segment issued an additional $100 million of the 7.00% Senior Notes, "
           "at a price of 102.25% of their face value in a private placement.")
    assert texts(raw) == row["tokens"]


def test_numbers_stay_whole_and_symbols_stand_apart():
    assert texts("$1,893.6 million (up 2.25%).") == ["$", "1,893.6", "million", "(", "up", "2.25", "%", ")", "."]
    assert texts("rate of 7.00%, due 2025.") == ["rate", "of", "7.00", "%", ",", "due", "2025", "."]
    assert texts("$100million") == ["$", "100million"]  # glued letters are not a number: left as one word


def test_compounds_and_abbreviations():
    assert texts("the U.S. and non-U.S. 10-K three-year term loan's") == ["the", "U.S.", "and", "non-U.S.", "10-K", "three-year", "term", "loan's"]
    assert texts("5-10 years") == ["5", "-", "10", "years"]


def test_offsets_point_into_the_source():
    text = "  Notes\tbear 7.00%\n interest\u00a0at SOFR+1.5% \x07 ok"
    words = split_words(text)
    assert all(text[w.start:w.end] == w.text for w in words)
    assert [w.text for w in words][-4:] == ["1.5", "%", "\x07", "ok"]


def test_is_number():
    assert is_number("1,893.6") and is_number("7.00") and is_number(".5")
    assert not is_number("10-K") and not is_number("%")


def test_empty_and_whitespace():
    assert split_words("") == [] and split_words(" \n\t ") == []


def test_number_shapes_keep_the_form_and_fall_back_to_num():
    from finer.words import NUM_TOKEN, common_shapes, number_shape, shape_numbers

    assert number_shape("7.00") == "[X.XX]" and number_shape("1,893.6") == "[X,XXX.X]"
    words = texts("the 7.00% Notes and $1,893.6 million in 10-K of 2025")
    shaped = shape_numbers(words, {"[X.XX]", NUM_TOKEN})
    assert len(shaped) == len(words)  # one word for one word: offsets still apply
    assert shaped[1] == "[X.XX]" and shaped[6] == NUM_TOKEN and shaped[-1] == NUM_TOKEN
    assert "10-K" in shaped and "Notes" in shaped  # only numbers change
    assert common_shapes([["7.00", "2.25", "1.5"], ["3.75", "2025"]], min_count=2) == [NUM_TOKEN, "[X.XX]"]
