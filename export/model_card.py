"""MODEL_CARD.md for an exported version, in the sections of a Hugging Face model card.

Written into `finer_model/<N>/` (and `finer_labels/<N>/`, which serves it: `finer-tag --info`,
the web app's status tab) and set as the registered MLflow version's description. Its facts come
from what each stage left: training.json (base model, options, data, types with few examples),
scores.json (the run's calibrated scores with intervals, per type and per year), export.json
(precision, int8 gate, promotion) and finer.json (labels, calibrated minimum scores).
"""
from __future__ import annotations

from pathlib import Path

from finer.labels import types_of

FILE = "MODEL_CARD.md"
SET_NAMES = {"filtered": "test, sentences holding a tag of the scope", "unfiltered": "test, every sentence",
             "finer_dev_filtered": "FiNER-era dev, sentences holding a tag", "finer_dev_unfiltered": "FiNER-era dev, every sentence"}


def _ci(bounds) -> str:
    return f" [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else ""


def _data_rows(data: dict) -> list[str]:
    rows = ["| part | sentences | companies | period years | forms |", "|---|---:|---:|---|---|"]
    for part in ("train", "validation", "test", "finer_dev"):
        d = data.get(part)
        if d and d.get("sentences"):
            years = f"{d['years'][0]}-{d['years'][-1]}" if d.get("years") else "not recorded (FiNER-139 rows)"
            forms = ", ".join(f"{k} {v}" for k, v in d.get("forms", {}).items()) or "-"
            rows.append(f"| {part} | {d['sentences']} | {d.get('companies') or '-'} | {years} | {forms} |")
    return rows


def _score_rows(scores: dict) -> list[str]:
    rows = ["| set | sentences | precision | recall | micro-F1 [95% CI] | before the calibrated decision (P / R / F1) |",
            "|---|---:|---:|---:|---:|---|"]
    for key, s in scores.items():
        before = s.get("uncalibrated")
        rows.append(f"| {SET_NAMES.get(key, key)} | {s['sentences']} | {s['micro']['precision']:.3f} | "
                    f"{s['micro']['recall']:.3f} | {s['micro']['f1-score']:.3f}{_ci(s.get('micro_f1_ci'))} | "
                    + (f"{before['precision']:.3f} / {before['recall']:.3f} / {before['f1-score']:.3f} |" if before else "- |"))
    return rows


def _type_rows(scores: dict, limit: int = 25) -> list[str]:
    main = scores.get("filtered") or next(iter(scores.values()), None)
    if not main:
        return []
    types = sorted(main["per_type"].items(), key=lambda kv: -kv[1]["support"])
    rows = [f"Per type on the {SET_NAMES.get('filtered')} (the {min(limit, len(types))} most frequent of {len(types)}):\n",
            "| type | support | F1 [95% CI] |", "|---|---:|---:|"]
    rows += [f"| {t} | {v['support']} | {v['f1']:.3f}{_ci(v.get('ci'))} |" for t, v in types[:limit]]
    return rows


def _year_rows(scores: dict) -> list[str]:
    years = (scores.get("unfiltered") or scores.get("filtered") or {}).get("by_year") or {}
    if not years:
        return []
    return ["By period year (test, micro-F1 [95% CI], gold entities):\n", "| year | gold entities | micro-F1 |", "|---|---:|---:|",
            *(f"| {y} | {d['gold_entities']} | {d['micro_f1']:.3f}{_ci(d.get('micro_f1_ci'))} |" for y, d in years.items())]


def _weak_types(scores: dict, below: float = 0.5, support: int = 5) -> str:
    """The limitation line for types the model gets mostly wrong on the test split's tagged sentences."""
    main = scores.get("filtered") or {}
    weak = sorted((v["f1"], t, v["support"]) for t, v in main.get("per_type", {}).items()
                  if v["support"] >= support and v["f1"] < below)
    if not weak:
        return ""
    return (f"- Types scored below F1 {below} on the test sentences that hold a tag: "
            + ", ".join(f"{t} ({f:.3f} on {n} entities)" for f, t, n in weak) + ": do not rely on these tags.")


def _export_lines(record: dict) -> list[str]:
    lines = [f"- Served in **{record['precision']}** (ONNX Runtime); parity with PyTorch: max |logit difference| "
             f"{record['parity']['optimised']['max_abs_diff']:.1e} (gate {record['parity']['tolerance']:g})."]
    gate = (record.get("quantisation") or {}).get("gate")
    if gate:
        d = gate["int8_minus_fp32_points"]
        lines.append(f"- int8 gate on {gate['sentences']} validation sentences: entity micro-F1 fp32 {gate['f1']['fp32']:.4f}, "
                     f"int8 {gate['f1']['int8']:.4f}: a drop of {gate['drop_points']:.2f} points (paired 95% interval "
                     f"{-d[2]:.2f} to {-d[1]:.2f}; allowed {gate['max_drop_points']:g}), {gate['speedup']:.2f}x fp32's speed.")
    promotion = record.get("promotion")
    if promotion:
        lines.append(f"- Promotion: {promotion['verdict'].removeprefix('promotion: ')}")
    return lines


