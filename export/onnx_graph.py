"""Export stage 2, the graph: PyTorch classifier -> ONNX with the signature Triton's config expects."""
from __future__ import annotations

from pathlib import Path

from finer.runtime import session
from export.source import ExportError, quiet

OPSET = 18
INPUTS = ("input_ids", "attention_mask")


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


def free_label_axis(path: Path) -> None:
    """Make the logits' label axis symbolic ("labels") as ONNX Runtime reports it, like batch and sequence.

    Triton's ONNX Runtime backend requires output dims equal to config.pbtxt's, and one config.pbtxt
    serves every version: its logits dims [-1, -1] fit any label scope only if the model's label axis
    is dynamic too (the count itself is in finer.json). Renaming the axis is not enough: ORT infers
    the classifier's fixed width and reports it. A Reshape to the tensor's own runtime shape (free:
    no data moves) hides it from shape inference.
    """
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["logits_fixed" if o == "logits" else o for o in node.output]
    graph.node.extend([helper.make_node("Shape", ["logits_fixed"], ["logits_shape"], name="logits_shape"),
                       helper.make_node("Reshape", ["logits_fixed", "logits_shape"], ["logits"], name="logits_free_axis")])
    dim = graph.output[0].type.tensor_type.shape.dim[2]
    dim.Clear()
    dim.dim_param = "labels"
    onnx.save(model, str(path))


def check_signature(path: Path) -> None:
    """What Triton checks, as ONNX Runtime reports it: input_ids/attention_mask int64 [batch, seq] in,
    logits float32 [batch, seq, labels] out, every axis dynamic."""
    sess = session(path)

    def spec(values) -> list:
        return [(v.name, v.type, v.shape) for v in values]

    inputs, outputs = spec(sess.get_inputs()), spec(sess.get_outputs())
    shapes_ok = all(len(shape) == rank and all(not isinstance(d, int) for d in shape)
                    for (_, _, shape), rank in zip(inputs + outputs, (2, 2, 3)))
    if [(n, t) for n, t, _ in inputs + outputs] != [*((n, "tensor(int64)") for n in INPUTS), ("logits", "tensor(float)")] \
            or not shapes_ok:
        raise ExportError(f"{path.name} has inputs {inputs} and outputs {outputs}; serving needs input_ids and "
                          "attention_mask int64 [batch, seq] and logits float32 [batch, seq, labels], every axis dynamic")
