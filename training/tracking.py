"""MLflow tracking: a local SQLite store and artifact folder, no server needed to record a run.

Browse with: mlflow ui --backend-store-uri sqlite:///mlruns.db --host 127.0.0.1
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import mlflow

from filings.sources import DataError

RUN_ID_FILE = "mlflow_run_id"  # in a run's output folder


def resume_point(out: Path, resume: bool) -> tuple[str | None, str | None]:
    """(newest checkpoint, MLflow run id) to continue in `out` with `resume`; (None, None) for a new run.
    Raises DataError when `resume` finds nothing, or a new run would mix with an old one's checkpoints."""
    from transformers.trainer_utils import get_last_checkpoint

    checkpoint = get_last_checkpoint(str(out / "checkpoints")) if (out / "checkpoints").is_dir() else None
    if resume and not checkpoint:
        raise DataError(f"--resume: no checkpoint in {out / 'checkpoints'}; start without --resume")
    if not resume and checkpoint:
        raise DataError(f"{out} already holds checkpoints of a run: continue it with --resume, or pick a new --output_dir")
    run_file = out / RUN_ID_FILE
    return checkpoint, (run_file.read_text().strip() if resume and run_file.is_file() else None)


@contextlib.contextmanager
def start_run(tracking_uri: str, artifact_root: str, experiment: str, run_name: str = "", run_id: str | None = None,
              out: Path | None = None):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # offline machines: no phoning home
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri  # the Trainer's MLflowCallback reads it
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)  # one store for runs and versions, whatever was set before
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=Path(artifact_root).resolve().as_uri())
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name or None) as run:
        if out is not None:  # where `resume_point` finds the run again
            out.mkdir(parents=True, exist_ok=True)
            (out / RUN_ID_FILE).write_text(run.info.run_id + "\n")
        yield run


def evaluation_metrics(results: dict) -> dict[str, float]:
    """MLflow metrics of `evaluate_rows` results: averages, per class F1, 95% interval bounds."""
    metrics = {}
    for name, r in results.items():
        for avg in ("micro avg", "macro avg", "weighted avg"):
            for m in ("precision", "recall", "f1-score"):
                metrics[f"test_{name}_{avg.split()[0]}_{m.replace('-score', '')}"] = r["report"][avg][m]
        for cls, d in r["report"].items():
            if not cls.endswith("avg"):
                metrics[f"test_{name}_f1.{cls}"[:250]] = d["f1-score"]
        for key in ("micro_f1", "macro_f1"):
            if key in r.get("ci", {}):
                lo, hi = r["ci"][key]
                metrics[f"test_{name}_{key}_lo"], metrics[f"test_{name}_{key}_hi"] = lo, hi
    return metrics


def _log_evaluation(results: dict, eval_dir: Path) -> None:
    mlflow.log_metrics(evaluation_metrics(results))
    mlflow.log_artifacts(str(eval_dir), artifact_path="evaluation")
    mlflow.log_dict({k: v["report"] for k, v in results.items()}, "evaluation/classification_report.json")


def log_evaluation(tracking_uri: str, run_id: str, results: dict, eval_dir: Path) -> None:
    """Attach a later evaluation (`python -m evaluation.evaluate --mlflow`) to the training run."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=run_id):
        _log_evaluation(results, eval_dir)


def log_results(run, results: dict, eval_dir: Path, model_dir: Path, registered_model: str, extra: dict) -> str | None:
    """Test metrics and intervals, the per-class report, plots, the model folder and a registered version."""
    mlflow.log_metrics(extra)
    if results:  # `--test_sentences none` scores nothing now
        _log_evaluation(results, eval_dir)
    record = model_dir / "mlflow.json"  # lets `evaluate --mlflow` and export find the run later
    record.write_text(json.dumps({"run_id": run.info.run_id}) + "\n")
    mlflow.log_artifacts(str(model_dir), artifact_path="model")
    if not registered_model:
        return None
    # The model is logged as a plain Hugging Face folder (what export reads), not an MLflow flavour,
    # so the version is created from its artifact URI rather than through mlflow.register_model.
    client = mlflow.MlflowClient(tracking_uri=mlflow.get_tracking_uri(), registry_uri=mlflow.get_registry_uri())
    with contextlib.suppress(mlflow.exceptions.MlflowException):
        client.create_registered_model(registered_model)
    version = client.create_model_version(registered_model, source=mlflow.get_artifact_uri("model"),
                                          run_id=run.info.run_id)
    mlflow.set_tag("registered_model_version", version.version)
    record.write_text(json.dumps(
        {"run_id": run.info.run_id, "model_uri": f"models:/{registered_model}/{version.version}"}) + "\n")
    return version.version
