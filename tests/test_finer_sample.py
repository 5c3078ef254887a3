"""The FiNER-train sample reader: partial labels kept as UNKNOWN, merged batches, counted skips."""
import json
from pathlib import Path

import pytest

from finer.labels import UNKNOWN, LabelScope
from filings.sources import LoadReport
from evaluation.evaluate import known_only
from training.features import IGNORE, windows_with_labels
from filings.finer_sample import load_sample, part_of, read_batches, to_row

SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/finer139-train-sample/finer_train_batched_500.jsonl"
STATED, SPREAD = "DebtInstrumentInterestRateStatedPercentage", "DebtInstrumentBasisSpreadOnVariableRate1"
FACE = "DebtInstrumentFaceAmount"


def batch(*questions: tuple[str, str, str]) -> str:
    """One line of the file: questions (word, sentence, concept) in order."""
    asked = "\n".join(f'{i}. What is best tag for entity "{w}" in sentence: "{s}?"' for i, (w, s, _) in enumerate(questions, 1))
    return json.dumps({"context": f"You are XBRL expert. ...\n{asked}\nOutput US GAAP tags:",
                       "target": ",".join(c for *_, c in questions)}) + "\n"


A = "The 7.00 % Senior Notes bear interest at LIBOR plus 2.5 % and 3.1 % thereafter ."
B = "We issued $ 500 million of notes ."
C = "The 5.0 % notes and the 6.0 % notes and the 7.0 % notes and the 8.0 % notes ."


def rows_of(tmp_path, *lines) -> tuple[dict, LoadReport]:
    path = tmp_path / "batches.jsonl"
    path.write_text("".join(lines))
    report = LoadReport()
    sentences = read_batches(path, report)
    return {text: to_row(text, s)[0] for text, s in sentences.items()}, report


def test_complete_sentence_inside_a_batch_is_labelled_throughout(tmp_path):
    rows, _ = rows_of(tmp_path, batch(("1", "x 1 .", FACE), ("7.00", A, STATED), ("2.5", A, SPREAD), ("9", "y 9 .", FACE)))
    tags = rows[A]["ner_tags"]
    assert tags[1] == f"B-{STATED}" and tags[10] == f"B-{SPREAD}"
    assert UNKNOWN not in tags  # two labels, first and last question inside the batch: complete
    assert tags[13] == "O"  # 3.1 is known to be untagged


def test_three_labels_leave_the_rest_unknown(tmp_path):
    rows, _ = rows_of(tmp_path, batch(("1", "x 1 .", FACE), ("5.0", C, STATED), ("6.0", C, STATED), ("7.0", C, STATED)),
                      batch(("2", "z 2 .", FACE), ("3", "w 3 .", FACE), ("4", "v 4 .", FACE), ("5", "u 5 .", FACE)))
    tags = rows[C]["ner_tags"]
    seven = C.split(" ").index("7.0")
    assert tags[seven] == f"B-{STATED}"
    assert set(tags[seven + 1:]) == {UNKNOWN}  # the batches kept the first three labels only
    assert tags[0] == "O"


def test_a_sentence_at_a_batch_edge_is_unknown_beyond_its_labels(tmp_path):
    # A's questions end the batch: its later labels may sit in a batch the file lacks.
    rows, _ = rows_of(tmp_path, batch(("1", "x 1 .", FACE), ("2", "y 2 .", FACE), ("3", "z 3 .", FACE), ("7.00", A, STATED)))
    tags = rows[A]["ner_tags"]
    assert tags[1] == f"B-{STATED}" and tags[0] == "O"
    assert set(tags[2:]) == {UNKNOWN}
    # B's question opens the batch: labels before it may be missing, so the words before are unknown.
    rows, _ = rows_of(tmp_path, batch(("500", B, FACE), ("1", "x 1 .", FACE), ("2", "y 2 .", FACE), ("3", "z 3 .", FACE)))
    tags = rows[B]["ner_tags"]
    assert tags[:3] == [UNKNOWN] * 3 and tags[3] == f"B-{FACE}" and tags[4:] == ["O"] * 4


