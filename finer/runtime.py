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


def triton_options(config: dict):
    """SessionOptions from a finer_model config (Triton's JSON form): the settings Triton's ONNX Runtime
    backend reads, and every `session.*` parameter as a session config entry. The native backend
    honours only `session.use_device_allocator_for_initializers` among those; the embedded server's
    shim honours them all, e.g. `session.intra_op.allow_spinning` (ServingSpec.spinning)."""
    import onnxruntime as ort

    # Triton's ORT backend: unset/0 = all optimisations, -1 = basic, 1 = extended, 2 = none.
    levels = {0: ort.GraphOptimizationLevel.ORT_ENABLE_ALL, -1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, 2: ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(params.get("intra_op_thread_count", 0))
    options.inter_op_num_threads = int(params.get("inter_op_thread_count", 0))
    if params.get("execution_mode", "0") == "1":
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    options.graph_optimization_level = levels[int(config.get("optimization", {}).get("graph", {}).get("level", 0))]
    for key, value in params.items():
        if key.startswith("session."):
            options.add_session_config_entry(key, value)
    return options


def ort_logits(sess):
    """The `logits_fn` of a finer_model session: (input_ids, attention_mask) -> logits."""
    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return sess.run(["logits"], {"input_ids": input_ids, "attention_mask": attention_mask})[0]

    return run
