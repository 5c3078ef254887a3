"""export.model_store: one exported version pushed to a store and pulled back, as the Kubernetes
init container pulls it. Object storage is played by a folder (the same MLflow artifact-store code
path as s3://, without the network); the registry by a SQLite MLflow store."""
from __future__ import annotations

from pathlib import Path

import pytest

from finer.artifacts import latest_ensemble
from export import model_store
from export.repository import VERSIONED


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def served_files(repository: Path, version: str) -> dict[str, bytes]:
    """What Triton reads of `version`: every config, and each model's version folder."""
    everything = files(repository)
    return {k: v for k, v in everything.items()
            if k.endswith(".pbtxt") or any(k.startswith(f"{name}/{version}/") for name in VERSIONED)}


def test_push_then_pull_gives_the_same_servable_version(tiny_export, tmp_path):
    store = tmp_path / "store" / "finer-triton" / "1"
    assert model_store.push(1, str(store), tiny_export.repository) == str(store)
    models = tmp_path / "models"
    assert model_store.pull(str(store), models) == 1
    assert latest_ensemble(models).name == "1" and (models / "finer" / "1").is_dir()
    assert served_files(models, "1") == served_files(tiny_export.repository, "1")
    assert (models / "finer_model" / "configs" / "gpu.pbtxt").is_file()  # a GPU node serves the same pull
    # An init container that runs again (the pod restarted) replaces what the last pull left.
    (models / "finer_model" / "1" / "model.onnx").write_bytes(b"half a download")
    assert model_store.pull(str(store), models) == 1
    assert served_files(models, "1") == served_files(tiny_export.repository, "1")
    assert not (models / model_store.INCOMING).exists()


def test_push_to_the_registry_and_pull_a_model_version(tiny_export, tmp_path, monkeypatch):
    db = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.chdir(tmp_path)  # the run's artifacts go to ./mlartifacts, as training's do
    uri = model_store.push(1, "models:/finer-triton", tiny_export.repository, tracking_uri=db)
    assert uri == "models:/finer-triton/1"
    assert model_store.push(1, "models:/finer-triton", tiny_export.repository, tracking_uri=db) == "models:/finer-triton/2"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", db)
    assert model_store.pull(uri, tmp_path / "models") == 1
    assert served_files(tmp_path / "models", "1") == served_files(tiny_export.repository, "1")


def test_mistakes_are_one_line_errors(tiny_export, tmp_path, capsys):
    assert model_store.main(["push", "9", str(tmp_path / "store"), "--repository", str(tiny_export.repository)]) == 1
    assert capsys.readouterr().err.strip() == (f"error: {tiny_export.repository / 'finer_model'} has no version 9 "
                                               "(it has 1): run `make export`")
    with pytest.raises(model_store.StoreError, match="holds no stored version"):
        model_store.pull(str(tmp_path / "empty"), tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []  # nothing Triton would try to load
    with pytest.raises(model_store.StoreError, match="not models:/finer-triton/3"):
        model_store.push(1, "models:/finer-triton/3", tiny_export.repository, tracking_uri=f"sqlite:///{tmp_path / 'db'}")
