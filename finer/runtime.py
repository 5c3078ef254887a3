"""ONNX Runtime sessions, made one way for every caller: export's checks, evaluation of an export,
the benchmark's floor, the tests, and the embedded server's `onnxruntime` backend shim."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def session(path: str | Path, intra_op: int = 0, inter_op: int = 0, options=None):
    """A CPU InferenceSession of `path`; threads as Triton's config sets them (0 = ONNX Runtime's choice).
    `options`, when given, is used as it is (the backend shim builds it from config.pbtxt)."""
    import onnxruntime as ort

    if options is None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op
        options.inter_op_num_threads = inter_op
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_logits(sess):
    """The `logits_fn` of a finer_model session: (input_ids, attention_mask) -> logits."""
    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return sess.run(["logits"], {"input_ids": input_ids, "attention_mask": attention_mask})[0]

    return run
