"""Export stage 3, optimisation and quantisation: onnxruntime's fusions and dynamic int8."""
from __future__ import annotations

import re
from pathlib import Path

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


def quantise(src: Path, dst: Path, per_channel: bool, embeddings: bool, exclude: list[str] | tuple = ()) -> dict:
    """Dynamic int8: weights QInt8 offline, activations quantised per call (no calibration data needed);
    the nodes named in `exclude` stay fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ops = ["MatMul", "Attention"] + (["Gather", "EmbedLayerNormalization"] if embeddings else [])
    with quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                         op_types_to_quantize=ops, nodes_to_exclude=list(exclude),
                         # ONNX shape inference cannot type the outputs of fused contrib ops: they are float.
                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
    return {"type": "dynamic int8 (onnxruntime quantize_dynamic, QInt8 weights)", "per_channel": per_channel,
            "embeddings": "int8" if embeddings else "fp32", "op_types": ops, "fp32_nodes": list(exclude)}


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
