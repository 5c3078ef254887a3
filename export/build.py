"""Trained token classifier -> a new numbered version of `finer_model` in the Triton model repository.

    python -m export.build runs/latest/model                       # fp32, parity-checked, optimised
    python -m export.build models:/finer/3 --quantize int8 --validation data/validation.jsonl
    python -m export.build --rollback                              # retire the newest version

A version folder `<repository>/finer_model/<N>/` holds model.onnx (inputs input_ids, attention_mask
int64 [batch, seq]; outputs logits float32 [batch, seq, labels], label_ids int64 and label_scores
float32 [batch, seq]), tokenizer.json, finer.json (labels,
special ids, window settings) and export.json (provenance and the figures below). Steps:

1. ONNX export with optimum's exporter (TorchScript-based: ORT can then fuse attention, which it
   cannot in torch's dynamo graph); torch's dynamo exporter only for architectures optimum lacks.
2. Parity gate: PyTorch and ONNX Runtime logits on real sentences, windowed by `finer.pipeline`
   exactly as served, must agree within 1e-4 on every attended position; else nothing is written.
3. onnxruntime.transformers' fusion (Attention, SkipLayerNorm, BiasGelu...), parity checked again;
   each position's best label and its probability are appended as outputs label_ids and
   label_scores [batch, seq] (what serving reads), checked against the graph's own logits.
4. Optional `--quantize int8` (QInt8 weights; activation scales fixed from validation sentences, so
   an answer does not depend on what Triton batches it with), gated on the validation entity
   micro-F1 (seqeval, strict IOB2) of fp32 ONNX vs int8 ONNX: a drop over `--max-f1-drop` points fails the export
   (or, with `--on-f1-drop fp32`, writes the fp32 model instead).

Versions (`export.repository`): version N is the whole ensemble, finer_model/<N> and each Python
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
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from finer.artifacts import MODEL_NAME
from finer.pipeline import TaggerConfig, load_tokenizer, plain_tokenizer
from finer.runtime import ort_logits, session
from finer.serving import ServingSpec
from finer.words import split_words
from export.gates import (MAX_F1_DROP_POINTS, PARITY_TOLERANCE, SAMPLE_TEXTS, ParitySet, calibration_feeds,
                          parity_gate, read_tokens, validation_f1, validation_rows)
from export.source import ExportError, load_classifier, locate_model, tagger_settings
from export.onnx_graph import INPUTS, append_decision, check_signature, export_onnx, package_version
from export.onnx_optimise import INT8_FP32_GROUPS, fp32_nodes, optimise, quantise
from export.report import summary
from export.repository import RepositoryError, rollback, staging_folder, write_version
from export import model_card, registry
from export.promotion import Model, decide
from training import facts as training_facts


@dataclass
class ExportRecord:
    """What export.json says about one written version."""

    source: dict  # where the model came from (folder or MLflow URI, run id)
    exporter: str
    optimisation: dict
    tagger: dict  # max_length, stride, buckets
    libraries: dict
    precision: str  # fp32 | int8
    parity: dict  # max |logit diff| vs PyTorch per stage, and the tolerance
    quantisation: dict | None = None  # int8: method and F1 gate; fp32 after a failed gate: what was tried
    promotion: dict | None = None  # the champion / challenger verdict (export.promotion)
    model_sha256: str = ""
    model_bytes: int = 0
    timings_s: dict = field(default_factory=dict)
    created: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Built:
    """One model.onnx ready to become a version, with its record (file fields filled in when written)."""

    onnx: Path
    record: ExportRecord


@dataclass
class Fp32:
    """The checked and optimised fp32 graph, and what every record of this export shares."""

    path: Path
    tokenizer: object  # tokenizers.Tokenizer, as serving loads it
    config: TaggerConfig
    reference: ParitySet
    parity: dict
    common: dict
    facts: dict  # the model folder's training.json (training.facts), {} if it has none
    scores: dict  # its scores.json (evaluation.run), {} if it has none


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _timed(timings: dict, key: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - start


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_fp32(source: str, staging: Path, tracking_uri: str, max_length: int | None, stride: int | None,
               parity_data: str | Path | None, parity_sentences: int, timings: dict) -> Fp32:
    """Stages 1-3 for fp32: resolve the source, export, optimise; each graph gated on parity with PyTorch."""
    from tokenizers import Tokenizer

    from training.models import torch_logits

    path, provenance = locate_model(source, tracking_uri, staging)
    model, hf_tokenizer, labels = load_classifier(path)
    config = tagger_settings(path, hf_tokenizer, labels, model.config, max_length, stride)
    provenance.update(architecture=model.config.architectures[0], model_type=model.config.model_type,
                      labels=len(labels), parameters=sum(p.numel() for p in model.parameters()))
    # A copy with saved truncation/padding switched off: windows cut, buckets pad.
    plain_tokenizer(Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())).save(str(staging / "tokenizer.json"))
    tokenizer = load_tokenizer(staging / "tokenizer.json")  # exactly what serving will load
    docs = (read_tokens(Path(parity_data), parity_sentences) if parity_data
            else [[w.text for w in split_words(t)] for t in SAMPLE_TEXTS])
    with _timed(timings, "parity_s"):
        parity = {"tolerance": PARITY_TOLERANCE}
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
        parity["export"] = reference.check(ort_logits(raw_session))
        parity_gate(parity["export"], "exported")
    with _timed(timings, "optimise_s"):
        _log("optimising the graph ...")
        fp32 = staging / "fp32.onnx"
        optimisation = optimise(raw, fp32, model.config)
        append_decision(fp32)
        check_signature(fp32)
    with _timed(timings, "parity_s"):
        parity["optimised"] = reference.check_graph(session(fp32))
        parity_gate(parity["optimised"], "optimised")
    common = {"source": provenance, "exporter": exporter, "optimisation": optimisation,
              "tagger": {"max_length": config.max_length, "stride": config.stride, "buckets": config.buckets},
              "libraries": {p: package_version(p) for p in ("torch", "transformers", "optimum", "onnx", "onnxruntime")}}
    from evaluation.evaluate import SCORES_FILE

    scores = json.loads((path / SCORES_FILE).read_text()) if (path / SCORES_FILE).is_file() else {}
    return Fp32(fp32, tokenizer, config, reference, parity, common, training_facts.read(path), scores)


def build_int8(fp32: Fp32, staging: Path, validation: Path, per_channel: bool, embeddings: bool,
               fp32_groups: tuple, max_f1_drop: float, on_f1_drop: str, also_fp32: bool, max_sentences: int | None,
               timings: dict) -> list[Built]:
    """Stages 3-4 for int8: quantise, gate on validation entity F1 against fp32; the versions to write."""
    with _timed(timings, "quantise_s"):
        _log("quantising to int8 ...")
        int8 = staging / "int8.onnx"
        try:
            keep = fp32_nodes(fp32.path, fp32_groups)
        except ValueError as e:
            raise ExportError(f"--int8-fp32: {e}") from None
        rows = validation_rows(validation)
        quant = quantise(fp32.path, int8, per_channel, embeddings,
                         calibration_feeds(rows, fp32.tokenizer, fp32.config), exclude=keep)
        quant["fp32_groups"] = list(fp32_groups)
        check_signature(int8)
        int8_sess = session(int8)
    with _timed(timings, "f1_gate_s"):
        # int8 is not held to the 1e-4 gate (the F1 gate decides); its drift is recorded.
        int8_parity = fp32.reference.check_graph(int8_sess)
        gate = {"file": str(validation), **validation_f1(
            rows, fp32.tokenizer, fp32.config,
            {"fp32": ort_logits(session(fp32.path)), "int8": ort_logits(int8_sess)}, max_sentences)}
    # The drop's 95% interval from a paired bootstrap: the gate holds the point estimate to the
    # limit and reports the interval, so a user sees how sure the verdict is.
    delta, low, high = gate["int8_minus_fp32_points"]
    drop = -delta
    gate.update(drop_points=drop, max_drop_points=max_f1_drop, passed=drop <= max_f1_drop)
    quant["gate"] = gate
    verdict = (f"int8 entity micro-F1 {gate['f1']['int8']:.4f} vs fp32 {gate['f1']['fp32']:.4f} on {validation}: "
               f"a drop of {drop:.2f} points (95% paired interval {-high:.2f} to {-low:.2f}; allowed {max_f1_drop:g}), "
               f"{gate['speedup']:.2f}x fp32's speed")
    if not gate["passed"] and on_f1_drop == "fail":
        raise ExportError(f"{verdict}; nothing written. Allow more with --max-f1-drop, write fp32 instead "
                          "with --on-f1-drop fp32, or export without --quantize")
    if not gate["passed"]:
        _log(f"warning: {verdict}; writing the fp32 model instead (--on-f1-drop fp32)")
        tried = {"requested": "int8", **quant}
        return [Built(fp32.path, ExportRecord(**fp32.common, precision="fp32", parity=fp32.parity, quantisation=tried))]
    built = [Built(fp32.path, ExportRecord(**fp32.common, precision="fp32", parity=fp32.parity))] if also_fp32 else []
    built.append(Built(int8, ExportRecord(**fp32.common, precision="int8", quantisation=quant,
                                          parity={**fp32.parity, "int8": int8_parity})))
    return built


def write_built(built: list[Built], fp32: Fp32, staging: Path, repository: str | Path, started: float,
                timings: dict, report: dict | None) -> Path:
    """Stage 5: each built model as the next version of the whole ensemble; returns the newest finer_model folder."""
    written = []
    spec = ServingSpec(max_length=fp32.config.max_length, stride=fp32.config.stride)
    for item in built:
        folder = staging / f"version-{item.record.precision}"
        folder.mkdir()
        item.onnx.rename(folder / "model.onnx")
        shutil.copyfile(staging / "tokenizer.json", folder / "tokenizer.json")
        fp32.config.save(folder)
        record = item.record
        record.model_sha256, record.model_bytes = _sha256(folder / "model.onnx"), (folder / "model.onnx").stat().st_size
        record.timings_s = {k: round(v, 2) for k, v in {**timings, "total_s": time.perf_counter() - started}.items()}
        record.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        (folder / "export.json").write_text(json.dumps(record.to_dict(), indent=1) + "\n")
        model_card.write(folder, record.to_dict(), fp32.config, fp32.facts, fp32.scores)
        target = write_version(repository, folder, spec)  # every model's version N; configs regenerated
        written.append(target)
        if report is not None:
            report[str(target)] = record.to_dict()
    return written[-1]


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
    int8_fp32: tuple = INT8_FP32_GROUPS,
    max_f1_drop: float = MAX_F1_DROP_POINTS,
    on_f1_drop: str = "fail",
    also_fp32: bool = False,
    max_validation_sentences: int | None = None,
    eval_data: str | None = None,
    finer_sample: str | None = None,
    force: bool = False,
    max_eval_sentences: int | None = None,
    report: dict | None = None,
) -> Path:
    """Export, check and write one new version (two with `also_fp32`); returns the newest version folder.

    Before writing, the candidate is compared with the served version (export.promotion) on
    `eval_data`'s test split and `finer_sample`'s dev part (default: the data the model was trained
    on, from its training.json); `force` writes it even when it is worse.
    Raises ExportError (nothing written) on bad input, a failed parity gate, a failed F1 gate or a refusal.
    `report`, if given, is filled with what each written version's export.json holds, keyed by folder.
    """
    if quantize not in (None, "int8"):
        raise ExportError(f"--quantize {quantize!r}: only int8 is supported")
    if quantize and validation is None:
        raise ExportError("--quantize int8 needs --validation FILE (FiNER-format jsonl) for the F1 gate")
    if on_f1_drop not in ("fail", "fp32"):
        raise ExportError(f"on_f1_drop must be 'fail' or 'fp32', not {on_f1_drop!r}")
    started, timings = time.perf_counter(), {}
    try:
        staging = staging_folder(repository)
    except RepositoryError as e:
        raise ExportError(str(e)) from None
    try:
        fp32 = build_fp32(str(model_or_uri), staging, tracking_uri, max_length, stride, parity_data,
                          parity_sentences, timings)
        if quantize:
            built = build_int8(fp32, staging, Path(validation), per_channel, quantize_embeddings, tuple(int8_fp32),
                               max_f1_drop, on_f1_drop, also_fp32, max_validation_sentences, timings)
        else:
            built = [Built(fp32.path, ExportRecord(**fp32.common, precision="fp32", parity=fp32.parity))]
        trained_on = fp32.facts.get("data", {})
        with _timed(timings, "promotion_s"):
            verdict = decide(Model("candidate", built[-1].onnx, fp32.tokenizer, fp32.config), Path(repository),
                             eval_data or trained_on.get("source", ""),
                             trained_on.get("finer_sample", "") if finer_sample is None else finer_sample,
                             force, max_eval_sentences)
        _log(verdict.line)
        source = fp32.common["source"]
        if not verdict.promoted:
            _log(registry.mark(source, registry.CHALLENGER, tracking_uri))
            raise ExportError(f"not written: the candidate is worse than served version {verdict.served_version} "
                              "(see the line above); --force writes it anyway")
        for item in built:
            item.record.promotion = verdict.to_dict()
        newest = write_built(built, fp32, staging, repository, started, timings, report)
        _log(registry.mark(source, registry.CHAMPION, tracking_uri, (newest / model_card.FILE).read_text()))
        return newest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.build", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Rollback: --rollback moves the newest version N of every model of the ensemble "
                                       "to <repository>/<model>/.retired/<N>; restart Triton to serve the previous one.")
    p.add_argument("model", nargs="?", help="trained model folder, or MLflow URI models:/<name>/<version> or runs:/<run id>/model")
    p.add_argument("--repository", default="model_repository", help="Triton model repository root (default: %(default)s)")
    p.add_argument("--quantize", choices=["int8"], help="int8 (activation scales calibrated on --validation), gated on validation F1")
    p.add_argument("--validation", help="FiNER-format jsonl (tokens, ner_tags) for the int8 F1 gate")
    p.add_argument("--max-validation-sentences", type=int, default=None, help="score only the first N validation sentences that hold a number")
    p.add_argument("--max-f1-drop", type=float, default=MAX_F1_DROP_POINTS, help="allowed int8 entity micro-F1 drop in points (default: %(default)s)")
    p.add_argument("--on-f1-drop", choices=["fail", "fp32"], default="fail", help="when int8 loses more: fail (default) or write fp32 instead")
    p.add_argument("--also-fp32", action="store_true", help="with --quantize: also write the fp32 model, as the version before the int8 one")
    p.add_argument("--no-per-channel", dest="per_channel", action="store_false", help="per-tensor int8 weights (default: per channel, more accurate)")
    p.add_argument("--quantize-embeddings", action="store_true", help="int8 embedding tables too (smaller file; default keeps them fp32)")
    p.add_argument("--int8-fp32", type=lambda v: tuple(g for g in v.split(",") if g and g != "none"),
                   default=INT8_FP32_GROUPS, metavar="GROUPS",
                   help="node groups kept fp32 in the int8 model, e.g. classifier,ffn.5 ('none': quantise all; "
                        f"default: {','.join(INT8_FP32_GROUPS) or 'none'}, from `python -m export.int8_sensitivity`)")
    p.add_argument("--parity-data", help="FiNER-format jsonl whose 'tokens' feed the parity check (default: built-in filing sentences)")
    p.add_argument("--parity-sentences", type=int, default=32, help="sentences of --parity-data to use (default: %(default)s)")
    p.add_argument("--max-length", type=int, default=None, help="window length in sub-tokens (default: the training run's finer.json, else 128)")
    p.add_argument("--stride", type=int, default=None, help="window overlap (default: the training run's, else 32)")
    p.add_argument("--tracking-uri", default="sqlite:///mlruns.db", help="MLflow tracking URI for models:/ and runs:/ (default: %(default)s)")
    p.add_argument("--eval-data", help="FiNER-format folder whose test split the candidate and the served version are "
                                       "compared on (default: the data the model was trained on, from its training.json)")
    p.add_argument("--finer-sample", help="FiNER question-batch file whose dev part joins the comparison "
                                          "(default: the one the model was trained with; '' for none)")
    p.add_argument("--max-eval-sentences", type=int, default=None, help="compare on the first N sentences of each set only")
    p.add_argument("--force", action="store_true", help="write the candidate even if it is worse than the served version "
                                                        "(recorded in export.json)")
    p.add_argument("--rollback", action="store_true", help="retire the newest version instead of exporting")
    a = p.parse_args(argv)
    try:
        if a.rollback:
            if a.model:
                p.error("--rollback takes no model")
            old, now = rollback(a.repository)
            print(f"retired version {old} of every model of the ensemble (now in <model>/.retired/); version {now} "
                  "is the newest: restart Triton to serve it")
            print(registry.champion_of(Path(a.repository) / MODEL_NAME / str(now), a.tracking_uri))
            return 0
        if not a.model:
            p.error("give a model folder or MLflow URI (or --rollback)")
        report: dict = {}
        export_model(a.model, a.repository, quantize=a.quantize, validation=a.validation, parity_data=a.parity_data,
                     parity_sentences=a.parity_sentences, max_length=a.max_length, stride=a.stride,
                     tracking_uri=a.tracking_uri, per_channel=a.per_channel, quantize_embeddings=a.quantize_embeddings,
                     int8_fp32=a.int8_fp32,
                     max_f1_drop=a.max_f1_drop, on_f1_drop=a.on_f1_drop, also_fp32=a.also_fp32,
                     max_validation_sentences=a.max_validation_sentences, eval_data=a.eval_data,
                     finer_sample=a.finer_sample, force=a.force, max_eval_sentences=a.max_eval_sentences, report=report)
    except (ExportError, RepositoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(summary(report))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
