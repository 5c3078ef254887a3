"""Entity-level evaluation: seqeval (IOB2, strict) per class, micro/macro/weighted, confusion matrix.

Predictions go through `finer.pipeline` (the windows and per-word decoding that serving uses), so
these numbers are the numbers of the served model. Scored twice: on the test sentences that hold a
tag of the scope (the seed's setting) and on all test sentences (what a filing looks like).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from finer.labels import DEBT_TYPES, UNKNOWN, LabelScope, entity_type, types_of
from finer.pipeline import CONFIG_FILE, LogitsFn, Tagger, TaggerConfig, plain_tokenizer
from finer.spans import drop_below
from finer.words import may_be_entity
from filings.finer_sample import FINER_DEV
from evaluation.confidence import bootstrap, entity_counts, save_counts
from evaluation.errors import error_report, error_table, plot_errors
from training.metrics import entity_scores
from training.models import load_model, torch_logits


def predict_scored(logits_fn: LogitsFn, tokenizer, rows: Sequence[dict], config: TaggerConfig,
                   batch_size: int = 32, desc: str = "predicting") -> list[tuple[list[str], list[float]]]:
    """The model's own tag of every word and its probability, per sentence, before the calibrated
    decision; sentences are length-sorted into batches (less padding), order restored.

    Decoding tags only words that may carry an entity (numbers, number words), so a sentence
    without any is all O whatever the logits: it is not run through the model at all."""
    tagger = Tagger(tokenizer, config, logits_fn)
    out = [(["O"] * len(r["tokens"]), [1.0] * len(r["tokens"])) for r in rows]
    live = [i for i, r in enumerate(rows) if any(map(may_be_entity, r["tokens"]))]
    order = sorted(live, key=lambda i: len(rows[i]["tokens"]))
    for i in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch"):
        idx = order[i : i + batch_size]
        for j, scored in zip(idx, tagger.word_scores([rows[j]["tokens"] for j in idx])):
            out[j] = scored
    return out


def predict(logits_fn: LogitsFn, tokenizer, rows: Sequence[dict], config: TaggerConfig,
            batch_size: int = 32, desc: str = "predicting") -> list[list[str]]:
    """Tags per sentence as served: the model's, with the calibrated decision (config.min_scores)."""
    return [drop_below(tags, scores, config.min_scores)
            for tags, scores in predict_scored(logits_fn, tokenizer, rows, config, batch_size, desc)]


def word_confusion(gold: list[list[str]], pred: list[list[str]]) -> tuple[list[str], np.ndarray]:
    """Word-level confusion between entity types (B/I merged), 'O' first; rows gold, columns predicted."""
    types = sorted({entity_type(t) for s in gold + pred for t in s} - {""})
    names = ["O", *types]
    index = {n: i for i, n in enumerate(names)}
    m = np.zeros((len(names), len(names)), dtype=np.int64)
    for gs, ps in zip(gold, pred):
        for g, p in zip(gs, ps):
            m[index[entity_type(g) or "O"], index[entity_type(p) or "O"]] += 1
    return names, m


def plot_confusion(names: list[str], matrix: np.ndarray, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Row-normalised so rare types are as readable as frequent ones; the O->O cell would swamp the scale.
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(5, 0.35 * len(names) + 3)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    short = [n if len(n) <= 40 else n[:37] + "..." for n in names]
    ax.set_xticks(range(len(names)), short, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), short, fontsize=7)
    if len(names) <= 12:
        for (i, j), v in np.ndenumerate(matrix):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="black" if norm[i, j] < 0.6 else "white")
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def score(words: list[list[str]], gold: list[list[str]], pred: list[list[str]], types: Sequence[str],
          out_dir: Path, name: str) -> dict:
    """seqeval report, bootstrap intervals, word confusion and error report of one test set."""
    names, matrix = word_confusion(gold, pred)
    plot_confusion(names, matrix, out_dir / f"confusion_{name}.png",
                   f"word-level confusion, {name} test ({len(gold)} sentences), rows normalised")
    errors = error_report(words, gold, pred)
    plot_errors(errors, out_dir / f"errors_{name}.png", f"entity errors, {name} test ({len(gold)} sentences)")
    counts = entity_counts(gold, pred, types)
    save_counts(out_dir / f"entity_counts_{name}.npz", counts, types)  # for paired comparisons of runs
    return {
        "counts": counts,  # dropped before evaluation.json is written
        "sentences": len(gold),
        "report": entity_scores(gold, pred),
        "ci": bootstrap(counts, types),
        "confusion": {"labels": names, "matrix": matrix.tolist()},
        "errors": errors,
    }




