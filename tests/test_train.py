"""Fine-tuning end to end on a tiny DistilBERT: Trainer, early stopping, MLflow, evaluation."""
import json
import re

import mlflow
import pytest

from finer.pipeline import TaggerConfig
from finer_samples import CAPACITY, STATED, write_dataset
from tiny_model import build_tiny_model
from evaluation import evaluate, run
from training import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = write_dataset(root / "data")
    base = build_tiny_model(root / "base")
    db = f"sqlite:///{root / 'mlruns.db'}"
    argv = ["--data", str(data), "--scope", "debt", "--model", str(base), "--output_dir", str(root / "run"),
            "--epochs", "12", "--learning_rate", "3e-3", "--batch_size", "8", "--negative_ratio", "0.5",
            "--tracking_uri", db, "--artifact_root", str(root / "artifacts"), "--registered_model", "finer-test",
            "--run_name", "finer-base"]
    assert run.main(argv) == 0
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
    years = results["unfiltered"]["by_group"]["period year"]
    assert set(years) == {"2021", "2023"} and sum(g["sentences"] for g in years.values()) == 24
    assert sum(g["gold_entities"] for g in years.values()) == sum(
        d["support"] for k, d in report.items() if not k.endswith("avg"))
    assert set(results["filtered"]["by_group"]["form"]) == {"10-K", "10-Q"}
    assert "By period year and form" in (root / "run" / "evaluation" / "summary.md").read_text()
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


def test_evaluate_reads_the_debt_view_of_a_wider_scope(trained):
    root, _ = trained
    out = root / "eval-all"
    assert evaluate.main([str(root / "run" / "model"), "--data", str(root / "data"), "--scope", "all", "--out", str(out)]) == 0
    results = json.loads((out / "evaluation.json").read_text())
    debt = results["debt_unfiltered"]["report"]  # the debt view, without asking for it
    assert debt[CAPACITY]["support"] == 8
    # the model knows only debt labels, so its all-types score is its debt view's
    assert debt["micro avg"] == results["unfiltered"]["report"]["micro avg"]
    assert "debt_unfiltered" not in json.loads((root / "run" / "evaluation" / "evaluation.json").read_text())


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


@pytest.fixture(scope="module")
def trained_with_options(trained, tmp_path_factory):
    """An all-tags model with shape tokens, augmentation and O weighting, scored for the debt tags too;
    tracked in the same MLflow store as `trained`, so the two can be compared."""
    root = tmp_path_factory.mktemp("train-options")
    data = write_dataset(root / "data")
    base = build_tiny_model(root / "base")
    db = trained[1]
    argv = ["--data", str(data), "--scope", "all", "--report_scope", "debt", "--model", str(base),
            "--output_dir", str(root / "run"), "--epochs", "4", "--learning_rate", "3e-3", "--batch_size", "8",
            "--number_shapes", "--augment_copies", "1", "--numeric_o_weight", "0.5", "--run_name", "finer-options",
            "--tracking_uri", db, "--artifact_root", str(root / "artifacts"), "--registered_model", ""]
    assert run.main(argv) == 0
    return root, db, argv


def test_shape_tokens_are_learned_and_recorded(trained_with_options):
    root, _, _ = trained_with_options
    model = root / "run" / "model"
    config = TaggerConfig.load(model)
    assert config.number_shapes[0] == "[NUM]" and "[X.XX]" in config.number_shapes
    added = {t["content"] for t in json.loads((model / "tokenizer.json").read_text())["added_tokens"]}
    assert set(config.number_shapes) <= added


def test_report_scope_intervals_and_error_report(trained_with_options):
    root, _, _ = trained_with_options
    out = root / "run" / "evaluation"
    results = json.loads((out / "evaluation.json").read_text())
    assert {"filtered", "unfiltered", "debt_filtered", "debt_unfiltered"} <= set(results)
    debt = {k for k in results["debt_unfiltered"]["report"] if not k.endswith("avg")}
    assert debt and debt <= {STATED, CAPACITY, "DebtInstrumentBasisSpreadOnVariableRate1"}
    assert "DebtInstrumentFaceAmount" in results["unfiltered"]["report"]  # the all-tags view keeps it
    for r in results.values():
        lo, hi = r["ci"]["micro_f1"]
        assert lo <= r["report"]["micro avg"]["f1-score"] <= hi
    assert "| number shape |" in (out / "errors.md").read_text()
    assert "debt scope" in (out / "summary.md").read_text()
    assert (out / "errors_debt_filtered.png").stat().st_size > 1000


