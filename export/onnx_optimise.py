"""Export stage 3, optimisation and quantisation: onnxruntime's fusions and static int8."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from finer.runtime import session
from export.source import quiet

# Model types whose graphs onnxruntime.transformers' BERT fusions understand (optimum's own mapping).
ORT_FUSION_TYPES = {"bert": "bert", "distilbert": "bert", "roberta": "bert", "xlm-roberta": "bert",
                    "camembert": "bert", "electra": "bert", "mpnet": "bert", "albert": "bert"}


def optimise(src: Path, dst: Path, model_config) -> dict:
    """onnxruntime.transformers' fusions for BERT-like encoders, else ORT's own offline graph optimisation."""
    model_type = ORT_FUSION_TYPES.get(model_config.model_type)
    if model_type:
        from onnxruntime.transformers.optimizer import optimize_model

        try:
            with quiet():
                # opt_level 0: fusions only. The file stays portable (only ai.onnx + com.microsoft ops);
                # ORT applies its own hardware-specific rewrites when each server loads it.
                opt = optimize_model(str(src), model_type=model_type, opt_level=0,
                                     num_heads=model_config.num_attention_heads, hidden_size=model_config.hidden_size)
                opt.save_model_to_file(str(dst))
            fused = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
            return {"method": f"onnxruntime.transformers optimizer (model_type {model_type}, "
                              f"{model_config.num_attention_heads} heads, hidden {model_config.hidden_size})",
                    "fused": fused}
        except Exception as e:  # an unrecognised graph pattern: fall through to ORT's generic passes
            fallback = f"transformers optimizer failed: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
    else:
        fallback = f"no transformers fusions for model_type {model_config.model_type}"
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # not ALL: no CPU-layout ops in the file
    options.optimized_model_filepath = str(dst)
    session(src, options=options)  # loading it writes the optimised graph
    return {"method": "onnxruntime offline session optimisation (extended)", "note": fallback, "fused": {}}


# Node groups (`node_groups`) that --quantize int8 keeps in fp32 by default. None: on the all-tags
# model the fully quantised graph lost 0.00 points of validation F1 (paired 95% interval -0.18 to
# +0.19); `python -m export.int8_sensitivity` ranks ffn.0 most harmful, the lever if a model's
# gate fails (BENCHMARKS.md).
INT8_FP32_GROUPS: tuple[str, ...] = ()


def quantise(src: Path, dst: Path, per_channel: bool, embeddings: bool, calibration: Iterable[dict],
             exclude: list[str] | tuple = ()) -> dict:
    """Static int8: onnxruntime's dynamic-quantisation graph (QInt8 weights; QAttention and
    MatMulInteger kernels), with each activation's scale and zero point fixed from `calibration`
    (input feeds of real windows) instead of computed per call. A dynamic scale is computed over the
    whole batch, so a window's answer would depend on the windows Triton batches it with; fixed, it
    does not. The nodes named in `exclude` stay fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ops = ["MatMul", "Attention"] + (["Gather", "EmbedLayerNormalization"] if embeddings else [])
    dynamic = dst.with_name(dst.stem + "-dynamic.onnx")
    with quiet():
        quantize_dynamic(str(src), str(dynamic), weight_type=QuantType.QInt8, per_channel=per_channel,
                         op_types_to_quantize=ops, nodes_to_exclude=list(exclude),
                         # ONNX shape inference cannot type the outputs of fused contrib ops: they are float.
                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
        windows = fix_activation_scales(dynamic, dst, calibration)
    dynamic.unlink()
    return {"type": "static int8 (onnxruntime quantize_dynamic's QInt8 weights and kernels; activation scales "
                    "fixed from their ranges over calibration windows, so an answer does not depend on its batch mates)",
            "per_channel": per_channel, "calibration_windows": windows,
            "embeddings": "int8" if embeddings else "fp32", "op_types": ops, "fp32_nodes": list(exclude)}


def fix_activation_scales(src: Path, dst: Path, calibration: Iterable[dict]) -> int:
    """`src` with every DynamicQuantizeLinear replaced by a QuantizeLinear whose uint8 scale and zero
    point come from its input's range over `calibration`, by DynamicQuantizeLinear's own rule (the
    range widened to hold 0). Returns the windows calibrated on."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    dynamic = [n for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]
    low, high, windows = activation_ranges(model, [n.input[0] for n in dynamic], calibration, dst)
    nodes = []
    for node in model.graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            nodes.append(node)
            continue
        lo, hi = min(low[node.input[0]], 0.0), max(high[node.input[0]], 0.0)
        scale = (hi - lo) / 255 or 1.0
        zero = int(np.clip(round(-lo / scale), 0, 255))
        model.graph.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), node.output[1]),
                                        numpy_helper.from_array(np.array(zero, np.uint8), node.output[2])])
        nodes.append(helper.make_node("QuantizeLinear", [node.input[0], node.output[1], node.output[2]],
                                      [node.output[0]], name=node.name))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(dst))
    return windows


def activation_ranges(model, names: list[str], calibration: Iterable[dict], scratch: Path):
    """Min and max of each named [windows, length, features] activation over the attended positions of
    `calibration`'s windows. Padding is left out: no real position reads it, and its outliers would
    widen every scale (onnxruntime's calibrators take the whole tensor)."""
    import onnx
    from onnx import TensorProto, helper

    if not names:  # every quantisable node kept in fp32
        return {}, {}, 0
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
    path = scratch.with_name(scratch.stem + "-probe.onnx")
    onnx.save(probe, str(path))
    sess = session(path)
    low, high = dict.fromkeys(names, float("inf")), dict.fromkeys(names, float("-inf"))
    windows = 0
    for feed in calibration:
        attended = feed["attention_mask"].astype(bool)
        windows += len(attended)
        for name, value in zip(names, sess.run(names, feed)):
            value = value[attended]
            low[name], high[name] = min(low[name], float(value.min())), max(high[name], float(value.max()))
    path.unlink()
    return low, high, windows


LAYER = re.compile(r"layer\.(\d+)/")


def node_groups(model_path: Path) -> dict[str, list[str]]:
    """Quantisable nodes of an optimised fp32 graph by group: attention.<k>, ffn.<k>, classifier, other."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    groups: dict[str, list[str]] = {}
    attention = 0
    for node in graph.node:
        if node.op_type == "Attention":
            name, attention = f"attention.{attention}", attention + 1
        elif node.op_type == "MatMul":
            layer = LAYER.search(node.name)
            if "classifier" in node.name:
                name = "classifier"
            elif layer and "/attention/" in node.name:
                name = f"attention.{layer.group(1)}"
            elif layer:
                name = f"ffn.{layer.group(1)}"
            else:
                name = "other"
        else:
            continue
        groups.setdefault(name, []).append(node.name)
    return groups


def fp32_nodes(model_path: Path, groups: list[str] | tuple) -> list[str]:
    """The nodes of the named groups (see `node_groups`); ValueError for a group the graph lacks."""
    found = node_groups(model_path)
    unknown = [g for g in groups if g not in found]
    if unknown:
        raise ValueError(f"no node group {', '.join(unknown)} in this graph (it has {', '.join(sorted(found))})")
    return [n for g in groups for n in found[g]]
