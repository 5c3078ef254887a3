"""Data-parallel training: `evaluation.run` (fit, then score) under torchrun with 2 CPU processes (gloo), as `make train
LAUNCH=...` runs it, against the same arguments in one process.

"The same evaluation" here means: the same global batch (8 = 2 processes x 4), seed and data give
the same optimiser steps, the same training losses and test scores, and weights equal to within
1e-4 (measured: 2.6e-6). Not bit for bit: gloo sums the two processes' gradients in another order
than one process sums a batch, so the weights differ in the last float32 digits. The same rows in
the same order need data that fits one group of the length-grouped sampler (64 rows here); on a
large corpus each process's smaller batch makes smaller sorting groups, another order of the rows. The tiny model is built without dropout, since each
process draws its own dropout masks (a real run keeps dropout; its processes then see different
masks than one process would, which is no worse a model but not the same one).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from finer_samples import write_dataset
from tiny_model import build_tiny_model
from training import distributed, train
from filings.sources import DataError

# 64 tagged training sentences (two of every three): 8 whole global batches an epoch, none ragged.
SIZES = (("train", 96), ("validation", 24), ("test", 24))


def without_dropout(folder: Path) -> Path:
    config = json.loads((folder / "config.json").read_text())
    config.update(dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def train_argv(root: Path, data: Path, base: Path, name: str) -> list[str]:
    return ["--data", str(data), "--scope", "debt", "--model", str(base), "--output_dir", str(root / name),
            "--epochs", "6", "--learning_rate", "3e-3", "--batch_size", "8", "--numeric_o_weight", "0.5",
            "--tracking_uri", f"sqlite:///{root / name}.db", "--artifact_root", str(root / f"{name}-artifacts"),
            "--registered_model", "finer-parallel", "--run_name", name]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    data = write_dataset(root / "data", sizes=SIZES)
    base = without_dropout(build_tiny_model(root / "base"))
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
    # One process, then two: the same command line, launched by python and by torchrun.
    single = subprocess.run([sys.executable, "-m", "evaluation.run", *train_argv(root, data, base, "single")],
                            cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    parallel = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               "-m", "evaluation.run", *train_argv(root, data, base, "parallel")],
                              cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    return root, single, parallel


def evaluation(root: Path, name: str) -> dict:
    return json.loads((root / name / "evaluation" / "evaluation.json").read_text())


def test_two_processes_make_one_mlflow_run_and_one_version(runs):
    root, _, parallel = runs
    assert parallel.stdout.count("MLflow run ") == 1  # rank 0 reports; rank 1 only trained
    db = f"sqlite:///{root / 'parallel'}.db"
    client = mlflow.MlflowClient(tracking_uri=db, registry_uri=db)  # not the registry another test set globally
    (experiment,) = [e for e in client.search_experiments() if e.name == "finer"]
    (run,) = client.search_runs([experiment.experiment_id])
    (version,) = client.search_model_versions("name='finer-parallel'")
    assert version.run_id == run.info.run_id and str(version.version) == "1"
    assert run.data.params["finer.processes"] == "2" and run.data.params["finer.batch_size"] == "8"
    assert run.data.metrics["test_unfiltered_micro_f1"] == evaluation(root, "parallel")["unfiltered"]["report"]["micro avg"]["f1-score"]
    # No process logged anywhere else (MLflow's default store: ./mlflow.db or ./mlruns in the working folder).
    assert not (root / "mlflow.db").exists() and not (root / "mlruns").exists()


def test_the_whole_test_split_is_scored_once(runs):
    root, _, _ = runs
    results = evaluation(root, "parallel")
    assert results["unfiltered"]["sentences"] == 24 and results["filtered"]["sentences"] == 16  # not a shard


def test_two_processes_train_what_one_process_trains(runs):
    from safetensors.torch import load_file

    root, _, _ = runs
    states = [json.loads(sorted((root / n / "checkpoints").glob("checkpoint-*/trainer_state.json"))[-1].read_text())
              for n in ("single", "parallel")]
    assert states[0]["global_step"] == states[1]["global_step"] > 0  # the same steps, the same early stop
    losses = [[(h["step"], h["loss"]) for h in state["log_history"] if "loss" in h] for state in states]
    assert [s for s, _ in losses[0]] == [s for s, _ in losses[1]]
    assert max(abs(a - b) for (_, a), (_, b) in zip(*losses)) < 1e-4  # the global batch's loss on both
    single, parallel = evaluation(root, "single"), evaluation(root, "parallel")
    for name in ("filtered", "unfiltered"):
        assert parallel[name]["report"] == single[name]["report"]
    a, b = (load_file(root / n / "model" / "model.safetensors") for n in ("single", "parallel"))
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    assert single["unfiltered"]["report"]["micro avg"]["f1-score"] > 0.8  # a model that learned, not two blanks
    base = load_file(root / "base" / "model.safetensors")
    assert (a["classifier.weight"] - base["classifier.weight"]).abs().max().item() > 1e-2  # both trained

def test_a_batch_that_does_not_divide_among_processes_is_an_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert train.per_device_batch(8) == 4
    with pytest.raises(DataError, match="does not divide among 2 processes"):
        train.per_device_batch(7)


def _vote(rank: int, port: int, results) -> None:
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), WORLD_SIZE="2")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    results[rank] = (distributed.any_process(rank == 1), distributed.any_process(False))
    dist.destroy_process_group()


def test_a_stop_seen_by_one_process_is_taken_by_all():
    """The time budget is read from each process's clock; all must stop at the same step."""
    import torch.multiprocessing as mp

    from server.triton import free_port

    results = mp.Manager().dict()
    mp.spawn(_vote, args=(free_port(), results), nprocs=2)
    assert dict(results) == {0: (True, False), 1: (True, False)}
