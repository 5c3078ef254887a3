"""Documents in, entities out: the steps between word splitting and span decoding.

`encode` turns split documents into padded windows, `decode` turns the model's window logits back
into entities. The Triton preprocess/postprocess models, evaluation and the benchmarks all call
these two functions; only the model call between them differs (Triton, ONNX Runtime, PyTorch).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from finer.labels import OUTSIDE
from finer.serving import ServingSpec
from finer.spans import Entity, decode as decode_spans, drop_below
from finer.windows import bucket_length, decision, make_windows, pad_windows, word_best
from finer.words import Word, may_be_entity, shape_numbers, split_words

CONFIG_FILE = "finer.json"


@dataclass
class TaggerConfig:
    """What serving must know about an exported model; written beside model.onnx as finer.json."""

    labels: list[str]
    cls_id: int
    sep_id: int
    pad_id: int
    max_length: int = ServingSpec.max_length
    stride: int = ServingSpec.stride
    # Triton only batches equal shapes: windows are padded up to one of these lengths.
    buckets: list[int] = field(default_factory=lambda: ServingSpec().buckets)
    # Numeric-shape tokens the model was trained with (empty: numbers are read as they are).
    number_shapes: list[str] = field(default_factory=list)
    # The calibrated decision: an entity of type T scoring below min_scores[T] is not returned
    # (fitted on validation by evaluation.calibrate; empty: every entity the model finds).
    min_scores: dict[str, float] = field(default_factory=dict)

    @cached_property
    def shape_set(self) -> frozenset[str]:
        """`number_shapes` as a set, built once per loaded model rather than per request."""
        return frozenset(self.number_shapes)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CONFIG_FILE
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "TaggerConfig":
        return cls(**json.loads((Path(folder) / CONFIG_FILE).read_text()))


def load_tokenizer(path: str | Path):
    """A `tokenizers.Tokenizer` from tokenizer.json, with any saved truncation/padding switched off:
    windows do the cutting, buckets do the padding."""
    from tokenizers import Tokenizer

    return plain_tokenizer(Tokenizer.from_file(str(path)))


def plain_tokenizer(tokenizer):
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


@dataclass
class Encoded:
    input_ids: np.ndarray  # [windows, length] int64
    attention_mask: np.ndarray  # [windows, length] int64
    word_ids: np.ndarray  # [windows, length] int32: index into the request's words, or -1
    n_words: int


def tokenize(tokenizer, documents: Sequence[Sequence[str]], config: TaggerConfig | None = None) -> list:
    """Sub-tokens of split documents (no special tokens: the windows add them); numbers become
    their shape tokens when the model was trained with them."""
    shapes = config.shape_set if config is not None else frozenset()
    docs = [shape_numbers(d, shapes) if shapes else list(d) for d in documents]
    return tokenizer.encode_batch(docs, is_pretokenized=True, add_special_tokens=False)


def encode(tokenizer, documents: Sequence[Sequence[str]], config: TaggerConfig, encodings: list | None = None) -> Encoded:
    """Window a batch of split documents. `tokenizer` is a `tokenizers.Tokenizer`; pass `encodings`
    from `tokenize` when the caller already has them (e.g. to check sizes first).

    Word indices run on across documents, so one array covers the whole request.
    A window that predicts no word that may be an entity (`finer.words.may_be_entity`: decoding
    gives those O whatever the model says) is left out: in a 10-K's narrative that is a third of
    the windows. A request left with no window still yields one (empty) window: a zero-sized batch
    is not a tensor every runtime accepts.
    """
    if encodings is None:
        encodings = tokenize(tokenizer, documents, config)
    candidate = entity_words(documents)
    windows = []
    offset = 0
    for words, enc in zip(documents, encodings):
        token_words = [None if w is None else w + offset for w in enc.word_ids]
        windows += [w for w in make_windows(enc.ids, token_words, cls_id=config.cls_id, sep_id=config.sep_id,
                                            max_length=config.max_length, stride=config.stride)
                    if candidate[[t for t, owned in zip(w.token_words, w.owned) if owned]].any()]
        offset += len(words)
    if not windows:
        windows = make_windows([config.pad_id], [None], cls_id=config.cls_id, sep_id=config.sep_id,
                               max_length=config.max_length, stride=config.stride)
    length = bucket_length(max(len(w.input_ids) for w in windows), config.buckets)
    arrays = pad_windows(windows, length, config.pad_id)
    return Encoded(n_words=offset, **arrays)


def entity_words(documents: Sequence[Sequence[str]]) -> np.ndarray:
    """[words] bool over the request: may this word carry an entity (`finer.words.may_be_entity`)?"""
    return np.fromiter((may_be_entity(w) for d in documents for w in d), dtype=bool)


Decision = tuple[np.ndarray, np.ndarray]  # per position: label id [windows, length], its probability


def word_tags(best_labels: Decision, word_ids: np.ndarray, n_words: int, labels: Sequence[str],
              allowed: np.ndarray | None = None) -> tuple[list[str], list[float]]:
    """The best tag of every word of the request and its probability; words not `allowed` get O."""
    best, prob = word_best(*best_labels, word_ids, n_words)
    if allowed is not None:
        outside = ~allowed
        best[outside] = list(labels).index(OUTSIDE)
        prob[outside] = 1.0  # not a candidate word: O by rule, not by the model
    return [labels[i] for i in best], prob.tolist()


def decode(
    texts: Sequence[str],
    documents: Sequence[Sequence[Word]],
    best_labels: Decision,
    word_ids: np.ndarray,
    labels: Sequence[str],
    min_scores: dict[str, float] | None = None,
) -> list[list[Entity]]:
    """Entities per document, with character spans into `texts`, from each position's best label
    (`finer.windows.decision`: the graph's label_ids and label_scores); those below their type's
    `min_scores` (the calibrated decision) are left out."""
    n_words = sum(len(d) for d in documents)
    allowed = entity_words([[w.text for w in d] for d in documents])
    tags, scores = word_tags(best_labels, word_ids, n_words, labels, allowed)
    out, offset = [], 0
    for text, words in zip(texts, documents):
        end = offset + len(words)
        out.append(decode_spans(text, words, tags[offset:end], scores[offset:end], min_scores))
        offset = end
    return out


LogitsFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (input_ids, attention_mask) -> logits


class Tagger:
    """encode -> `logits_fn` -> decode in one process: what the ensemble does, for any model call
    (ONNX Runtime, PyTorch). Evaluation, the benchmark's floor and the tests' reference use it; the
    Triton steps run the same two halves in their own processes."""

    def __init__(self, tokenizer, config: TaggerConfig, logits_fn: LogitsFn):
        self.tokenizer, self.config, self.logits_fn = tokenizer, config, logits_fn

    @classmethod
    def from_version(cls, folder: str | Path, intra_op: int = 0, inter_op: int = 0) -> "Tagger":
        """The exported model in a version folder, run with ONNX Runtime."""
        from finer.runtime import ort_logits, session

        folder = Path(folder)
        return cls(load_tokenizer(folder / "tokenizer.json"), TaggerConfig.load(folder),
                   ort_logits(session(folder / "model.onnx", intra_op, inter_op)))

    def entities(self, texts: Sequence[str]) -> list[list[Entity]]:
        """Entities of each raw text, with character spans into it."""
        documents = [split_words(t) for t in texts]
        enc = encode(self.tokenizer, [[w.text for w in d] for d in documents], self.config)
        return decode(texts, documents, self.decide(enc), enc.word_ids, self.config.labels, self.config.min_scores)

    def decide(self, enc: Encoded) -> Decision:
        """The model's best label per owned position: what the served graph returns, from the logits."""
        return decision(self.logits_fn(enc.input_ids, enc.attention_mask), enc.word_ids >= 0)

    def word_scores(self, documents: Sequence[Sequence[str]]) -> list[tuple[list[str], list[float]]]:
        """The model's own tag of every word of each pre-split document (FiNER-format `tokens`) and its
        probability, before the calibrated decision (what calibration is fitted on)."""
        enc = encode(self.tokenizer, documents, self.config)
        tags, scores = word_tags(self.decide(enc), enc.word_ids, enc.n_words, self.config.labels,
                                 entity_words(documents))
        out, offset = [], 0
        for doc in documents:
            out.append((tags[offset : offset + len(doc)], scores[offset : offset + len(doc)]))
            offset += len(doc)
        return out

    def word_tags(self, documents: Sequence[Sequence[str]]) -> list[list[str]]:
        """The tag of every word of each pre-split document, with the calibrated decision applied."""
        return [drop_below(tags, scores, self.config.min_scores) for tags, scores in self.word_scores(documents)]