def test_a_straddling_sentence_is_merged_from_both_batches(tmp_path):
    rows, _ = rows_of(tmp_path, batch(("1", "x 1 .", FACE), ("2", "y 2 .", FACE), ("3", "z 3 .", FACE), ("7.00", A, STATED)),
                      batch(("2.5", A, SPREAD), ("1", "x 1 .", FACE), ("2", "y 2 .", FACE), ("3", "z 3 .", FACE)))
    tags = rows[A]["ner_tags"]
    assert tags[1] == f"B-{STATED}" and tags[10] == f"B-{SPREAD}"
    assert UNKNOWN not in tags


def test_a_repeated_word_is_unknown_at_every_place_it_could_be(tmp_path):
    text = "A fee of 0.5 % and a margin of 0.5 % apply ."
    rows, _ = rows_of(tmp_path, batch(("1", "x 1 .", FACE), ("0.5", text, SPREAD), ("2", "y 2 .", FACE), ("3", "z 3 .", FACE)))
    tags = rows[text]["ner_tags"]
    assert [tags[i] for i, t in enumerate(text.split(" ")) if t == "0.5"] == [UNKNOWN, UNKNOWN]
    assert f"B-{SPREAD}" not in tags


def test_bad_rows_are_counted_skips_with_reasons(tmp_path):
    good = batch(("1", "x 1 .", FACE), ("7.00", A, STATED), ("2", "y 2 .", FACE), ("3", "z 3 .", FACE))
    uneven = json.loads(batch(("1", "x 1 .", FACE), ("2", "y 2 .", FACE)))
    uneven["target"] = FACE
    absent = batch(("1", "x 1 .", FACE), ("42", B, FACE), ("2", "y 2 .", FACE), ("3", "z 3 .", FACE))
    path = tmp_path / "b.jsonl"
    path.write_text(good + json.dumps(uneven) + "\n" + absent + good[: len(good) // 2])  # truncated last line
    report = LoadReport()
    parts = load_sample(path, report)
    reasons = " ".join(report.examples)
    assert sum(report.skipped.values()) == 3
    assert "2 questions but 1 answers" in reasons and "not a question batch" in reasons
    assert "'42' is not in its sentence" in reasons
    assert B not in {" ".join(r["tokens"]) for rows in parts.values() for r in rows}


def test_unknown_words_get_no_loss_and_no_score():
    class Tok:  # one sub-token per word, enough for the alignment
        def __call__(self, words, is_split_into_words, add_special_tokens):
            class Enc(dict):
                def word_ids(self, j):
                    return list(range(len(words[j])))
            return Enc(input_ids=[[5] * len(w) for w in words])

        cls_token_id, sep_token_id, pad_token_id = 1, 2, 0

    scope = LabelScope.parse("debt")
    row = {"tokens": ["7.00", "%", "then", "2.5"], "ner_tags": [f"B-{STATED}", "O", UNKNOWN, UNKNOWN]}
    label2id = {t: i for i, t in enumerate(scope.label_names)}
    (window,) = windows_with_labels(Tok(), [row], label2id, max_length=16, stride=4)
    assert window["labels"][1:-1] == [label2id[f"B-{STATED}"], 0, IGNORE, IGNORE]
    assert scope.restrict(row["ner_tags"])[2:] == [UNKNOWN, UNKNOWN]
    gold, pred = known_only(row["ner_tags"], [f"B-{STATED}", "O", "O", f"B-{SPREAD}"])
    assert gold == [f"B-{STATED}", "O", "O", "O"] and pred == [f"B-{STATED}", "O", "O", "O"]


def test_the_split_is_fixed_by_the_sentence():
    assert part_of(A) == part_of(A)
    names = {part_of(f"sentence {i}") for i in range(200)}
    assert names == {"dev", "validation", "train"}


@pytest.mark.skipif(not SAMPLE.is_file(), reason="the FiNER sample is in ../shared/data")
def test_the_real_sample():
    report = LoadReport()
    parts = load_sample(SAMPLE, report)
    n = {k: len(v) for k, v in parts.items()}
    assert sum(n.values()) + sum(report.skipped.values()) == 1380
    assert 0.28 < n["dev"] / 1380 < 0.40
    debt = LabelScope.parse("debt")
    assert sum(debt.covers(r["ner_tags"]) for r in parts["dev"]) >= 50
