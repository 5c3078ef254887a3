"""Triton Python model: each window position's best label -> entities with character spans, one JSON array per document.

finer_model returns LABEL_IDS and LABEL_SCORES [windows, length] (the best label of each position
and its probability, computed in the graph), the words come back from WORD_SPANS (preprocess split
them), and tags are decoded by `finer.pipeline.decode` (each word read at the window that owns it, strict IOB2),
and labels and the calibrated minimum scores are read from finer.json in this version's own folder
(written by export with the model). The optional
LABELS input (scope names such as `debt`, or FiNER types) narrows the answer to those types: one
all-tags model serves every view.
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
from finer.labels import ScopeError, requested_types  # noqa: E402
from finer.pipeline import TaggerConfig, decode  # noqa: E402
from finer.serving import ERROR_BAD_INPUT, ERROR_BAD_LABELS  # noqa: E402
from finer.steps import RequestError, get, respond  # noqa: E402
from finer.words import Word  # noqa: E402


def entities_json(texts: list[str], best: tuple[np.ndarray, np.ndarray], word_ids: np.ndarray, spans: np.ndarray,
                  config: TaggerConfig, keep: frozenset[str] | None = None) -> list[bytes]:
    """One JSON array per document, with the model's calibrated decision; with `keep`, only entities of those types."""
    documents = [[] for _ in texts]
    for d, start, end in spans.tolist():
        documents[d].append(Word(texts[d][start:end], start, end))
    found = decode(texts, documents, best, word_ids, config.labels, config.min_scores)
    return [json.dumps([e.to_dict() for e in doc if keep is None or e.label in keep], ensure_ascii=False).encode("utf-8")
            for doc in found]


def wanted_types(raw: np.ndarray | None) -> frozenset[str] | None:
    """The LABELS input as a set of types (None: not sent, everything is returned)."""
    if raw is None:
        return None
    specs = [t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t) for t in raw.reshape(-1)]
    try:
        return requested_types(specs)
    except ScopeError as e:
        raise RequestError(ERROR_BAD_LABELS, f"LABELS: {e}") from None


def check_tensors(texts: list[str], best: tuple[np.ndarray, np.ndarray], word_ids: np.ndarray, spans: np.ndarray,
                  n_labels: int) -> None:
    """What decoding assumes, for tensors that did not come from finer_preprocess and finer_model (a direct call)."""
    def bad(message: str):
        raise RequestError(ERROR_BAD_INPUT, message)

    ids, scores = best
    if ids.ndim != 2 or ids.shape != scores.shape or word_ids.shape != ids.shape:
        bad(f"LABEL_IDS {list(ids.shape)}, LABEL_SCORES {list(scores.shape)} and WORD_IDS {list(word_ids.shape)} "
            "must all be [windows, length]")
    if ids.size and (ids.min() < 0 or ids.max() >= n_labels):
        bad(f"LABEL_IDS must lie in [0, {n_labels}) (the served model's labels)")
    if spans.ndim != 2 or spans.shape[1] != 3:
        bad(f"WORD_SPANS {list(spans.shape)} must be [words, 3]")
    if word_ids.size and (word_ids.min() < -1 or word_ids.max() >= len(spans)):
        bad(f"WORD_IDS must lie in [-1, {len(spans)}) (one index per word of WORD_SPANS)")
    if len(spans):
        documents, starts, ends = spans.T.astype(np.int64)
        if documents.min() < 0 or documents.max() >= len(texts):
            bad(f"WORD_SPANS documents must lie in [0, {len(texts)})")
        lengths = np.array([len(t) for t in texts])[documents]
        if (starts < 0).any() or (ends < starts).any() or (ends > lengths).any():
            bad("WORD_SPANS must satisfy 0 <= start <= end <= len(TEXT[document])")


class TritonPythonModel:
    def initialize(self, args):
        folder = Path(args["model_repository"]) / args["model_version"]  # this version's own finer.json
        self.config = TaggerConfig.load(folder)
        pb_utils.Logger.log_info(f"finer_postprocess: {len(self.config.labels)} labels, "
                                 f"{len(self.config.min_scores)} calibrated minimum scores from {folder}")

    def execute(self, requests):
        return respond(pb_utils, requests, self.answer, "finer_postprocess")

    def answer(self, request) -> list:
        def text(t) -> str:
            return t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t)

        texts = [text(t) for t in get(pb_utils, request, "TEXT").reshape(-1)]
        ids, scores, word_ids, spans = (get(pb_utils, request, n)
                                        for n in ("LABEL_IDS", "LABEL_SCORES", "WORD_IDS", "WORD_SPANS"))
        check_tensors(texts, (ids, scores), word_ids, spans, len(self.config.labels))
        keep = wanted_types(get(pb_utils, request, "LABELS"))
        out = entities_json(texts, (ids, scores), word_ids, spans, self.config, keep)
        return [pb_utils.Tensor("ENTITIES", np.array(out, dtype=np.object_))]
