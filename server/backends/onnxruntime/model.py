"""A Python-based Triton backend named `onnxruntime`, for the embedded server only.

The pytriton wheel's Triton has no native ONNX Runtime backend. Placed at
`<backend-directory>/onnxruntime/model.py`, this file makes every `backend: "onnxruntime"` model run
through the Python backend with onnxruntime's Python API, reading the config.pbtxt settings the
native backend reads (`intra_op_thread_count`, `inter_op_thread_count`, `execution_mode`,
`optimization { graph { level } }`, `default_model_filename`) and every `session.*` parameter
(`finer.runtime.triton_options`). The official container ignores this
file and serves the same repository with its native backend. To fail where that one fails, loading
checks config.pbtxt against model.onnx with the native rules: every config tensor must be in the
model, inputs may be looser than the model, outputs must match exactly; model outputs the config
does not name are neither bound nor copied out (the logits beside label_ids and label_scores).

Requests are checked one by one before they are batched (integer inputs are token indices and
masks here, so they may not be negative or beyond int32; every input must have the same batch size), and a batch
that ONNX Runtime refuses is run again request by request, so a bad request fails alone, with
INVALID_ARGUMENT and ONNX Runtime's status message, never with its batch mates.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from finer.runtime import session, triton_options
from finer.serving import ERROR_BAD_INPUT, coded

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


INT32_MAX = np.iinfo(np.int32).max


class BadRequest(ValueError):
    pass


def check_request(feed: dict[str, np.ndarray], batched: bool) -> None:
    """What one request must satisfy before it may share a session run with others."""
    if batched and len({a.shape[0] if a.ndim else -1 for a in feed.values()}) > 1:
        raise BadRequest("inputs differ in batch size: "
                         + ", ".join(f"{n} {list(a.shape)}" for n, a in feed.items()))
    for name, array in feed.items():
        if np.issubdtype(array.dtype, np.integer) and array.size and array.min() < 0:
            raise BadRequest(f"{name} holds negative values (token indices and masks are >= 0)")
        # The exported graph narrows indices to int32: a larger one would wrap to another token.
        if np.issubdtype(array.dtype, np.integer) and array.size and array.max() > INT32_MAX:
            raise BadRequest(f"{name} holds values above {INT32_MAX} (token indices and masks fit int32)")


def runtime_message(error: Exception) -> str:
    """ONNX Runtime's status message without its node names and prefixes."""
    text = str(error)
    found = re.search(r"Status Message: (.*)", text)
    return (found.group(1) if found else text.split(" : ")[-1]).strip()[:300]


def error_response(message: str):
    return pb_utils.InferenceResponse(
        error=pb_utils.TritonError(coded(ERROR_BAD_INPUT, message), pb_utils.TritonError.INVALID_ARG))


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        filename = config.get("default_model_filename") or "model.onnx"
        path = Path(args["model_repository"]) / args["model_version"] / filename
        if not path.is_file():
            raise pb_utils.TritonModelException(f"{path} not found: run `make export`")
        self.session = session(path, options=triton_options(config))
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
        responses = [None] * len(requests)
        feeds = {}
        for i, r in enumerate(requests):
            feed = {name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs}
            try:
                check_request(feed, self.batched)
            except BadRequest as e:
                responses[i] = error_response(str(e))
                continue
            feeds[i] = feed
        # The dynamic batcher only merges equal shapes, but group anyway so a mixed list still works.
        groups: dict[tuple, list[int]] = {}
        for i, feed in feeds.items():
            groups.setdefault(tuple(feed[n].shape[1:] for n in self.inputs), []).append(i)
        for members in groups.values():
            responses_of = self.answer(members, feeds)
            for i in members:
                responses[i] = responses_of[i]
        return responses

    def answer(self, members: list[int], feeds: dict) -> dict:
        """A response per request of one group; if the group's run fails, each request runs alone."""
        try:
            results = self.run([feeds[i] for i in members])
        except Exception as e:  # noqa: BLE001 - a bad request must not take the model or its batch mates down
            if len(members) == 1:
                return {members[0]: error_response(f"finer_model cannot run this input: {runtime_message(e)}")}
            return {i: r for m in members for i, r in self.answer([m], feeds).items()}
        return {i: pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(n, np.ascontiguousarray(o)) for n, o in zip(self.outputs, outputs)])
                for i, outputs in zip(members, results)}
