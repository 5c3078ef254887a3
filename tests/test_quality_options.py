"""The training options of the model-quality work: augmentation, label-noise measurement, weights."""
import random

import pytest

from finer.labels import LabelScope
from finer_samples import CAPACITY, FACE, SPREAD, STATED, sentence
from training.augment import BENCHMARKS, augment, value_pools
from training.noise import untagged_numbers

DEBT = LabelScope.parse("debt")


def rows(n=30, seed=0):
    rng = random.Random(seed)
    return [sentence(rng, i % 3) for i in range(n)]


def test_augmented_copies_change_values_and_benchmarks_but_not_tags():
    data = rows()
    pools = value_pools(data, DEBT)
    assert set(pools) == {STATED, SPREAD, CAPACITY}  # FACE is outside the debt scope
    copies = augment(data, DEBT, copies=2, seed=1)
    tagged = [r for r in data if DEBT.covers(r["ner_tags"])]
    assert len(copies) == 2 * len(tagged)
    originals = [r for r in tagged for _ in range(2)]
    changed_value = changed_rate_name = 0
    for orig, new in zip(originals, copies):
        assert new["ner_tags"] == orig["ner_tags"] and len(new["tokens"]) == len(orig["tokens"])
        for w0, w1, t in zip(orig["tokens"], new["tokens"], orig["ner_tags"]):
            if t.startswith("B-") and t[2:] in DEBT.types:
                assert w1 in pools[t[2:]]  # a value of the same type
                changed_value += w0 != w1
            elif w0 == "SOFR":
                assert w1 in BENCHMARKS and w1 != "SOFR"
                changed_rate_name += 1
            else:
                assert w0 == w1  # everything else, FACE amounts included, is left alone
    assert changed_value > len(copies) // 2 and changed_rate_name > 0


def test_no_copies_by_default():
    assert augment(rows(), DEBT, copies=0) == []


def test_untagged_numbers_are_counted_in_tagged_sentences_only():
    data = [
        {"tokens": ["rate", "7.00", "%", "in", "2025", "on", "$", "300"], "ner_tags": ["O", f"B-{STATED}", "O", "O", "O", "O", "O", "O"]},
        {"tokens": ["$", "100", "of", "notes"], "ner_tags": ["O", f"B-{FACE}", "O", "O"]},
        {"tokens": ["revenue", "12.5"], "ner_tags": ["O", "O"]},
    ]
    s = untagged_numbers(data, DEBT)
    assert (s["sentences"], s["with_untagged"], s["tagged"], s["untagged"], s["untagged_years"]) == (1, 1, 1, 1, 1)
    assert s["share_sentences_with_untagged"] == 1.0


def test_loss_weights_mark_untagged_numbers_only(tmp_path):
    from transformers import AutoTokenizer

    from tiny_model import build_tiny_model
    from training.features import windows_with_labels

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path / "m"))
    row = {"tokens": ["rate", "7.00", "%", "on", "$", "300"], "ner_tags": ["O", f"B-{STATED}", "O", "O", "O", "O"]}
    label2id = {t: i for i, t in enumerate(DEBT.label_names)}
    (plain,) = windows_with_labels(tokenizer, [row], label2id, max_length=32, stride=8)
    assert "loss_weights" not in plain
    (w,) = windows_with_labels(tokenizer, [row], label2id, max_length=32, stride=8, numeric_o_weight=0.25)
    enc = tokenizer(row["tokens"], is_split_into_words=True, add_special_tokens=False)
    words = [None, *enc.word_ids(), None]  # the window adds [CLS] and [SEP]
    assert len(w["loss_weights"]) == len(words)
    for word, weight in zip(words, w["loss_weights"]):
        assert weight == (0.25 if word == 5 else 1.0)  # "300" is an untagged number; "7.00" is tagged


def test_weighted_loss_equals_plain_loss_at_weight_one_and_moves_with_the_weight(tmp_path):
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification, TrainingArguments

    from tiny_model import build_tiny_model
    from training.features import IGNORE, windows_with_labels
    from training.weighting import WeightedLossTrainer, collator

    folder = build_tiny_model(tmp_path / "m")
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModelForTokenClassification.from_pretrained(folder)
    label2id = {t: i for i, t in enumerate(DEBT.label_names)}
    data = [{**r, "ner_tags": DEBT.restrict(r["ner_tags"])} for r in rows(6)]
    collate = collator(DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE))
    weighted = windows_with_labels(tokenizer, data, label2id, max_length=64, stride=16, numeric_o_weight=0.1)
    with pytest.raises(ValueError, match="remove_unused_columns"):
        WeightedLossTrainer(model=model, args=TrainingArguments(str(tmp_path / "out"), report_to=[]))
    trainer = WeightedLossTrainer(model=model, train_dataset=weighted, data_collator=collate,
                                  args=TrainingArguments(str(tmp_path / "out"), report_to=[], remove_unused_columns=False))
    assert "loss_weights" in next(iter(trainer.get_train_dataloader()))  # the batches the loop sees

    def loss(weight):
        feats = windows_with_labels(tokenizer, data, label2id, max_length=64, stride=16, numeric_o_weight=weight)
        with torch.no_grad():
            return float(trainer.compute_loss(model, collate(feats)))

    plain = collate(windows_with_labels(tokenizer, data, label2id, max_length=64, stride=16))
    with torch.no_grad():
        reference = float(model(**plain).loss)
    assert loss(1.0 + 1e-9) == pytest.approx(reference, rel=1e-5)
    assert loss(0.1) != pytest.approx(reference, rel=1e-3)

    # --label_smoothing reaches the weighted loss as the Trainer's label_smoothing_factor
    trainer.args.label_smoothing_factor = 0.1
    with torch.no_grad():
        logits = model(**{k: v for k, v in plain.items() if k != "labels"}).logits
    smoothed = torch.nn.functional.cross_entropy(logits.flatten(0, 1), plain["labels"].flatten(),
                                                 ignore_index=IGNORE, label_smoothing=0.1)
    assert loss(1.0 + 1e-9) == pytest.approx(float(smoothed), rel=1e-5)
    assert float(smoothed) != pytest.approx(reference, rel=1e-3)


def test_noise_cli_prints_a_table_per_split(tmp_path, capsys):
    from finer_samples import write_dataset
    from training import noise

    assert noise.main(["--data", str(write_dataset(tmp_path / "d")), "--scope", "debt"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["train", "validation", "test"]
    assert noise.main(["--data", str(tmp_path / "missing")]) == 1
