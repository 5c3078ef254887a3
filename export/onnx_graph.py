"""Export stage 2, the graph: PyTorch classifier -> ONNX with the signature Triton's config expects."""
from __future__ import annotations

from pathlib import Path

from finer.runtime import session
from export.source import ExportError, quiet

OPSET = 18
INPUTS = ("input_ids", "attention_mask")
# What serving reads: each position's best label and its probability (`finer.windows.decision`),
# [batch, seq] each, instead of [batch, seq, labels] logits (9 MB per request of the all-tags model).
# The logits stay an output for the gates and evaluation.
OUTPUTS = ("logits", "label_ids", "label_scores")


def package_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def export_onnx(model, path: Path) -> str:
    """Write the classifier as ONNX with inputs input_ids/attention_mask and output logits; returns the exporter used."""
    import torch

    try:
        from optimum.exporters.onnx.convert import export as optimum_export
        from optimum.exporters.tasks import TasksManager

        ctor = TasksManager.get_exporter_config_constructor(
            "onnx", model=model, task="token-classification", library_name="transformers")
        base = type(ctor(model.config))
    except (KeyError, ValueError) as e:  # optimum has no ONNX config for this architecture
        base, fallback_reason = None, str(e).splitlines()[0][:120]

    if base is not None:
        class TwoInputs(base):
            """No token_type_ids input: every window is one segment, the model's default of zeros."""

            @property
            def inputs(self):
                return {k: v for k, v in super().inputs.items() if k in INPUTS}

        with quiet(), torch.no_grad():
            optimum_export(model, TwoInputs(model.config, task="token-classification"), path, opset=OPSET)
        return f"optimum {package_version('optimum')} (TorchScript, opset {OPSET})"

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    example = (torch.ones(2, 16, dtype=torch.long), torch.ones(2, 16, dtype=torch.long))
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with quiet(), torch.no_grad():
        program = torch.onnx.export(Logits(model), example, dynamo=True, opset_version=OPSET, verbose=False,
                                    input_names=list(INPUTS), output_names=["logits"],
                                    dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}})
        program.save(str(path))
    return f"torch.onnx dynamo (opset {OPSET}; optimum: {fallback_reason})"


def append_decision(path: Path) -> None:
    """Append each position's best label (ArgMax) and its probability (the softmax at it:
    1 / sum(exp(logits - max))) to the graph, as outputs label_ids int64 and label_scores float32
    [batch, seq], after logits."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    graph = model.graph
    axis = helper.make_tensor("label_axis", TensorProto.INT64, [1], [-1])
    graph.initializer.append(axis)
    graph.node.extend([
        helper.make_node("ArgMax", ["logits"], ["label_ids"], axis=-1, keepdims=0, name="label_ids"),
        helper.make_node("ReduceMax", ["logits", "label_axis"], ["logits_max"], keepdims=1, name="logits_max"),
        helper.make_node("Sub", ["logits", "logits_max"], ["logits_shifted"], name="logits_shifted"),
        helper.make_node("Exp", ["logits_shifted"], ["logits_exp"], name="logits_exp"),
        helper.make_node("ReduceSum", ["logits_exp", "label_axis"], ["logits_exp_sum"], keepdims=0, name="logits_exp_sum"),
        helper.make_node("Reciprocal", ["logits_exp_sum"], ["label_scores"], name="label_scores"),
    ])
    graph.output.extend([helper.make_tensor_value_info("label_ids", TensorProto.INT64, ["batch", "sequence"]),
                         helper.make_tensor_value_info("label_scores", TensorProto.FLOAT, ["batch", "sequence"])])
    onnx.save(model, str(path))


def check_signature(path: Path) -> None:
    """What Triton checks, as ONNX Runtime reports it: input_ids/attention_mask int64 [batch, seq] in;
    logits float32 [batch, seq, labels], label_ids int64 and label_scores float32 [batch, seq] out;
    batch and seq dynamic."""
    sess = session(path)

    def spec(values) -> list:
        return [(v.name, v.type, v.shape) for v in values]

    inputs, outputs = spec(sess.get_inputs()), spec(sess.get_outputs())
    # Batch and sequence axes dynamic; the logits' label axis is the scope's width (served: not read).
    shapes_ok = all(len(shape) == rank and all(not isinstance(d, int) for d in shape[:2])
                    for (_, _, shape), rank in zip(inputs + outputs, (2, 2, 3, 2, 2)))
    expected = [*((n, "tensor(int64)") for n in INPUTS),
                *zip(OUTPUTS, ("tensor(float)", "tensor(int64)", "tensor(float)"))]
    if [(n, t) for n, t, _ in inputs + outputs] != expected or not shapes_ok:
        raise ExportError(f"{path.name} has inputs {inputs} and outputs {outputs}; serving needs input_ids and "
                          "attention_mask int64 [batch, seq], logits float32 [batch, seq, labels], label_ids int64 "
                          "and label_scores float32 [batch, seq], batch and seq dynamic")
