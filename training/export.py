"""Trained token classifier -> a new numbered version of `finer_model` in the Triton model repository.

    python -m training.export runs/latest/model                       # fp32, parity-checked, optimised
    python -m training.export models:/finer/3 --quantize int8 --validation data/validation.jsonl
    python -m training.export --rollback                              # retire the newest version

A version folder `<repository>/finer_model/<N>/` holds model.onnx (inputs input_ids, attention_mask
int64 [batch, seq]; output logits float32 [batch, seq, labels]), tokenizer.json, finer.json (labels,
special ids, window settings) and export.json (provenance and the figures below). Steps:

1. ONNX export with optimum's exporter (TorchScript-based: ORT can then fuse attention, which it
   cannot in torch's dynamo graph); torch's dynamo exporter only for architectures optimum lacks.
2. Parity gate: PyTorch and ONNX Runtime logits on real sentences, windowed by `finer.pipeline`
   exactly as served, must agree within 1e-4 on every attended position; else nothing is written.
3. onnxruntime.transformers' fusion (Attention, SkipLayerNorm, BiasGelu...), parity checked again;
   the logits' label axis is made dynamic so one config.pbtxt fits every label scope.
4. Optional `--quantize int8` (dynamic QInt8), gated on the validation entity micro-F1 (seqeval,
   strict IOB2) of fp32 ONNX vs int8 ONNX: a drop over `--max-f1-drop` points fails the export
   (or, with `--on-f1-drop fp32`, writes the fp32 model instead).

Versions (`training.repository`): version N is the whole ensemble, finer_model/<N> and each Python
step's <N> with the tokenizer and labels it reads, and N is never reused. One export writes one
version; with `--also-fp32` an int8 export writes the fp32 model as N and the int8 one as N+1
(Triton serves the newest). Everything is built in a hidden staging folder and renamed into place
at the end, so a failed export never leaves half a version. `--rollback` retires N everywhere.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from finer.labels import OUTSIDE, finer_label_names
from finer.pipeline import CONFIG_FILE, TaggerConfig, encode, load_tokenizer, plain_tokenizer
from finer.serving import ServingSpec, buckets_for
from training.repository import RepositoryError, rollback, staging_folder, write_version
from finer.words import split_words

PARITY_TOLERANCE = 1e-4
OPSET = 18
MAX_F1_DROP_POINTS = 0.5
INPUTS = ("input_ids", "attention_mask")
# Model types whose graphs onnxruntime.transformers' BERT fusions understand (optimum's own mapping).
ORT_FUSION_TYPES = {"bert": "bert", "distilbert": "bert", "roberta": "bert", "xlm-roberta": "bert",
                    "camembert": "bert", "electra": "bert", "mpnet": "bert", "albert": "bert"}

# Filing-style text for the parity check when no --parity-data is given; the last paragraph is long
# enough to need several windows at max_length 128.
SAMPLE_TEXTS = [
    "In March 2014, the Company issued an additional $100 million of its 7.00% Senior Notes due 2022 at 102.25% of their face value.",
    "Borrowings under the revolving credit facility bear interest at LIBOR plus 1.75%, and the facility has a maximum borrowing capacity of $750.0 million.",
    "The effective interest rate on the term loan was 4.3% for the year ended December 31, 2023.",
    "As of September 30, 2024, we had $1,893.6 million outstanding under our commercial paper program.",
    "The notes bear interest at a fixed rate of 5.25% per annum, payable semi-annually in arrears on June 15 and December 15 of each year.",
    "We recorded an impairment charge of $12.4 million related to goodwill of the U.S. retail segment.",
    "Net cash provided by operating activities was $2.1 billion in fiscal 2023 compared with $1.8 billion in fiscal 2022.",
    "The Company's effective tax rate was 21.4% and 19.8% for the three months ended June 30, 2024 and 2023, respectively.",
    "On May 3, 2023, the Company entered into a three-year, $500 million unsecured term loan agreement with a syndicate of banks.",
    "Interest on the Series B debentures accrues at the Secured Overnight Financing Rate (SOFR) plus a spread of 2.50%.",
    "Revenue increased 8% to $4,512 million, primarily due to higher volumes in the Americas.",
    "The 2031 Notes were issued at 99.512% of par and have a stated interest rate of 3.625%.",
    " ".join([
        "On February 14, 2022, the Company, as borrower, entered into a Second Amended and Restated Credit Agreement,",
        "which provides for a senior unsecured revolving credit facility with an aggregate principal amount of up to $1.5 billion,",
        "including a $100 million sublimit for letters of credit and a $50 million sublimit for swingline loans.",
        "Loans under the facility bear interest, at the Company's option, at a base rate plus a margin ranging from 0.000% to 0.375%",
        "or at Term SOFR plus 0.10% plus a margin ranging from 0.875% to 1.375%, in each case depending on the Company's credit ratings.",
        "The Company also pays a facility fee ranging from 0.080% to 0.250% on the total commitments.",
        "As of December 31, 2023, there were no borrowings outstanding and $12.5 million of letters of credit issued under the facility,",
        "and the Company was in compliance with all of its financial covenants, including a maximum consolidated leverage ratio of 3.75 to 1.00.",
        "In addition, the Company's 4.375% Senior Notes due 2028, with an aggregate principal amount of $600.0 million, are guaranteed by certain subsidiaries.",
    ]),
]


class ExportError(Exception):
    """A user-fixable problem: the message says what is wrong and what to do; no version was written."""


@dataclass
class Built:
    """One model.onnx ready to become a version, with what export.json says about it."""

    precision: str
    onnx: Path
    info: dict = field(default_factory=dict)


# ---------------------------------------------------------------- source


def _is_uri(source: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:/", source) is not None and not Path(source).exists()


def resolve_source(source: str, tracking_uri: str, scratch: Path) -> tuple[Path, dict]:
    """A local model folder for `source` (a folder, or an MLflow `models:/` / `runs:/` URI) and its provenance."""
    if _is_uri(source):
        database = tracking_uri[len("sqlite:///"):] if tracking_uri.startswith("sqlite:///") else None
        if database and not Path(database).is_file():  # MLflow would quietly create an empty store
            raise ExportError(f"{source}: no MLflow database at {database}; train first (`make train`) "
                              "or point --tracking-uri at the store the run was logged to")
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        import mlflow

        try:
            # models:/ resolves through the registry URI, which would otherwise default to ./mlflow.db.
            mlflow.set_tracking_uri(tracking_uri)
            mlflow.set_registry_uri(tracking_uri)
            path = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(scratch / "source"),
                                                             tracking_uri=tracking_uri))
        except Exception as e:  # mlflow raises many types (MlflowException, OSError, sqlalchemy errors)
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ExportError(f"{source}: cannot download it from MLflow at {tracking_uri} ({reason}); "
                              "check the URI (models:/<name>/<version> or runs:/<run id>/model) and --tracking-uri") from None
        if not (path / "config.json").is_file() and (path / "model" / "config.json").is_file():
            path = path / "model"  # a runs:/<id> URI: the run's artifact root holding model/
        provenance = {"model": source, "tracking_uri": tracking_uri}
    else:
        path = Path(source)
        if not path.is_dir():
            raise ExportError(f"{path}: no such model folder; give a trained model folder (e.g. runs/latest/model) "
                              "or an MLflow URI (models:/<name>/<version>, runs:/<run id>/model)")
        provenance = {"model": str(path.resolve())}
    if not (path / "config.json").is_file():
        raise ExportError(f"{source}: no config.json in {path}; this is not a saved Hugging Face model folder")
    mlflow_info = path / "mlflow.json"  # written by training when the run was tracked
    if mlflow_info.is_file():
        with contextlib.suppress(ValueError):
            provenance["mlflow"] = json.loads(mlflow_info.read_text())
    return path, provenance


def load_classifier(path: Path):
    """The token classifier and its fast tokenizer; refuses anything else with a reason."""
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError) as e:
        raise ExportError(f"{path}/config.json: cannot read it ({str(e).splitlines()[0][:160]})") from None
    archs = config.architectures or []
    # AutoModelForTokenClassification would happily put a fresh random head on any encoder.
    if not any(a.endswith("ForTokenClassification") for a in archs):
        raise ExportError(f"{path}: architectures {archs or 'unset'} is not a token classifier "
                          "(need *ForTokenClassification); export a model trained by `make train`")
    labels = [config.id2label[i] for i in range(config.num_labels)]
    unknown = [t for t in labels if t != OUTSIDE and t not in set(finer_label_names())]
    if labels[0] != OUTSIDE or unknown:
        raise ExportError(f"{path}/config.json: id2label must be 'O' then FiNER-139 tags "
                          f"(got {labels[0]!r} first{', unknown ' + ', '.join(unknown[:3]) if unknown else ''})")
    try:
        with _quiet():
            model = AutoModelForTokenClassification.from_pretrained(path).eval()
            tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, RuntimeError) as e:
        raise ExportError(f"{path}: cannot load the model or tokenizer ({str(e).splitlines()[0][:200]})") from None
    if not tokenizer.is_fast:
        raise ExportError(f"{path}: no fast tokenizer (tokenizer.json); save the tokenizer with transformers' fast class")
    return model, tokenizer, labels


def tagger_settings(path: Path, tokenizer, labels: list[str], model_config, max_length: int | None,
                    stride: int | None) -> TaggerConfig:
    """finer.json for serving: window settings from the flags, else the training run's finer.json, else the
    serving spec's defaults."""
    from training.features import tagger_config

    trained = json.loads((path / CONFIG_FILE).read_text()) if (path / CONFIG_FILE).is_file() else {}
    max_length = max_length or trained.get("max_length") or ServingSpec.max_length
    stride = stride if stride is not None else trained.get("stride", ServingSpec.stride)
    limit = getattr(model_config, "max_position_embeddings", None)
    if limit and max_length > limit:
        raise ExportError(f"--max-length {max_length} exceeds the model's {limit} positions")
    if not 0 <= stride < max_length - 2:
        raise ExportError(f"--stride {stride} must be at least 0 and below max_length - 2 ({max_length - 2})")
    config = tagger_config(tokenizer, {i: t for i, t in enumerate(labels)}, max_length, stride,
                           trained.get("number_shapes", ()))
    if None in (config.cls_id, config.sep_id, config.pad_id):
        raise ExportError(f"{path}: the tokenizer has no cls/bos, sep/eos or pad token id; windows need all three")
    config.buckets = buckets_for(max_length)
    return config