def known_only(gold: list[str], pred: list[str]) -> tuple[list[str], list[str]]:
    """Gold and predicted tags with the words of unknown gold label left out of the score (both O)."""
    return (["O" if g == UNKNOWN else g for g in gold],
            [p if g != UNKNOWN else "O" for g, p in zip(gold, pred)])


def scored_pair(tags: list[str], pred: list[str], scope: LabelScope, known: set) -> tuple[list[str], list[str]]:
    """Gold and predicted tags of one sentence as scored: read in `scope`, gold tags the model does not
    know (`known`: its labels) as O, words of unknown gold label left out."""
    return known_only([t if t in known else "O" for t in scope.restrict(tags)], scope.restrict(pred))


def evaluate_rows(logits_fn: LogitsFn, tokenizer, rows: list[dict], config: TaggerConfig, out_dir: Path,
                  scopes: Sequence[LabelScope | None], batch_size: int = 32, unfiltered: bool = True,
                  name: str = "") -> dict:
    """Scores on the filtered and (if `unfiltered`: `rows` are all sentences of the set) the unfiltered
    set of each scope; the first scope is the
    model's own (keys `filtered`, `unfiltered`), each further one is read from the same predictions
    (keys `<scope>_filtered`, ...: e.g. the debt tags of an all-tags model). A `name` (another set
    than the test split, e.g. FINER_DEV) prefixes every key and file. Words of `UNKNOWN` gold label
    are not scored. Writes <name>evaluation.json, summary.md, confusion and error plots into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    known = set(config.labels) | {UNKNOWN}
    scored = predict_scored(logits_fn, tokenizer, rows, config, batch_size=batch_size,
                            desc=f"{name or 'test'} (all sentences)")
    raw = [tags for tags, _ in scored]
    pred_all = [drop_below(tags, scores, config.min_scores) for tags, scores in scored]
    words = [r["tokens"] for r in rows]
    results, tables = {}, []
    for n, scope in enumerate(s for s in scopes if s is not None):
        prefix = (f"{name}_" if name else "") + ("" if n == 0 else f"{scope.name}_")
        gold_all, pred_scope, raw_scope = [], [], []
        for r, p, q in zip(rows, pred_all, raw):
            gold, scoped = scored_pair(r["ner_tags"], p, scope, known)
            gold_all.append(gold)
            pred_scope.append(scoped)
            raw_scope.append(scored_pair(r["ner_tags"], q, scope, known)[1])
        keep = [i for i, g in enumerate(gold_all) if any(t != "O" for t in g)]
        sets = [("filtered", keep)] + ([("unfiltered", range(len(rows)))] if unfiltered else [])
        for kind, idx in sets:
            gold = [gold_all[i] for i in idx]
            results[prefix + kind] = score([words[i] for i in idx], gold, [pred_scope[i] for i in idx],
                                           scope.types, out_dir, prefix + kind)
            results[prefix + kind]["index"] = list(idx)
            if config.min_scores:  # the same set before the calibrated decision
                results[prefix + kind]["uncalibrated"] = entity_scores(gold, [raw_scope[i] for i in idx])["micro avg"]
        tables.append(summary_table(results, scope.types if scope.name != "all" else None, prefix,
                                    f"{scope.name}, {name}" if name else scope.name))
    groups = {"period year": [str(r.get("period", ""))[:4] or "?" for r in rows],
              "form": [r.get("form") or "?" for r in rows]}
    if any(set(g) != {"?"} for g in groups.values()):  # corpus rows carry them; FiNER's do not
        for r in results.values():
            idx = r.pop("index")
            r["by_group"] = {kind: group_scores(r["counts"], [g[i] for i in idx]) for kind, g in groups.items()}
        tables.append(group_table(results))
    for r in results.values():
        r.pop("counts")
        r.pop("index", None)
    stem = f"{name}_" if name else ""
    (out_dir / f"{stem}evaluation.json").write_text(json.dumps(results, indent=1))
    (out_dir / f"{stem}summary.md").write_text("\n\n".join(tables) + "\n")
    (out_dir / f"{stem}errors.md").write_text("\n\n".join(
        f"### {name} test\n\n{error_table(r['errors'])}" for name, r in results.items()) + "\n")
    return results


SCORES_FILE = "scores.json"  # beside the weights: what the model card reports (export.model_card)


def scores_summary(results: dict) -> dict:
    """Per scored set: sentences, micro P/R/F1 with its interval, per type F1 [interval] and support,
    by period year, and micro P/R/F1 before the calibrated decision: small enough to travel with the model."""
    out = {}
    for name, r in results.items():
        report, ci = r["report"], r.get("ci", {})
        out[name] = {
            "sentences": r["sentences"],
            "micro": {k: round(report["micro avg"][k], 4) for k in ("precision", "recall", "f1-score")},
            "micro_f1_ci": ci.get("micro_f1"),
            "per_type": {t: {"f1": round(v["f1-score"], 4), "support": int(v["support"]),
                             "ci": ci.get("per_class_f1", {}).get(t)}
                         for t, v in report.items() if not t.endswith("avg")},
            "by_year": {y: {k: d[k] for k in ("gold_entities", "micro_f1", "micro_f1_ci")}
                        for y, d in r.get("by_group", {}).get("period year", {}).items()},
            "uncalibrated": {k: round(r["uncalibrated"][k], 4) for k in ("precision", "recall", "f1-score")}
            if "uncalibrated" in r else None,
        }
    return out


def group_scores(counts: np.ndarray, groups: Sequence[str]) -> dict:
    """Micro F1 [95% CI] of the sentences of each group (e.g. period year), from per-sentence counts."""
    out = {}
    labels = np.asarray(groups)
    for g in sorted(set(groups)):
        c = counts[labels == g]
        tp, fp, fn = c[..., 0].sum(), c[..., 1].sum(), c[..., 2].sum()
        ci = bootstrap(c, range(c.shape[1]), samples=300).get("micro_f1") if (tp + fn) else None
        out[g] = {"sentences": int(len(c)), "gold_entities": int(tp + fn),
                  "micro_f1": round(float(2 * tp / max(1, 2 * tp + fp + fn)), 4), "micro_f1_ci": ci}
    return out


def group_table(results: dict) -> str:
    """Markdown: micro F1 of every scored set by period year and by form (users tag years the model never saw)."""
    lines = ["**By period year and form** (micro-F1 [95% CI], gold entities)\n",
             "| set | grouping | group | sentences | gold entities | micro-F1 [95% CI] |", "|---|---|---|---:|---:|---:|"]
    for name, r in results.items():
        for kind, scores in r["by_group"].items():
            for g, d in scores.items():
                ci = f" [{d['micro_f1_ci'][0]:.3f}, {d['micro_f1_ci'][1]:.3f}]" if d["micro_f1_ci"] else ""
                lines.append(f"| {name} | {kind} | {g} | {d['sentences']} | {d['gold_entities']} | {d['micro_f1']:.3f}{ci} |")
    return "\n".join(lines)


def _ci(r: dict, key: str, cls: str | None = None) -> str:
    bounds = r.get("ci", {}).get("per_class_f1", {}).get(cls) if cls else r.get("ci", {}).get(key)
    return f" [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else ""


def summary_table(results: dict, types: Sequence[str] | None = None, prefix: str = "", name: str = "") -> str:
    """Markdown table: per class and averages, with 95% bootstrap intervals; P/R on the unfiltered set
    (on the filtered one when only that was scored)."""
    fr_ = results[prefix + "filtered"]
    ur_ = results.get(prefix + "unfiltered", fr_)
    f, u = fr_["report"], ur_["report"]
    classes = sorted(k for k in u if not k.endswith("avg"))
    if types is not None:
        classes = [c for c in classes if c in types]
    title = f"**{name or prefix.rstrip('_') or 'model'} scope**: filtered = sentences holding a tag of the scope\n\n"
    lines = ["| class | support | P | R | F1 (filtered) [95% CI] | F1 (unfiltered) [95% CI] |", "|---|---:|---:|---:|---:|---:|"]
    for c in [*classes, "micro avg", "macro avg", "weighted avg"]:
        fr, ur = f.get(c, {}), u.get(c, {})
        key = {"micro avg": "micro_f1", "macro avg": "macro_f1"}.get(c, "")
        cls = None if c.endswith("avg") else c
        lines.append(f"| {c} | {int(ur.get('support', 0))} | {ur.get('precision', 0):.3f} | {ur.get('recall', 0):.3f} "
                     f"| {fr.get('f1-score', 0):.3f}{_ci(fr_, key, cls) if key or cls else ''} "
                     + (f"| {ur.get('f1-score', 0):.3f}{_ci(ur_, key, cls) if key or cls else ''} |"
                        if ur_ is not fr_ else "| not scored |"))
    for kind, r in (("filtered", fr_), ("unfiltered", ur_ if ur_ is not fr_ else None)):
        if r is not None and "uncalibrated" in r:
            b, a = r["uncalibrated"], r["report"]["micro avg"]
            lines.append(f"\nCalibrated decision, {kind}: micro P/R/F1 {b['precision']:.3f} / {b['recall']:.3f} / "
                         f"{b['f1-score']:.3f} before, {a['precision']:.3f} / {a['recall']:.3f} / {a['f1-score']:.3f} after.")
    return title + "\n".join(lines)


def run_checklist(tagger: Tagger, out_dir: Path) -> str:
    """The debt checklist (evaluation/checklist.py) of a model: its table, also written to checklist.md."""
    from evaluation.checklist import load, score, table

    out_dir.mkdir(parents=True, exist_ok=True)
    text = "**Debt checklist** (`python -m evaluation.checklist`): sentences right per pattern\n\n" + table(score(tagger, load()))
    (out_dir / "checklist.md").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    from filings.sources import DataError, LoadReport, load_splits, resolve_source
    from training.features import tagger_config

    p = argparse.ArgumentParser(prog="python -m evaluation.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("model", help="trained model folder (runs/<name>/model)")
    p.add_argument("--data", default="hub", help="'hub' (FiNER-139) or a FiNER-format folder/zip/jsonl")
    p.add_argument("--split", default="test")
    p.add_argument("--scope", default=None, help="label scope; default: the model's labels")
    p.add_argument("--report-scope", default=None, help="also score this narrower scope (default: 'debt' for a model wider than the debt tags)")
    p.add_argument("--finer-sample", default="", help="FiNER question-batch file: its dev part is scored too")
    p.add_argument("--filtered-only", action="store_true", help="score only the sentences holding a tag of the scope (minutes instead of a quarter hour)")
    p.add_argument("--mlflow", action="store_true", help="log the scores into the model's MLflow run (from its mlflow.json)")
    p.add_argument("--tracking-uri", default="sqlite:///mlruns.db")
    p.add_argument("--max-samples", type=int, default=None)
    p.add_argument("--out", default=None, help="folder for evaluation.json and confusion PNGs (default: beside the model)")
    p.add_argument("--batch-size", type=int, default=32)
    a = p.parse_args(argv)
    try:
        if not (Path(a.model) / "config.json").is_file():
            raise DataError(f"{a.model}: not a trained model folder (no config.json); train one with `make train`")
        model, tokenizer = load_model(a.model)
        labels = model.config.id2label
        scope = LabelScope.parse(a.scope) if a.scope else LabelScope(
            "model", tuple(types_of(labels.values())))
        report = LoadReport()
        rows = load_splits(resolve_source(a.data), report).get(a.split)
        if not rows:
            raise DataError(f"{a.data}: no '{a.split}' split")
        rows = rows[: a.max_samples]
        print(report.summary(), file=sys.stderr)
        # finer.json carries what training decided about reading the text (e.g. numeric shapes)
        config = TaggerConfig.load(a.model) if (Path(a.model) / CONFIG_FILE).is_file() else tagger_config(tokenizer, labels)
        out = Path(a.out) if a.out else Path(a.model).parent / "evaluation"
        run_id = None
        if a.mlflow:
            record = Path(a.model) / "mlflow.json"
            if not record.is_file():
                raise DataError(f"--mlflow: {record} not found (the model was not trained with MLflow tracking)")
            run_id = json.loads(record.read_text())["run_id"]
        # a model wider than the debt tags is also scored as the debt view, the view the first start serves
        report = a.report_scope or ("debt" if set(DEBT_TYPES) < set(scope.types) else "")
        report_scope = LabelScope.parse(report) if report else None
        logits, plain = torch_logits(model), plain_tokenizer(tokenizer.backend_tokenizer)
        if a.filtered_only:
            rows = [r for r in rows if scope.covers(r["ner_tags"])]
        results = evaluate_rows(logits, plain, rows, config, out, [scope, report_scope], a.batch_size,
                                unfiltered=not a.filtered_only)
        if a.finer_sample:
            from filings.finer_sample import load_sample

            results |= evaluate_rows(logits, plain, load_sample(a.finer_sample)["dev"], config, out,
                                     [scope, report_scope], a.batch_size, name=FINER_DEV)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if run_id:
        from training.tracking import log_evaluation

        log_evaluation(a.tracking_uri, run_id, results, out)
        print(f"logged into MLflow run {run_id}")
    for summary in ("summary.md", f"{FINER_DEV}_summary.md" if a.finer_sample else ""):
        if summary:
            print((out / summary).read_text())
    print(run_checklist(Tagger(plain, config, logits), out))
    print(f"written: {out}/evaluation.json, summary.md, errors.md, confusion_*.png, errors_*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
