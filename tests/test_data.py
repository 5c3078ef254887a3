import json
import zipfile

import pytest

from finer.labels import DEBT_TYPES, LabelScope, ScopeError, finer_label_names
from filings.sources import DataError, LoadReport, load_splits, require, select

STATED = "DebtInstrumentInterestRateStatedPercentage"
FACE = "DebtInstrumentFaceAmount"


def write_split(folder, name, rows):
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" if isinstance(r, dict) else r for r in rows))


def rows():
    return [
        {"tokens": ["the", "7.00", "%", "notes"], "ner_tags": ["O", f"B-{STATED}", "O", "O"]},
        {"tokens": ["$", "100", "million"], "ner_tags": ["O", f"B-{FACE}", "O"]},
        {"tokens": ["no", "numbers"], "ner_tags": ["O", "O"]},
    ]


def test_label_ids_follow_the_list_not_a_bio_rule():
    names = finer_label_names()
    assert len(names) == 279 and names[0] == "O"
    # the sample row's id 41 is the stated rate (B/I are not paired by position)
    assert names[41] == f"B-{STATED}" and names[37] == f"B-{FACE}"
    debt = LabelScope.parse("debt")
    assert debt.types == DEBT_TYPES and len(debt.label_names) == 9
    assert len(LabelScope.parse("all").label_names) == 279
    with pytest.raises(ScopeError, match="NotAType"):
        LabelScope.parse(f"{STATED},NotAType")


def test_folder_with_integer_and_name_tags(tmp_path):
    write_split(tmp_path, "train", rows())
    write_split(tmp_path, "validation", [{"tokens": ["7.00"], "ner_tags": [41]}])
    splits = load_splits(tmp_path)
    assert set(splits) == {"train", "validation"}
    assert splits["validation"][0]["ner_tags"] == [f"B-{STATED}"]


def test_malformed_lines_are_counted_and_reported(tmp_path):
    write_split(tmp_path, "train", [*rows(), "{not json\n", json.dumps({"tokens": ["a"], "ner_tags": []}) + "\n"])
    report = LoadReport()
    splits = load_splits(tmp_path, report)
    assert len(splits["train"]) == 3
    assert sum(report.skipped.values()) == 2
    assert "train.jsonl:4" in report.summary() and "skipped 2" in report.summary()


def test_unknown_label_names_file_and_line(tmp_path):
    write_split(tmp_path, "train", [rows()[0], {"tokens": ["x"], "ner_tags": ["B-Bogus"]}])
    with pytest.raises(DataError, match=r"train.jsonl:2: unknown label 'B-Bogus'"):
        load_splits(tmp_path)


def test_zip_like_the_hub_archive(tmp_path):
    z = tmp_path / "finer139.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for split in ("train", "validation", "test"):
            zf.writestr(f"finer139/{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows()))
    splits = load_splits(z)
    assert {k: len(v) for k, v in splits.items()} == {"train": 3, "validation": 3, "test": 3}


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_splits(tmp_path / "nope")
    with pytest.raises(DataError, match="no train/validation/test"):
        load_splits(tmp_path)


def test_scope_filtering_and_mapping_to_outside():
    debt = LabelScope.parse("debt")
    filtered = select(rows(), debt, filtered=True)
    assert [r["tokens"][1] for r in filtered] == ["7.00"]
    kept = select(rows(), debt, filtered=False)
    assert len(kept) == 3 and kept[1]["ner_tags"] == ["O", "O", "O"]  # face amount is outside the scope
    with pytest.raises(DataError, match="no entity of the label scope"):
        require(select(rows()[1:], debt, filtered=False), "the test split")
    with pytest.raises(DataError, match="is empty"):
        require([], "the test split")