# ---------------------------------------------------------------- ONNX


@contextlib.contextmanager
def _quiet():
    """Hide the exporters' tracer warnings and info logs; errors still surface as exceptions."""
    from transformers.utils import logging as hf_logging

    old = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    names = ("optimum", "onnxruntime", "onnx_ir", "onnxscript", "torch.onnx", "root")
    levels = {n: logging.getLogger(n if n != "root" else None).level for n in names}
    for n in names:
        logging.getLogger(n if n != "root" else None).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(old)
        for n, level in levels.items():
            logging.getLogger(n if n != "root" else None).setLevel(level)


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

        with _quiet(), torch.no_grad():
            optimum_export(model, TwoInputs(model.config, task="token-classification"), path, opset=OPSET)
        return f"optimum {_version('optimum')} (TorchScript, opset {OPSET})"

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    example = (torch.ones(2, 16, dtype=torch.long), torch.ones(2, 16, dtype=torch.long))
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(Logits(model), example, dynamo=True, opset_version=OPSET, verbose=False,
                                    input_names=list(INPUTS), output_names=["logits"],
                                    dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}})
        program.save(str(path))
    return f"torch.onnx dynamo (opset {OPSET}; optimum: {fallback_reason})"


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_logits(sess):
    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return sess.run(["logits"], {"input_ids": input_ids, "attention_mask": attention_mask})[0]

    return run


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


