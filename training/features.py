"""Sentences -> labelled training windows (sub-word label alignment).

The windows are the ones serving makes (`finer.windows.make_windows`), so a sentence longer than
the model's context is trained on the way it will be predicted. A word's label goes on its first
sub-token (FiNER and the seed) or, with `label_all`, on all its sub-tokens (B- continuations as I-).
"""
from __future__ import annotations

from typing import Sequence

from tqdm.auto import tqdm

from finer.labels import UNKNOWN
from finer.serving import ServingSpec
from finer.windows import make_windows
from finer.words import is_number, shape_numbers

IGNORE = -100  # positions the loss and the metrics skip


def special_ids(tokenizer) -> tuple[int, int, int]:
    cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else sep_id
    return cls_id, sep_id, pad_id


def windows_with_labels(
    tokenizer,
    rows: Sequence[dict],
    label2id: dict[str, int],
    *,
    max_length: int,
    stride: int,
    label_all: bool = False,
    number_shapes: Sequence[str] = (),
    numeric_o_weight: float = 1.0,
    desc: str = "tokenising",
) -> list[dict]:
    """Windows of `rows` with their labels; with `number_shapes`, numbers are read as shape tokens
    exactly as `finer.pipeline.tokenize` does at serving time. With `numeric_o_weight` != 1 each
    window also gets `loss_weights`: that weight where a number is labelled `O`, else 1."""
    cls_id, sep_id, _ = special_ids(tokenizer)
    shapes = set(number_shapes)
    # label_all: a B- word's later sub-tokens take its I- label (the B- one where the scope has no I-)
    inside = {i: label2id.get("I-" + t[2:], i) if t.startswith("B-") else i for t, i in label2id.items()}
    features = []
    chunk = 1024
    with tqdm(total=len(rows), desc=desc, unit="sent") as bar:
        for i in range(0, len(rows), chunk):
            batch = rows[i : i + chunk]
            words = [shape_numbers(r["tokens"], shapes) if shapes else r["tokens"] for r in batch]
            enc = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
            for j, row in enumerate(batch):
                ids = [IGNORE if t == UNKNOWN else label2id[t] for t in row["ner_tags"]]
                loose = ({k for k, t in enumerate(row["ner_tags"]) if t == "O" and is_number(row["tokens"][k])}
                         if numeric_o_weight != 1.0 else set())
                for w in make_windows(enc["input_ids"][j], enc.word_ids(j), cls_id=cls_id, sep_id=sep_id,
                                      max_length=max_length, stride=stride):
                    features.append({
                        "input_ids": w.input_ids,
                        "attention_mask": [1] * len(w.input_ids),
                        "labels": _labels(w, ids, inside if label_all else None),
                    })
                    if numeric_o_weight != 1.0:
                        features[-1]["loss_weights"] = [numeric_o_weight if word in loose else 1.0
                                                        for word in w.token_words]
            bar.update(len(batch))
    return features


def _labels(window, word_labels: list[int], inside: dict[int, int] | None) -> list[int]:
    """Labels of one window's positions; with `inside`, continuation sub-tokens are labelled too."""
    owned_words = {w for w, own in zip(window.token_words, window.owned) if own}
    out = []
    for word, own in zip(window.token_words, window.owned):
        if own:
            out.append(word_labels[word])
        elif inside is not None and word in owned_words and word_labels[word] != IGNORE:
            out.append(inside[word_labels[word]])
        else:
            out.append(IGNORE)
    return out


def tagger_config(tokenizer, id2label: dict, max_length: int = ServingSpec.max_length, stride: int = ServingSpec.stride,
                  number_shapes: Sequence[str] = ()):
    """The serving-side description of a trained model (saved as finer.json on export)."""
    from finer.pipeline import TaggerConfig

    cls_id, sep_id, pad_id = special_ids(tokenizer)
    labels = [id2label[i] for i in range(len(id2label))]
    return TaggerConfig(labels=labels, cls_id=cls_id, sep_id=sep_id, pad_id=pad_id,
                        max_length=max_length, stride=stride, number_shapes=list(number_shapes))
