"""Triton Python model: window logits -> entities with character spans, one JSON array per document.

The words come back from WORD_SPANS (preprocess split them), tags are decoded by
`finer.pipeline.decode` (per-word probabilities from the window that owns each word, strict IOB2),
and labels are read from finer.json in this version's own folder (written by export with the model). The optional
LABELS input (scope names such as `debt`, or FiNER types) narrows the answer to those types: one
all-tags model serves every view.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from finer.labels import ScopeError, requested_types
from finer.pipeline import TaggerConfig, decode
from finer.serving import ERROR_BAD_LABELS, coded
from finer.words import Word


def entities_json(texts: list[str], logits: np.ndarray, word_ids: np.ndarray, spans: np.ndarray, labels,
                  keep: frozenset[str] | None = None) -> list[bytes]:
    """One JSON array per document; with `keep`, only entities of those types."""
    documents = [[] for _ in texts]
    for d, start, end in spans.tolist():
        documents[d].append(Word(texts[d][start:end], start, end))
    found = decode(texts, documents, logits, word_ids, labels)
    return [json.dumps([e.to_dict() for e in doc if keep is None or e.label in keep], ensure_ascii=False).encode("utf-8")
            for doc in found]


def wanted_types(tensor) -> frozenset[str] | None:
    """The LABELS input as a set of types (None: not sent, everything is returned)."""
    if tensor is None:
        return None
    specs = [t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t) for t in tensor.as_numpy().reshape(-1)]
    return requested_types(specs)


class TritonPythonModel:
    def initialize(self, args):
        folder = Path(args["model_repository"]) / args["model_version"]  # this version's own finer.json
        self.labels = TaggerConfig.load(folder).labels
        pb_utils.Logger.log_info(f"finer_postprocess: {len(self.labels)} labels from {folder}")

    def execute(self, requests):
        responses = []
        for request in requests:
            def get(name):
                return pb_utils.get_input_tensor_by_name(request, name).as_numpy()

            # preprocess already rejected anything that is not UTF-8
            texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in get("TEXT").reshape(-1)]
            logits = get("LOGITS")
            if logits.shape[-1] != len(self.labels):
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"finer_model gives {logits.shape[-1]} labels but finer.json lists {len(self.labels)}: "
                    "re-export the model")))
                continue
            try:
                keep = wanted_types(pb_utils.get_input_tensor_by_name(request, "LABELS"))
            except ScopeError as e:
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(coded(ERROR_BAD_LABELS, f"LABELS: {e}"), pb_utils.TritonError.INVALID_ARG)))
                continue
            out = entities_json(texts, logits, get("WORD_IDS"), get("WORD_SPANS"), self.labels, keep)
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("ENTITIES", np.array(out, dtype=np.object_))]))
        return responses
