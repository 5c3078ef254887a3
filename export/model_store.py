"""One exported version of the ensemble, moved between a model repository and a store.

    python -m export.model_store push 7 s3://finer-models/finer-triton/7   # object storage
    python -m export.model_store push 7 models:/finer-triton               # a new version in the MLflow registry
    python -m export.model_store pull s3://finer-models/finer-triton/7 /models   # the Kubernetes init container
    python -m export.model_store pull models:/finer-triton/3 /models

What is stored is a complete Triton repository holding that one version: `<model>/<N>/` of every
model of the ensemble, the ensemble's `finer/1`, and the configs generated for the version's own
window settings (CPU `config.pbtxt` and `finer_model/configs/gpu.pbtxt`), so a pod serves exactly
what was pushed, on a CPU or a GPU node. Stores are MLflow's artifact stores: `s3://` (boto3;
MinIO or another S3 through MLFLOW_S3_ENDPOINT_URL), `gs://`, `wasbs://`, `file://` or a folder,
and `models:/<name>` for the registry (MLFLOW_TRACKING_URI says which). Rolling a deployment to
another model is then one changed URI (deploy/k8s: the `finer-model` ConfigMap).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from finer.artifacts import MissingArtifacts, latest_ensemble, versions
from export.repository import VERSIONED, skeleton, write_configs_for
from export.triton_configs import DEFAULT_REPOSITORY, MODELS

ENSEMBLE = MODELS[0]
EXPERIMENT = "finer-deploy"  # the MLflow runs that hold pushed versions
# Where `make train` tracks runs (training.train's defaults); MLFLOW_TRACKING_URI overrides it.
TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlruns.db")
ARTIFACT_ROOT = "mlartifacts"
INCOMING = ".incoming"  # a pull lands here first, so an interrupted one leaves nothing Triton would read


class StoreError(Exception):
    """A one-line problem: no such version, an unreachable store, a download that is not a repository."""


def one_version(repository: Path, version: int, target: Path) -> Path:
    """A repository in `target` holding version `version` of every model of the ensemble, with its configs."""
    if version not in versions(repository / VERSIONED[0]):
        raise StoreError(f"{repository / VERSIONED[0]} has no version {version} (it has "
                         f"{', '.join(map(str, versions(repository / VERSIONED[0]))) or 'none'}): run `make export`")
    skeleton(repository, target)
    for name in VERSIONED:
        shutil.copytree(repository / name / str(version), target / name / str(version),
                        ignore=shutil.ignore_patterns("__pycache__"))
    write_configs_for(target, version)
    check(target, version)
    return target


def check(repository: Path, version: int | None = None) -> int:
    """The version `repository` serves; StoreError unless it is a whole ensemble (and `version`, if given)."""
    try:
        served = int(latest_ensemble(repository).name)
    except MissingArtifacts as e:
        raise StoreError(str(e)) from None
    if version is not None and served != version:
        raise StoreError(f"{repository} serves version {served}, not {version}")
    return served


def push(version: int, uri: str, repository: Path = DEFAULT_REPOSITORY, tracking_uri: str = TRACKING_URI) -> str:
    """Store version `version` of `repository` at `uri`; returns the URI to pull it from."""
    with tempfile.TemporaryDirectory(prefix="finer-push-") as tmp:
        staged = one_version(Path(repository), version, Path(tmp) / "repository")
        if uri.startswith("models:/"):
            return _register(staged, version, uri.removeprefix("models:/").strip("/"), tracking_uri)
        try:
            _artifacts(uri).log_artifacts(str(staged))
        except Exception as e:  # boto3, azure, gcs and OS errors alike: say where and why in one line
            raise StoreError(f"cannot write {uri}: {type(e).__name__}: {e}") from None
    return uri


def _register(staged: Path, version: int, name: str, tracking_uri: str) -> str:
    """Log the repository as a run's artifacts (in the training runs' store) and make it a new
    version of registered model `name`."""
    import mlflow

    from training.tracking import start_run

    if "/" in name or not name:
        raise StoreError(f"push to models:/<name> (a new version is made), not models:/{name}")
    with start_run(tracking_uri, ARTIFACT_ROOT, EXPERIMENT, f"{name}-export-{version}") as run:
        mlflow.set_tag("finer.export_version", version)
        mlflow.log_artifacts(str(staged), artifact_path="repository")
        client = mlflow.MlflowClient()
        if not client.search_registered_models(f"name='{name}'"):
            client.create_registered_model(name)
        card = staged / VERSIONED[0] / str(version) / "MODEL_CARD.md"  # export.model_card
        registered = client.create_model_version(name, source=mlflow.get_artifact_uri("repository"),
                                                 run_id=run.info.run_id, tags={"finer.export_version": str(version)},
                                                 description=card.read_text() if card.is_file() else None)
    return f"models:/{name}/{registered.version}"


def _artifacts(uri: str):
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(Path(uri).resolve().as_uri() if "://" not in uri and ":/" not in uri else uri)


def pull(uri: str, destination: Path) -> int:
    """Download the repository stored at `uri` into `destination` (replacing what a previous pull left);
    returns the version it serves."""
    destination.mkdir(parents=True, exist_ok=True)
    incoming = destination / INCOMING
    shutil.rmtree(incoming, ignore_errors=True)
    incoming.mkdir()
    try:
        _artifacts(uri).download_artifacts("", dst_path=str(incoming))
    except Exception as e:  # the store's own errors (no such key, no credentials, no route): one line
        shutil.rmtree(incoming, ignore_errors=True)
        raise StoreError(f"cannot read {uri}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    (incoming / ENSEMBLE / "1").mkdir(parents=True, exist_ok=True)  # object stores keep no empty folders
    try:
        version = check(incoming)
    except StoreError as e:
        shutil.rmtree(incoming, ignore_errors=True)
        raise StoreError(f"{uri} holds no stored version ({e}); push one with `python -m export.model_store push`") from None
    for entry in incoming.iterdir():
        old = destination / entry.name
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
        entry.rename(old)
    incoming.rmdir()
    return version


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.model_store", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("push", help="store one exported version of the repository")
    up.add_argument("version", type=int, help="the version number (finer_model/<N>)")
    up.add_argument("uri", help="s3://bucket/prefix, a folder, or models:/<registered name>")
    up.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    up.add_argument("--tracking-uri", default=TRACKING_URI, help="MLflow store for models:/ (default: $MLFLOW_TRACKING_URI, "
                                                                 "else the training runs' sqlite:///mlruns.db)")
    down = sub.add_parser("pull", help="download a stored version into a model repository folder")
    down.add_argument("uri", help="where it was pushed: s3://..., a folder, or models:/<name>/<version>")
    down.add_argument("destination", type=Path, help="the folder Triton serves (--model-repository)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    started = time.monotonic()
    try:
        if a.command == "push":
            print(f"version {a.version} of {a.repository} stored; pull it with: "
                  f"python -m export.model_store pull {push(a.version, a.uri, a.repository, a.tracking_uri)} DIR")
        else:
            version = pull(a.uri, a.destination)
            print(f"version {version} from {a.uri} in {a.destination} ({time.monotonic() - started:.1f} s)")
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
