"""One table of training runs from MLflow: options -> test F1 with 95% intervals, training time.

    python -m evaluation.compare                          # every finished run of experiment 'finer'
    python -m evaluation.compare --runs base,shapes20     # by run name, in this order
    python -m evaluation.compare --scope debt             # the debt tags, also read from all-tags runs
    python -m evaluation.compare --scope debt --baseline base   # + each run's effect, paired bootstrap
    python -m evaluation.compare --scope debt --set finer_dev   # on the FiNER sample's dev part

Scores are the held-out companies' test split (never used for model selection): `filtered` =
sentences holding a tag of the scope (the seed's setting), `unfiltered` = every sentence.
With `--baseline`, each run's difference to that run is scored on the same resampled sentences
(paired bootstrap), which is far tighter than comparing two separate intervals.
"""
from __future__ import annotations

import argparse
import os
import sys
from functools import lru_cache

from training.train import TrainArgs

# The options of the model-quality work, shown when they differ from the defaults.
OPTIONS = {
    "number_shapes": lambda v: "shape tokens" if v == "True" else "",
    "augment_copies": lambda v: f"augment x{v}" if v not in ("0", "") else "",
    "numeric_o_weight": lambda v: f"O weight {float(v):g} on numbers" if v and float(v) != 1.0 else "",
    "label_all_subtokens": lambda v: "all sub-tokens labelled" if v == "True" else "",
}


def describe(params: dict) -> str:
    p = {k.removeprefix("finer."): v for k, v in params.items() if k.startswith("finer.")}
    parts = [f"{p.get('scope', '?')} scope", f"{float(p.get('epochs', TrainArgs.epochs)):g} epochs",
             f"from {'/'.join(p['model'].split('/')[-2:])}" if p.get("model") else ""]
    parts += [f(p.get(k, str(getattr(TrainArgs, k)))) for k, f in OPTIONS.items()]
    if p.get("seed", str(TrainArgs.seed)) != str(TrainArgs.seed):
        parts.append(f"seed {p['seed']}")
    return ", ".join(x for x in parts if x)


def _f1(m: dict, key: str) -> str:
    if key not in m:
        return "-"
    lo, hi = m.get(f"{key}_lo"), m.get(f"{key}_hi")
    return f"{m[key]:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")


def _prefix(run, scope: str | None, dataset: str = "test") -> str:
    """'' for the model's own scope on the test split, '<scope>_' for a narrower scope read from a wider
    model, each behind '<dataset>_' for another scored set (finer_dev: the FiNER sample's dev part)."""
    own = scope is None or run.data.params.get("finer.scope") == scope
    return ("" if dataset == "test" else f"{dataset}_") + ("" if own else f"{scope}_")


@lru_cache(maxsize=None)  # the baseline's counts serve every row
def _counts(tracking_uri: str, run_id: str, name: str):
    import mlflow

    from evaluation.confidence import load_counts

    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, tracking_uri=tracking_uri,
                                                   artifact_path=f"evaluation/entity_counts_{name}.npz")
    except Exception:  # evaluated before counts were stored: `python -m evaluation.evaluate --mlflow` adds them
        return None
    return load_counts(path)[0]


def _delta(tracking_uri: str, run, base, scope: str | None, test: str, dataset: str = "test") -> str:
    from evaluation.confidence import paired_difference

    a = _counts(tracking_uri, base.info.run_id, _prefix(base, scope, dataset) + test)
    b = _counts(tracking_uri, run.info.run_id, _prefix(run, scope, dataset) + test)
    if a is None or b is None or a.shape != b.shape:
        return "-"
    point, lo, hi = paired_difference(a, b)
    return f"{point:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def table(runs: list, scope: str | None = None, baseline=None, tracking_uri: str = "", dataset: str = "test") -> str:
    head = "| run | options | micro-F1 filtered [95% CI] | macro-F1 filtered [95% CI] | micro-F1 unfiltered [95% CI] "
    rule = "|---|---|---:|---:|---:|"
    if baseline is not None:
        head += f"| vs {baseline.info.run_name}, filtered | vs {baseline.info.run_name}, unfiltered "
        rule += "---:|---:|"
    lines = [head + "| train min | MLflow run |", rule + "---:|---|"]
    for r in runs:
        m, p = r.data.metrics, r.data.params
        # a narrower scope read from a wider model is logged as test_<scope>_...; the model's own as test_...
        prefix = "test_" + _prefix(r, scope, dataset)
        if f"{prefix}filtered_micro_f1" not in m:
            continue
        row = (f"| {r.info.run_name} | {describe(p)}{'' if not _prefix(r, scope) else f' (read as {scope})'} "
               f"| {_f1(m, prefix + 'filtered_micro_f1')} | {_f1(m, prefix + 'filtered_macro_f1')} "
               f"| {_f1(m, prefix + 'unfiltered_micro_f1')} ")
        if baseline is not None:
            row += "".join(f"| {_delta(tracking_uri, r, baseline, scope, t, dataset) if r.info.run_id != baseline.info.run_id else '(baseline)'} "
                           for t in ("filtered", "unfiltered"))
        lines.append(row + f"| {m.get('train_minutes', 0):.1f} | {r.info.run_id[:8]} |")
    return "\n".join(lines)


def per_class(runs: list, types: list[str], scope: str | None = None, dataset: str = "test") -> str:
    """F1 per type on the filtered set, one column per run."""
    rows = [r for r in runs if any(k.endswith(tuple(types)) for k in r.data.metrics)]
    lines = ["| type | " + " | ".join(r.info.run_name for r in rows) + " |", "|---|" + "---:|" * len(rows)]
    for t in types:
        cells = []
        for r in rows:
            key = f"test_{_prefix(r, scope, dataset)}filtered_f1.{t}"
            cells.append(f"{r.data.metrics[key]:.3f}" if key in r.data.metrics else "-")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def find_runs(tracking_uri: str, experiment: str, names: list[str] | None):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"no MLflow experiment {experiment!r} in {tracking_uri}; train a model first")
    runs = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'", order_by=["attributes.start_time ASC"])
    if names:
        by_name = {r.info.run_name: r for r in runs}  # the latest run of each name
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ValueError(f"no finished run named {', '.join(missing)} in experiment {experiment!r}")
        runs = [by_name[n] for n in names]
    return runs


def main(argv: list[str] | None = None) -> int:
    from finer.labels import LabelScope

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    p = argparse.ArgumentParser(prog="python -m evaluation.compare", description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="", help="comma-separated run names (default: all finished runs)")
    p.add_argument("--scope", default=None, help="score this scope, read from wider runs too (e.g. debt)")
    p.add_argument("--baseline", default="", help="run name to measure each run's effect against (paired bootstrap)")
    p.add_argument("--set", default="test", choices=["test", "finer_dev"], help="the scored set: the test split or the FiNER sample's dev part")
    p.add_argument("--experiment", default="finer")
    p.add_argument("--tracking-uri", default="sqlite:///mlruns.db")
    a = p.parse_args(argv)
    try:
        runs = find_runs(a.tracking_uri, a.experiment, [n for n in a.runs.split(",") if n] or None)
        baseline = find_runs(a.tracking_uri, a.experiment, [a.baseline])[0] if a.baseline else None
        types = list(LabelScope.parse(a.scope).types) if a.scope and a.scope != "all" else None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(table(runs, a.scope, baseline, a.tracking_uri, a.set))
    if types:
        print()
        print(per_class(runs, types, a.scope, a.set))
    return 0


if __name__ == "__main__":
    sys.exit(main())
