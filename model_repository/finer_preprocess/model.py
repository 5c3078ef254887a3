"""Triton Python model: documents (TEXT) -> padded sub-token windows for finer_model.

Words are split FiNER-style (`finer.words.split_words`), so `7.00%` reaches the tokenizer as
`7.00 %` exactly as in training, then `finer.pipeline.encode` cuts long documents into overlapping
windows padded to a few length buckets (equal shapes let Triton's dynamic batcher merge requests).
WORD_SPANS carries every word's (document, start, end) so postprocess rebuilds the same words
without splitting again.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

# The shared core this version was exported with (`<step>/<N>/finer/`, written by export) comes
# first, so a rolled-back version runs the code it was tested with; else the installed one.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from finer.pipeline import TaggerConfig, encode, load_tokenizer, tokenize  # noqa: E402
from finer.serving import ERROR_BAD_TEXT, ERROR_TOO_BIG  # noqa: E402
from finer.steps import RequestError, get, respond  # noqa: E402
from finer.windows import window_count  # noqa: E402
from finer.words import split_words  # noqa: E402


def decode_texts(raw: np.ndarray, max_bytes: int) -> list[str]:
    """TEXT as str, refused before any work when it holds more than `max_bytes` of UTF-8."""
    size = sum(len(item) if isinstance(item, bytes) else len(str(item).encode("utf-8")) for item in raw.reshape(-1))
    if size > max_bytes:
        raise RequestError(ERROR_TOO_BIG, f"TEXT holds {size} bytes > max_text_bytes {max_bytes}: "
                           "split the documents into smaller requests (the finer client does)")
    texts = []
    for i, item in enumerate(raw.reshape(-1)):
        if isinstance(item, str):
            texts.append(item)
            continue
        try:
            texts.append(bytes(item).decode("utf-8"))
        except UnicodeDecodeError as e:
            raise RequestError(
                ERROR_BAD_TEXT, f"TEXT[{i}] is not valid UTF-8 (byte {e.start}: {bytes(item)[e.start:e.start + 1]!r}): "
                "send documents as UTF-8 text"
            ) from None
    return texts


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.max_documents = int(params["max_documents"])
        self.max_windows = int(params["max_windows"])
        self.max_text_bytes = int(params["max_text_bytes"])
        # This version's own folder: the tokenizer of the finer_model version with the same number.
        folder = Path(args["model_repository"]) / args["model_version"]
        self.config = TaggerConfig.load(folder)
        self.tokenizer = load_tokenizer(folder / "tokenizer.json")
        self.encode(["Warm up: 7.00% of $100 million."])
        pb_utils.Logger.log_info(f"finer_preprocess: tokenizer and windows from {folder}")

    def encode(self, texts: list[str]):
        if len(texts) > self.max_documents:
            raise RequestError(
                ERROR_TOO_BIG, f"{len(texts)} documents > max_documents {self.max_documents}: send fewer documents per request"
            )
        documents = [split_words(t) for t in texts]
        words = [[w.text for w in d] for d in documents]
        # Count windows before building them: a huge document would otherwise cost minutes in windowing.
        encodings = tokenize(self.tokenizer, words, self.config)
        lengths = [len(e.ids) for e in encodings]
        counts = [window_count(n, max_length=self.config.max_length, stride=self.config.stride) for n in lengths]
        for i, n in enumerate(counts):
            if n > self.max_windows:
                raise RequestError(
                    ERROR_TOO_BIG, f"document TEXT[{i}] is too long: {n} windows > limit {self.max_windows} "
                    f"({lengths[i]} sub-tokens); split the text"
                )
        if sum(counts) > self.max_windows:
            raise RequestError(
                ERROR_TOO_BIG, f"the documents need {sum(counts)} windows together > limit {self.max_windows}: "
                "send fewer documents per request"
            )
        encoded = encode(self.tokenizer, words, self.config, encodings)
        spans = np.array(
            [(d, w.start, w.end) for d, doc in enumerate(documents) for w in doc], dtype=np.int32
        ).reshape(-1, 3)
        return encoded, spans

    def execute(self, requests):
        return respond(pb_utils, requests, self.answer, "finer_preprocess")

    def answer(self, request) -> list:
        encoded, spans = self.encode(decode_texts(get(pb_utils, request, "TEXT"), self.max_text_bytes))
        return [
            pb_utils.Tensor("INPUT_IDS", encoded.input_ids),
            pb_utils.Tensor("ATTENTION_MASK", encoded.attention_mask),
            pb_utils.Tensor("WORD_IDS", encoded.word_ids),
            pb_utils.Tensor("WORD_SPANS", spans),
        ]
