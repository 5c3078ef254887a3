"""Sliding windows over sub-tokens, so documents longer than the model's context are tagged whole.

A document's words are tokenised once; its sub-tokens are cut into windows of at most
`max_length - 2` (room for the two special tokens) that overlap by `stride`. Every word is
predicted exactly once: by the window in which its first sub-token has the most context on both
sides (the rule Hugging Face's QA examples use for overlapping spans).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class Window:
    input_ids: list[int]
    token_words: list[int]  # word index of each position; -1 for special tokens
    owned: list[bool]  # True where the position is the first sub-token of a word this window predicts


def make_windows(
    token_ids: Sequence[int],
    token_words: Sequence[int | None],
    *,
    cls_id: int,
    sep_id: int,
    max_length: int,
    stride: int,
) -> list[Window]:
    """Cut one document's sub-tokens (no special tokens yet) into overlapping windows."""
    room = max_length - 2
    if room < 1 or not 0 <= stride < room:
        raise ValueError(f"need max_length > 2 and 0 <= stride < max_length - 2, got {max_length}, {stride}")
    n = len(token_ids)
    if n == 0:
        return []
    spans = []
    start = 0
    while True:
        end = min(start + room, n)
        spans.append((start, end))
        if end == n:
            break
        start += room - stride

    first_position = {}
    for pos, word in enumerate(token_words):
        if word is not None and word not in first_position:
            first_position[word] = pos
    owner = {}
    for word, pos in first_position.items():
        best, best_context = 0, -1
        for k, (s, e) in enumerate(spans):
            if s <= pos < e:
                context = min(pos - s, e - 1 - pos)
                if context > best_context:
                    best, best_context = k, context
        owner[word] = best

    windows = []
    for k, (s, e) in enumerate(spans):
        words = [-1 if w is None else w for w in token_words[s:e]]
        owned = [w >= 0 and first_position[w] == s + i and owner[w] == k for i, w in enumerate(words)]
        windows.append(
            Window(
                input_ids=[cls_id, *token_ids[s:e], sep_id],
                token_words=[-1, *words, -1],
                owned=[False, *owned, False],
            )
        )
    return windows


def window_count(n_tokens: int, *, max_length: int, stride: int) -> int:
    """How many windows `make_windows` cuts from `n_tokens` sub-tokens, without building them."""
    room = max_length - 2
    if n_tokens <= room:
        return 1 if n_tokens else 0
    return 1 + -(-(n_tokens - room) // (room - stride))


def bucket_length(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that fits `length`: equal shapes are what Triton's batcher can merge."""
    for b in sorted(buckets):
        if length <= b:
            return b
    return length


def pad_windows(windows: Sequence[Window], length: int, pad_id: int) -> dict[str, np.ndarray]:
    """Stack windows into [n, length] arrays; `word_ids` holds the predicted word per position, else -1."""
    n = len(windows)
    input_ids = np.full((n, length), pad_id, dtype=np.int64)
    attention_mask = np.zeros((n, length), dtype=np.int64)
    word_ids = np.full((n, length), -1, dtype=np.int32)
    for i, w in enumerate(windows):
        m = len(w.input_ids)
        input_ids[i, :m] = w.input_ids
        attention_mask[i, :m] = 1
        word_ids[i, :m] = np.where(w.owned, w.token_words, -1)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "word_ids": word_ids}


def decision(logits: np.ndarray, owned: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each position's most probable label and that label's probability, from logits [n, length, n_labels]:
    what export appends to the graph (outputs label_ids and label_scores), computed here for a model
    run in-process. With `owned` (bool [n, length]), only those positions are computed (the rest get
    label 0 and probability 1): a request padded to a long bucket holds many more positions, and a
    279-label softmax over each of them is most of the work."""
    ids = np.zeros(logits.shape[:2], dtype=np.int64)
    scores = np.ones(logits.shape[:2], dtype=np.float32)
    mask = np.ones(logits.shape[:2], dtype=bool) if owned is None else owned
    picked = logits[mask]  # [positions, n_labels]
    ids[mask] = picked.argmax(axis=-1)
    # softmax at the best label: exp(0) / sum(exp(l - max))
    scores[mask] = 1.0 / np.exp(picked - picked.max(axis=-1, keepdims=True)).sum(axis=-1)
    return ids, scores


def word_best(label_ids: np.ndarray, label_scores: np.ndarray, word_ids: np.ndarray,
              n_words: int) -> tuple[np.ndarray, np.ndarray]:
    """Each word's label and probability, read at the one position of the window that owns it
    (word_ids >= 0). Words that produced no sub-token (the tokenizer dropped them) get label 0 (`O`), p = 1."""
    mask = word_ids >= 0
    best = np.zeros(n_words, dtype=np.int64)
    prob = np.ones(n_words, dtype=np.float32)
    best[word_ids[mask]] = label_ids[mask]
    prob[word_ids[mask]] = label_scores[mask]
    return best, prob