def optimise(src: Path, dst: Path, model_config) -> dict:
    """onnxruntime.transformers' fusions for BERT-like encoders, else ORT's own offline graph optimisation."""
    model_type = ORT_FUSION_TYPES.get(model_config.model_type)
    if model_type:
        from onnxruntime.transformers.optimizer import optimize_model

        try:
            with _quiet():
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
    options.log_severity_level = 3
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    return {"method": "onnxruntime offline session optimisation (extended)", "note": fallback, "fused": {}}


def quantise(src: Path, dst: Path, per_channel: bool, embeddings: bool) -> dict:
    """Dynamic int8: weights QInt8 offline, activations quantised per call (no calibration data needed)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ops = ["MatMul", "Attention"] + (["Gather", "EmbedLayerNormalization"] if embeddings else [])
    with _quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                         op_types_to_quantize=ops,
                         # ONNX shape inference cannot type the outputs of fused contrib ops: they are float.
                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
    return {"type": "dynamic int8 (onnxruntime quantize_dynamic, QInt8 weights)", "per_channel": per_channel,
            "embeddings": "int8" if embeddings else "fp32", "op_types": ops}


# ---------------------------------------------------------------- checks


def read_tokens(path: Path, limit: int) -> list[list[str]]:
    """The `tokens` of the first `limit` rows of a FiNER-format jsonl file."""
    docs = []
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    tokens = json.loads(line).get("tokens")
                except (json.JSONDecodeError, AttributeError):
                    raise ExportError(f"{path}:{lineno}: not a JSON object; --parity-data needs FiNER-format jsonl") from None
                if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                    raise ExportError(f"{path}:{lineno}: needs a 'tokens' list of strings")
                if tokens:
                    docs.append(tokens)
                if len(docs) >= limit:
                    break
    except OSError as e:
        raise ExportError(f"{path}: cannot read it ({e.strerror}); give a FiNER-format jsonl file") from None
    if not docs:
        raise ExportError(f"{path}: no sentences with tokens")
    return docs


@dataclass
class ParitySet:
    """Windows of real sentences and PyTorch's logits for them, computed once for every check."""

    batches: list  # (Encoded, reference logits)
    sentences: int

    @classmethod
    def build(cls, reference, tokenizer, docs: Sequence[Sequence[str]], config: TaggerConfig) -> "ParitySet":
        # Each document alone (its own bucket length) and all of them together (a batch of windows).
        encoded = [encode(tokenizer, batch, config) for batch in [[d] for d in docs] + [list(docs)]]
        return cls([(enc, reference(enc.input_ids, enc.attention_mask)) for enc in encoded], len(docs))

    def check(self, candidate) -> dict:
        """Max |logit difference| over attended positions (serving never reads padded ones)."""
        worst, agree, total = 0.0, 0, 0
        for enc, ref in self.batches:
            got = candidate(enc.input_ids, enc.attention_mask)
            if got.shape != ref.shape:
                raise ExportError(f"the ONNX model returns logits {got.shape} where PyTorch returns {ref.shape}")
            mask = enc.attention_mask.astype(bool)
            worst = max(worst, float(np.abs(ref - got)[mask].max()))
            agree += int((ref.argmax(-1) == got.argmax(-1))[mask].sum())
            total += int(mask.sum())
        return {"max_abs_diff": worst, "argmax_agreement": agree / total, "sentences": self.sentences,
                "windows": len(self.batches[-1][0].input_ids)}


