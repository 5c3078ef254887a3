"""Fine-tuning end to end on a tiny DistilBERT: Trainer, early stopping, MLflow, evaluation."""
import json

import mlflow
import pytest

from finer.pipeline import TaggerConfig
from finer_samples import CAPACITY, STATED, write_dataset
from tiny_model import build_tiny_model
from training import evaluate, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = write_dataset(root / "data")
    base = build_tiny_model(root / "base")
    db = f"sqlite:///{root / 'mlruns.db'}"
    argv = ["--data", str(data), "--scope", "debt", "--model", str(base), "--output_dir", str(root / "run"),
            "--epochs", "12", "--learning_rate", "3e-3", "--batch_size", "8", "--negative_ratio", "0.5",
            "--tracking_uri", db, "--artifact_root", str(root / "artifacts"), "--registered_model", "finer-test"]
    assert train.main(argv) == 0
    return root, db


def test_model_folder_is_complete(trained):
    root, _ = trained
    model = root / "run" / "model"
    config = TaggerConfig.load(model)
    assert config.labels[0] == "O" and f"B-{STATED}" in config.labels and len(config.labels) == 9
    assert (model / "tokenizer.json").is_file() and (model / "model.safetensors").is_file()
    assert json.loads((model / "mlflow.json").read_text())["model_uri"] == "models:/finer-test/1"


def test_learns_the_pattern_and_scores_filtered_and_unfiltered(trained):
    root, _ = trained
    results = json.loads((root / "run" / "evaluation" / "evaluation.json").read_text())
    assert results["filtered"]["sentences"] == 16  # two of every three test sentences hold a debt tag
    assert results["unfiltered"]["sentences"] == 24
    report = results["unfiltered"]["report"]
    assert report["micro avg"]["f1-score"] > 0.8
    assert report[CAPACITY]["support"] == 8
    assert "DebtInstrumentFaceAmount" not in report  # outside the scope: read as O
    names = results["filtered"]["confusion"]["labels"]
    assert names[0] == "O" and STATED in names
    assert (root / "run" / "evaluation" / "confusion_unfiltered.png").stat().st_size > 1000


def test_mlflow_run_has_params_metrics_artifacts_and_version(trained):
    _, db = trained
    client = mlflow.MlflowClient(tracking_uri=db)
    (version,) = client.search_model_versions("name='finer-test'")
    run = client.get_run(version.run_id)
    assert run.data.params["finer.scope"] == "debt"
    assert run.data.metrics["test_unfiltered_micro_f1"] > 0.8
    history = client.get_metric_history(run.info.run_id, "eval_f1")
    assert len(history) >= 2  # per-evaluation metrics from the Trainer's MLflow callback
    files = {f.path for f in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/confusion_filtered.png", "evaluation/classification_report.json"} <= files
    assert {f.path for f in client.list_artifacts(run.info.run_id, "model")} >= {"model/model.safetensors", "model/finer.json"}


def test_evaluate_cli_matches_training_report(trained, capsys):
    root, _ = trained
    out = root / "eval-cli"
    assert evaluate.main([str(root / "run" / "model"), "--data", str(root / "data"), "--out", str(out)]) == 0
    again = json.loads((out / "evaluation.json").read_text())
    first = json.loads((root / "run" / "evaluation" / "evaluation.json").read_text())
    assert again["unfiltered"]["report"] == first["unfiltered"]["report"]
    assert "micro avg" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--data", "/nonexistent/finer"], "no such file or folder"),
    (["--scope", "NotAType"], "unknown FiNER type"),
    (["--scope", "AccrualForEnvironmentalLossContingencies"], "training sentences of scope 'AccrualForEnvironmentalLossContingencies' is empty"),
])
def test_user_mistakes_are_one_line_errors(tmp_path, capsys, argv, message):
    data = write_dataset(tmp_path / "data")
    base = ["--data", str(data), "--model", str(tmp_path / "unused"), "--output_dir", str(tmp_path / "run"),
            "--tracking_uri", f"sqlite:///{tmp_path / 'db'}"]
    assert train.main(base + argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and message in err


def test_patience_waits_for_the_first_entities():
    from types import SimpleNamespace

    stopper = train._early_stopping(2)
    args, control = SimpleNamespace(greater_is_better=True), SimpleNamespace()
    state = SimpleNamespace(best_metric=0.0)
    for _ in range(5):
        stopper.check_metric_value(args, state, control, 0.0)
    assert stopper.early_stopping_patience_counter == 0
    state.best_metric = 0.4
    stopper.check_metric_value(args, state, control, 0.3)
    assert stopper.early_stopping_patience_counter == 1
