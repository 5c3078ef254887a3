"""A Python-based Triton backend named `onnxruntime`, for the embedded server only.

The pytriton wheel's Triton has no native ONNX Runtime backend. Placed at
`<backend-directory>/onnxruntime/model.py`, this file makes every `backend: "onnxruntime"` model run
through the Python backend with onnxruntime's Python API, reading the config.pbtxt settings the
native backend reads (`intra_op_thread_count`, `inter_op_thread_count`, `execution_mode`,
`optimization { graph { level } }`, `default_model_filename`). The official container ignores this
file and serves the same repository with its native backend. To fail where that one fails, loading
checks config.pbtxt against model.onnx with the native rules: inputs may be looser than the model,
outputs must match exactly (a fixed label axis in model.onnx would not fit logits dims [-1, -1]).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from finer.runtime import session

# Triton's ORT backend: unset/0 = all optimisations, -1 = basic, 1 = extended, 2 = none.
GRAPH_LEVELS = {
    0: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    -1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    2: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}

TRITON_TYPES = {
    "tensor(bool)": "TYPE_BOOL", "tensor(uint8)": "TYPE_UINT8", "tensor(int8)": "TYPE_INT8",
    "tensor(int16)": "TYPE_INT16", "tensor(int32)": "TYPE_INT32", "tensor(int64)": "TYPE_INT64",
    "tensor(float16)": "TYPE_FP16", "tensor(float)": "TYPE_FP32", "tensor(double)": "TYPE_FP64",
    "tensor(string)": "TYPE_STRING",
}


def shape_of(tensor) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in tensor.shape]  # symbolic dims are -1


def check_tensors(kind: str, declared: list[dict], actual: list, batched: bool, exact: bool) -> None:
    """Config tensors vs the session's, with the native backend's rules (CompareDimsSupported)."""
    found = {t.name: t for t in actual}
    for io in declared:
        name = io["name"]
        if name not in found:
            raise pb_utils.TritonModelException(
                f"config {kind} '{name}' is not in model.onnx (it has {', '.join(sorted(found))})")
        tensor = found[name]
        if TRITON_TYPES.get(tensor.type) != io["data_type"]:
            raise pb_utils.TritonModelException(
                f"config {kind} '{name}' is {io['data_type']} but model.onnx has {tensor.type}")
        model = shape_of(tensor)
        dims = ([-1] if batched else []) + [int(d) for d in io["dims"]]
        if batched and (not model or model[0] != -1):
            raise pb_utils.TritonModelException(
                f"max_batch_size > 0 but model.onnx {kind} '{name}' has no dynamic batch dimension: {model}")
        if len(model) != len(dims) or any(m != d for m, d in zip(model, dims) if exact or m != -1):
            raise pb_utils.TritonModelException(
                f"model.onnx {kind} '{name}' has shape {model} but config.pbtxt gives {dims}"
                + (" (outputs must match exactly, as in Triton's ONNX Runtime backend)" if exact else ""))


def session_options(config: dict) -> ort.SessionOptions:
    params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(params.get("intra_op_thread_count", 0))
    options.inter_op_num_threads = int(params.get("inter_op_thread_count", 0))
    if params.get("execution_mode", "0") == "1":
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    level = int(config.get("optimization", {}).get("graph", {}).get("level", 0))
    options.graph_optimization_level = GRAPH_LEVELS[level]
    return options


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        filename = config.get("default_model_filename") or "model.onnx"
        path = Path(args["model_repository"]) / args["model_version"] / filename
        if not path.is_file():
            raise pb_utils.TritonModelException(f"{path} not found: run `make export`")
        self.session = session(path, options=session_options(config))
        self.batched = int(config.get("max_batch_size", 0)) > 0
        check_tensors("input", config["input"], self.session.get_inputs(), self.batched, exact=False)
        check_tensors("output", config["output"], self.session.get_outputs(), self.batched, exact=True)
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def run(self, feeds: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
        """One session run for requests whose shapes agree past the batch axis, split back per request."""
        if len(feeds) == 1 or not self.batched:
            return [self.session.run(self.outputs, f) for f in feeds]
        merged = {name: np.concatenate([f[name] for f in feeds]) for name in self.inputs}
        outputs = self.session.run(self.outputs, merged)
        cuts = np.cumsum([len(f[self.inputs[0]]) for f in feeds])[:-1]
        per_output = [np.split(out, cuts) for out in outputs]
        return [list(parts) for parts in zip(*per_output)]

    def execute(self, requests):
        feeds = [
            {name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs}
            for r in requests
        ]
        # The dynamic batcher only merges equal shapes, but group anyway so a mixed list still works.
        groups: dict[tuple, list[int]] = {}
        for i, feed in enumerate(feeds):
            groups.setdefault(tuple(feed[n].shape[1:] for n in self.inputs), []).append(i)
        responses = [None] * len(requests)
        for members in groups.values():
            try:
                results = self.run([feeds[i] for i in members])
            except Exception as e:  # noqa: BLE001 - a bad request must not take the model down
                error = pb_utils.TritonError(f"onnxruntime: {e}")
                for i in members:
                    responses[i] = pb_utils.InferenceResponse(error=error)
                continue
            for i, outputs in zip(members, results):
                responses[i] = pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(n, np.ascontiguousarray(o)) for n, o in zip(self.outputs, outputs)]
                )
        return responses