def render(record: dict, config, facts: dict, scores: dict) -> str:
    """The card's Markdown. `config` is the version's TaggerConfig; `facts` training.json, `scores`
    scores.json of the model folder ({} when the model was trained elsewhere)."""
    types = types_of(config.labels)
    source = record["source"]
    data = facts.get("data", {})
    train_years = data.get("train", {}).get("years") or []
    few = facts.get("few_examples", {})
    weak = _weak_types(scores)
    lines = [
        "# Model card: finer_model", "",
        f"Token classifier tagging numeric entities of SEC filings with their XBRL concept (FiNER-139 types). "
        f"Exported {record['created']} from `{source['model']}`.", "",
        "## Model details", "",
        f"- Base model: `{facts.get('base_model', 'not recorded')}` ({source.get('architecture', '?')}, "
        f"{source.get('parameters', 0) / 1e6:.1f} M parameters)"
        + ("; the offline encoder adapted to filing text first (`make pretrain`, masked LM)."
           if "dapt" in str(facts.get("base_model", "")) else "."),
        f"- Scope: {len(types)} entity types ({len(config.labels)} tags): "
        + (", ".join(types) if len(types) <= 12 else f"{', '.join(types[:8])} and {len(types) - 8} more") + ".",
        f"- Windows of {config.max_length} sub-tokens, stride {config.stride}; buckets {config.buckets}.",
        f"- MLflow run: {facts.get('mlflow_run_id') or source.get('mlflow', {}).get('run_id', 'not tracked')}"
        + (f"; registered as `{source['mlflow']['model_uri']}`" if source.get("mlflow", {}).get("model_uri") else "") + ".",
        "", "## Training data", "",
        f"Source `{data.get('source', 'not recorded')}`"
        + (f", with FiNER-139's own partially labelled sentences from `{data['finer_sample']}`" if data.get("finer_sample") else "")
        + ". Splits by company: no company is in two parts.", "", *_data_rows(data), "",
        "## Training procedure", "",
        f"Options that differ from the defaults: "
        + (", ".join(f"`{k}={v}`" for k, v in facts.get("options", {}).items()) or "none recorded") + ".",
        f"Training took {facts.get('train_minutes', '?')} min; best validation entity micro-F1 "
        f"{facts.get('best_validation_f1') or 0:.3f}.",
        "", "## Evaluation", "",
        "Scores of the fitted model (PyTorch, calibrated decision applied, as `make evaluate` reports them), "
        "with 95% bootstrap intervals over sentences:" if scores else "No scores were recorded with this model.", "",
        *_score_rows(scores), "", *_type_rows(scores), "", *_year_rows(scores), "",
        "## Export", "", *_export_lines(record), "",
        "## Calibrated decision", "",
        ("Minimum entity score per type (fitted on validation for micro-F1; a client may ask for everything above a "
         "lower score): " + ", ".join(f"{t} {v:.2f}" for t, v in sorted(config.min_scores.items())) + ".")
        if config.min_scores else "None: every entity the model finds is returned.", "",
        "## Intended use", "",
        "Tagging numbers in the narrative text of 10-K and 10-Q filings with FiNER-139 concepts, for review by a "
        "filing team; not a substitute for the filer's own XBRL tagging. Tables and hidden text are not read.", "",
        "## Limitations", "",
        f"- Trained on filings of {train_years[0]}-{train_years[-1]}: other years, and other filers' conventions, "
        "are measured only as far as the FiNER-era dev part reaches." if train_years
        else "- The period years of the training filings are not recorded.",
        (f"- {len(few)} type(s) had fewer than 20 training entities; their tags are unreliable: "
         + ", ".join(f"{t} ({n})" for t, n in sorted(few.items(), key=lambda kv: kv[1])[:15])
         + (" ..." if len(few) > 15 else "") + ".") if few else "- Every type had at least 20 training entities.",
        *([weak] if weak else []),
        "- Numbers are tagged one entity per number; a concept written in words is not.", "",
        "## How to reproduce", "",
        f"```\n{facts.get('command', '# not recorded: the model was trained outside this project')}\n"
        f"python -m export.build {source['model']}"
        + (f" --quantize int8 --validation <validation.jsonl>" if record["precision"] == "int8" else "") + "\n```", "",
    ]
    return "\n".join(lines)


def write(folder: Path, record: dict, config, facts: dict, scores: dict) -> Path:
    path = Path(folder) / FILE
    path.write_text(render(record, config, facts, scores))
    return path