def test_options_noise_and_intervals_are_in_mlflow(trained_with_options):
    root, db, _ = trained_with_options
    client = mlflow.MlflowClient(tracking_uri=db)
    run = client.get_run((root / "run" / "mlflow_run_id").read_text().strip())
    p, m = run.data.params, run.data.metrics
    assert p["finer.number_shapes"] == "True" and int(p["finer.augmented_sentences"]) > 0
    assert int(p["finer.number_shape_tokens"]) >= 2
    assert m["noise_sentences"] > 0 and m["noise_untagged_years"] > 0  # "due 2030" next to tagged rates
    assert m["test_debt_filtered_micro_f1_lo"] <= m["test_debt_filtered_micro_f1"] <= m["test_debt_filtered_micro_f1_hi"]


def test_resume_continues_the_same_run(trained_with_options, capsys):
    root, db, argv = trained_with_options
    run_id = (root / "run" / "mlflow_run_id").read_text().strip()
    assert train.main(argv) == 1  # a second start would mix two runs' checkpoints
    assert "--resume" in capsys.readouterr().err
    state = json.loads(sorted((root / "run" / "checkpoints").glob("checkpoint-*/trainer_state.json"))[-1].read_text())
    more = [a if a != "4" else "6" for a in argv]  # two more epochs
    assert train.main(more + ["--resume"]) == 0
    assert (root / "run" / "mlflow_run_id").read_text().strip() == run_id
    steps = mlflow.MlflowClient(tracking_uri=db).get_metric_history(run_id, "eval_f1")
    assert max(s.step for s in steps) > state["global_step"]
    assert "resuming from" in capsys.readouterr().err


def test_score_test_filtered_scores_only_the_filtered_set(tmp_path):
    """The first start's quick score: sentences holding a scope tag only, and nothing called unfiltered."""
    data = write_dataset(tmp_path / "data")
    argv = ["--data", str(data), "--scope", "debt", "--model", str(build_tiny_model(tmp_path / "base")),
            "--output_dir", str(tmp_path / "run"), "--max_steps", "4", "--batch_size", "8", "--score_test", "filtered",
            "--tracking_uri", f"sqlite:///{tmp_path / 'mlruns.db'}", "--artifact_root", str(tmp_path / "art"),
            "--registered_model", ""]
    assert run.main(argv) == 0
    results = json.loads((tmp_path / "run" / "evaluation" / "evaluation.json").read_text())
    assert set(results) == {"filtered"} and results["filtered"]["sentences"] == 16
    assert "not scored" in (tmp_path / "run" / "evaluation" / "summary.md").read_text()


def test_training_alone_fits_and_leaves_the_scoring_to_the_next_stage(tmp_path, capsys):
    data = write_dataset(tmp_path / "data")
    argv = ["--data", str(data), "--scope", "debt", "--model", str(build_tiny_model(tmp_path / "base")),
            "--output_dir", str(tmp_path / "run"), "--max_steps", "2", "--batch_size", "8",
            "--tracking_uri", f"sqlite:///{tmp_path / 'mlruns.db'}", "--artifact_root", str(tmp_path / "art"),
            "--registered_model", ""]
    assert train.main(argv) == 0
    assert (tmp_path / "run" / "model" / "finer.json").is_file()
    assert not (tmp_path / "run" / "evaluation").exists()
    assert "python -m evaluation.run" in capsys.readouterr().err


def test_resume_without_checkpoint_is_an_error(tmp_path, capsys):
    data = write_dataset(tmp_path / "data")
    argv = ["--data", str(data), "--model", str(tmp_path / "unused"), "--output_dir", str(tmp_path / "run"),
            "--tracking_uri", f"sqlite:///{tmp_path / 'db'}", "--resume"]
    assert train.main(argv) == 1
    assert "no checkpoint" in capsys.readouterr().err


def test_compare_tables_runs_with_intervals(trained, trained_with_options, capsys):
    from evaluation import compare

    _, db, _ = trained_with_options
    assert compare.main(["--tracking-uri", db, "--scope", "debt"]) == 0
    out = capsys.readouterr().out
    assert "all scope, 4 epochs, from " in out  # the base encoder, last two path parts
    assert "/base, shape tokens, augment x1, O weight 0.5 on numbers (read as debt)" in out
    assert "[" in out.splitlines()[2]  # an interval beside the score
    assert f"| {STATED} |" in out  # the per-type table
    assert compare.main(["--tracking-uri", db, "--scope", "debt", "--baseline", "finer-base"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "(baseline)" in next(line for line in out if line.startswith("| finer-base"))
    row = next(line for line in out if line.startswith("| finer-options"))
    assert re.search(r"\| [+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\] \|", row)  # paired effect on the same sentences
    assert compare.main(["--tracking-uri", db, "--runs", "nope"]) == 1
    assert "no finished run named nope" in capsys.readouterr().err