def validation_f1(path: Path, tokenizer, config: TaggerConfig, candidates: dict, max_sentences: int | None) -> dict:
    """Entity micro-F1 (seqeval, strict IOB2) of each ONNX model on a FiNER-format file; tags outside the model's labels count as O."""
    from training.data import DataError, load_splits
    from training.evaluate import entity_scores, predict

    try:
        rows = [r for split in load_splits(path).values() for r in split][:max_sentences]
    except DataError as e:
        raise ExportError(f"--validation {e}") from None
    known = set(config.labels)
    gold = [[t if t in known else OUTSIDE for t in r["ner_tags"]] for r in rows]
    if not any(t != OUTSIDE for g in gold for t in g):
        raise ExportError(f"{path}: no entity of the model's labels in {len(rows)} sentences; the F1 gate needs some")
    scores = {}
    for name, run in candidates.items():
        pred = predict(run, tokenizer, rows, config, desc=f"validation F1 ({name})")
        scores[name] = entity_scores(gold, pred)["micro avg"]["f1-score"]
    return {"file": str(path), "sentences": len(rows), "f1": scores}


# ---------------------------------------------------------------- provenance


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


# ---------------------------------------------------------------- export


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def export_model(
    model_or_uri: str | Path,
    repository: str | Path = "model_repository",
    *,
    quantize: str | None = None,
    validation: str | Path | None = None,
    parity_data: str | Path | None = None,
    parity_sentences: int = 32,
    max_length: int | None = None,
    stride: int | None = None,
    tracking_uri: str = "sqlite:///mlruns.db",
    per_channel: bool = True,
    quantize_embeddings: bool = False,
    max_f1_drop: float = MAX_F1_DROP_POINTS,
    on_f1_drop: str = "fail",
    also_fp32: bool = False,
    max_validation_sentences: int | None = None,
    report: dict | None = None,
) -> Path:
    """Export, check and write one new version (two with `also_fp32`); returns the newest version folder.

    Raises ExportError (nothing written) on bad input, a failed parity gate or a failed F1 gate.
    `report`, if given, is filled with what each written version's export.json holds, keyed by folder.
    """
    if quantize not in (None, "int8"):
        raise ExportError(f"--quantize {quantize!r}: only int8 is supported")
    if quantize and validation is None:
        raise ExportError("--quantize int8 needs --validation FILE (FiNER-format jsonl) for the F1 gate")
    if on_f1_drop not in ("fail", "fp32"):
        raise ExportError(f"on_f1_drop must be 'fail' or 'fp32', not {on_f1_drop!r}")
    started = time.perf_counter()
    timings: dict[str, float] = {}
    try:
        staging = staging_folder(repository)
    except RepositoryError as e:
        raise ExportError(str(e)) from None
    try:
        path, provenance = resolve_source(str(model_or_uri), tracking_uri, staging)
        model, hf_tokenizer, labels = load_classifier(path)
        config = tagger_settings(path, hf_tokenizer, labels, model.config, max_length, stride)
        provenance.update(architecture=model.config.architectures[0], model_type=model.config.model_type,
                          labels=len(labels), parameters=sum(p.numel() for p in model.parameters()))

        from tokenizers import Tokenizer

        # A copy with saved truncation/padding switched off: windows cut, buckets pad.
        plain_tokenizer(Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())).save(str(staging / "tokenizer.json"))
        tokenizer = load_tokenizer(staging / "tokenizer.json")  # exactly what serving will load
        docs = (read_tokens(Path(parity_data), parity_sentences) if parity_data
                else [[w.text for w in split_words(t)] for t in SAMPLE_TEXTS])

        from training.evaluate import torch_logits

        with _timed(timings, "parity_s"):
            checks = {"tolerance": PARITY_TOLERANCE}
            reference = ParitySet.build(torch_logits(model), tokenizer, docs, config)
        with _timed(timings, "export_s"):
            _log(f"exporting {path} to ONNX ...")
            raw = staging / "raw.onnx"
            exporter = export_onnx(model, raw)
        with _timed(timings, "parity_s"):
            raw_session = session(raw)
            names = ([i.name for i in raw_session.get_inputs()], [o.name for o in raw_session.get_outputs()])
            if names != (list(INPUTS), ["logits"]):
                raise ExportError(f"the exported graph has inputs/outputs {names}; expected {list(INPUTS)} and ['logits']")
            checks["export"] = reference.check(ort_logits(raw_session))
            _gate(checks["export"], "exported")
        with _timed(timings, "optimise_s"):
            _log("optimising the graph ...")
            fp32 = staging / "fp32.onnx"
            optimisation = optimise(raw, fp32, model.config)
            free_label_axis(fp32)
            check_signature(fp32)
        with _timed(timings, "parity_s"):
            checks["optimised"] = reference.check(ort_logits(session(fp32)))
            _gate(checks["optimised"], "optimised")

        common = {"source": provenance, "exporter": exporter, "optimisation": optimisation,
                  "tagger": {"max_length": config.max_length, "stride": config.stride, "buckets": config.buckets},
                  "libraries": {p: _version(p) for p in ("torch", "transformers", "optimum", "onnx", "onnxruntime")}}
        fp32_info = {"precision": "fp32", "parity": checks, "quantisation": None}
        built: list[Built] = []
        if quantize:
            with _timed(timings, "quantise_s"):
                _log("quantising to int8 ...")
                int8 = staging / "int8.onnx"
                quant = quantise(fp32, int8, per_channel, quantize_embeddings)
                check_signature(int8)
                int8_sess = session(int8)
            with _timed(timings, "f1_gate_s"):
                # int8 is not held to the 1e-4 gate (the F1 gate decides); its drift is recorded.
                int8_parity = reference.check(ort_logits(int8_sess))
                gate = validation_f1(Path(validation), tokenizer, config,
                                     {"fp32": ort_logits(session(fp32)), "int8": ort_logits(int8_sess)},
                                     max_validation_sentences)
            drop = 100 * (gate["f1"]["fp32"] - gate["f1"]["int8"])
            gate.update(drop_points=drop, max_drop_points=max_f1_drop, passed=drop <= max_f1_drop)
            quant["gate"] = gate
            fp32_info["quantisation"] = {"requested": "int8", **quant}
            verdict = (f"int8 entity micro-F1 {gate['f1']['int8']:.4f} vs fp32 {gate['f1']['fp32']:.4f} on {validation}: "
                       f"a drop of {drop:.2f} points (allowed {max_f1_drop:g})")
            if not gate["passed"] and on_f1_drop == "fail":
                raise ExportError(f"{verdict}; nothing written. Allow more with --max-f1-drop, write fp32 instead "
                                  "with --on-f1-drop fp32, or export without --quantize")
            if not gate["passed"]:
                _log(f"warning: {verdict}; writing the fp32 model instead (--on-f1-drop fp32)")
                built.append(Built("fp32", fp32, fp32_info))
            else:
                if also_fp32:
                    built.append(Built("fp32", fp32, {**fp32_info, "quantisation": None}))
                built.append(Built("int8", int8, {"precision": "int8", "quantisation": quant,
                                                  "parity": {**checks, "int8": int8_parity}}))
        else:
            built.append(Built("fp32", fp32, fp32_info))

        written = []
        for item in built:
            folder = staging / f"version-{item.precision}"
            folder.mkdir()
            item.onnx.rename(folder / "model.onnx")
            shutil.copyfile(staging / "tokenizer.json", folder / "tokenizer.json")
            config.save(folder)
            info = {**common, **item.info, "model_sha256": _sha256(folder / "model.onnx"),
                    "model_bytes": (folder / "model.onnx").stat().st_size,
                    "timings_s": {k: round(v, 2) for k, v in {**timings, "total_s": time.perf_counter() - started}.items()},
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            (folder / "export.json").write_text(json.dumps(info, indent=1) + "\n")
            spec = ServingSpec(max_length=config.max_length, stride=config.stride)
            target = write_version(repository, folder, spec)  # every model's version N; configs regenerated
            written.append(target)
            if report is not None:
                report[str(target)] = info
        return written[-1]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _timed(timings: dict, key: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - start


def _gate(check: dict, what: str) -> None:
    if not check["max_abs_diff"] <= PARITY_TOLERANCE:  # also catches NaN
        raise ExportError(f"parity gate failed: the {what} ONNX model's logits differ from PyTorch by up to "
                          f"{check['max_abs_diff']:.2e} (> {PARITY_TOLERANCE:g}) on {check['sentences']} sentences; "
                          "nothing written (the exporter changed the model's maths: check the torch/optimum/onnxruntime "
                          "versions against pyproject.toml)")


# ---------------------------------------------------------------- CLI


def summary(report: dict) -> str:
    """A short table of what was written and the figures."""
    lines = []
    for folder, info in report.items():
        f = Path(folder)
        files = ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f} MB" if p.stat().st_size > 1e5 else p.name
                          for p in sorted(f.iterdir()))
        par = info["parity"]
        lines += [f"{folder}  ({info['precision']}, from {info['source']['model']})",
                  f"  files         {files}",
                  f"  exporter      {info['exporter']}",
                  f"  parity        max |logit diff| vs PyTorch: export {par['export']['max_abs_diff']:.1e}, "
                  f"optimised {par['optimised']['max_abs_diff']:.1e} (gate {par['tolerance']:g}; "
                  f"{par['export']['sentences']} sentences, {par['export']['windows']} windows)",
                  f"  optimisation  {info['optimisation']['method']}: "
                  + (", ".join(f"{k} {v}" for k, v in info["optimisation"]["fused"].items()) or "no fusions")]
        q = info.get("quantisation")
        if q and "gate" in q:
            g = q["gate"]
            lines.append(f"  int8 gate     entity micro-F1 fp32 {g['f1']['fp32']:.4f} / int8 {g['f1']['int8']:.4f}, "
                         f"drop {g['drop_points']:.2f} points (max {g['max_drop_points']:g}): "
                         f"{'passed' if g['passed'] else 'FAILED, fp32 written'}; "
                         f"per-channel {q['per_channel']}, embeddings {q['embeddings']}"
                         + (f"; int8 max |logit diff| {par['int8']['max_abs_diff']:.1e}, "
                            f"argmax agreement {par['int8']['argmax_agreement']:.3f}" if "int8" in par else ""))
        t = info["timings_s"]
        lines.append("  time          " + ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in t.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Rollback: --rollback moves the newest version N of every model of the ensemble "
                                       "to <repository>/<model>/.retired/<N>; restart Triton to serve the previous one.")
    p.add_argument("model", nargs="?", help="trained model folder, or MLflow URI models:/<name>/<version> or runs:/<run id>/model")
    p.add_argument("--repository", default="model_repository", help="Triton model repository root (default: %(default)s)")
    p.add_argument("--quantize", choices=["int8"], help="dynamic int8 quantisation, gated on validation F1")
    p.add_argument("--validation", help="FiNER-format jsonl (tokens, ner_tags) for the int8 F1 gate")
    p.add_argument("--max-validation-sentences", type=int, default=None, help="score only the first N validation sentences")
    p.add_argument("--max-f1-drop", type=float, default=MAX_F1_DROP_POINTS, help="allowed int8 entity micro-F1 drop in points (default: %(default)s)")
    p.add_argument("--on-f1-drop", choices=["fail", "fp32"], default="fail", help="when int8 loses more: fail (default) or write fp32 instead")
    p.add_argument("--also-fp32", action="store_true", help="with --quantize: also write the fp32 model, as the version before the int8 one")
    p.add_argument("--no-per-channel", dest="per_channel", action="store_false", help="per-tensor int8 weights (default: per channel, more accurate)")
    p.add_argument("--quantize-embeddings", action="store_true", help="int8 embedding tables too (smaller file; default keeps them fp32)")
    p.add_argument("--parity-data", help="FiNER-format jsonl whose 'tokens' feed the parity check (default: built-in filing sentences)")
    p.add_argument("--parity-sentences", type=int, default=32, help="sentences of --parity-data to use (default: %(default)s)")
    p.add_argument("--max-length", type=int, default=None, help="window length in sub-tokens (default: the training run's finer.json, else 128)")
    p.add_argument("--stride", type=int, default=None, help="window overlap (default: the training run's, else 32)")
    p.add_argument("--tracking-uri", default="sqlite:///mlruns.db", help="MLflow tracking URI for models:/ and runs:/ (default: %(default)s)")
    p.add_argument("--rollback", action="store_true", help="retire the newest version instead of exporting")
    a = p.parse_args(argv)
    try:
        if a.rollback:
            if a.model:
                p.error("--rollback takes no model")
            old, now = rollback(a.repository)
            print(f"retired version {old} of every model of the ensemble (now in <model>/.retired/); version {now} "
                  "is the newest: restart Triton to serve it")
            return 0
        if not a.model:
            p.error("give a model folder or MLflow URI (or --rollback)")
        report: dict = {}
        export_model(a.model, a.repository, quantize=a.quantize, validation=a.validation, parity_data=a.parity_data,
                     parity_sentences=a.parity_sentences, max_length=a.max_length, stride=a.stride,
                     tracking_uri=a.tracking_uri, per_channel=a.per_channel, quantize_embeddings=a.quantize_embeddings,
                     max_f1_drop=a.max_f1_drop, on_f1_drop=a.on_f1_drop, also_fp32=a.also_fp32,
                     max_validation_sentences=a.max_validation_sentences, report=report)
    except (ExportError, RepositoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(summary(report))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
