"""The last export stage: version N of the whole ensemble, written together into the model repository.

A version is one model end to end. `finer_model/<N>/` holds model.onnx, tokenizer.json, finer.json
and export.json; each Python step gets `<step>/<N>/` with its model.py (copied from this project's
`model_repository/<step>/model.py`), the shared core `finer/` it imports (first on its path, so a
rolled-back version runs the core it was exported with) and the files it reads (preprocess:
tokenizer.json and finer.json; postprocess and finer_labels: finer.json). Each step reads its own
`args["model_version"]` folder, so the tokenizer and labels Triton loads always belong to the model
version it loaded: through rollbacks, reloads, or a repository copied from object storage.

N is one more than any version ever written (retired ones included), so a number always names one
model. Rollback moves N of every model to `<model>/.retired/<N>/`: Triton ignores non-numeric
folders inside a model (a `.retired` folder at the repository root would be read as a model).
The configs are regenerated from the served version's window settings (`export.triton_configs`),
after an export and after a rollback alike.
"""
from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import finer
from finer.artifacts import MODEL_NAME, STEP_FILES, versions as live_versions
from finer.serving import ServingSpec
from export.triton_configs import DEFAULT_REPOSITORY, write_configs

CORE = Path(finer.__file__).resolve().parent
RETIRED = ".retired"
STAGING_PREFIX = ".export-"
VERSIONED = (MODEL_NAME, *STEP_FILES)


class RepositoryError(Exception):
    """A one-line problem with the repository (unwritable, nothing to roll back)."""


def spec_of(version_folder: Path) -> ServingSpec:
    """The serving settings that belong to an exported finer_model version (its window settings)."""
    from finer.pipeline import TaggerConfig

    tagger = TaggerConfig.load(version_folder)
    return ServingSpec(max_length=tagger.max_length, stride=tagger.stride)


def write_configs_for(repository: Path, version: int) -> list[Path]:
    """Every config.pbtxt regenerated for the version Triton will serve: what the ensemble publishes
    (window length, stride, text and body limits) and what the front doors enforce follow it."""
    return write_configs(repository, spec_of(repository / MODEL_NAME / str(version)))


def used_versions(repository: Path) -> list[int]:
    """Every version number ever used by any model of the ensemble: live and retired."""
    return sorted({v for name in VERSIONED for folder in (repository / name, repository / name / RETIRED)
                   for v in live_versions(folder)})


def staging_folder(repository: str | Path) -> Path:
    """A hidden folder inside finer_model (same filesystem: renames are atomic; non-numeric: Triton ignores it)."""
    model_dir = Path(repository) / MODEL_NAME
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=model_dir))
    except OSError as e:
        raise RepositoryError(f"{model_dir}: cannot write there ({e.strerror}); choose another --repository") from None


def _claim(repository: Path, staged: Path) -> Path:
    """Rename the finished finer_model folder to the next free version (atomic; retried if another export took it)."""
    model_dir = repository / MODEL_NAME
    version = max(used_versions(repository), default=0) + 1
    while True:
        target = model_dir / str(version)
        if not target.exists() and not (model_dir / RETIRED / str(version)).exists():
            try:
                staged.rename(target)
                return target
            except OSError as e:
                if not target.exists():  # not a race with another export: a real failure
                    raise RepositoryError(f"cannot create {target} ({e.strerror})") from None
        version += 1


def write_version(repository: str | Path, staged_model: Path, spec: ServingSpec) -> Path:
    """Move `staged_model` in as finer_model/<N> and write every step's <N> beside it; returns finer_model/<N>."""
    repository = Path(repository)
    target = _claim(repository, staged_model)
    for step, files in STEP_FILES.items():
        staged = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=staged_model.parent))
        shutil.copyfile(DEFAULT_REPOSITORY / step / "model.py", staged / "model.py")
        # The shared core the step imports, as it is now: the version keeps it through later changes.
        shutil.copytree(CORE, staged / CORE.name, ignore=shutil.ignore_patterns("__pycache__"))
        for name in files:
            shutil.copyfile(target / name, staged / name)
        (repository / step).mkdir(exist_ok=True)
        staged.rename(repository / step / target.name)
    write_configs(repository, spec)
    return target


def rollback(repository: str | Path = "model_repository") -> tuple[int, int]:
    """Retire the newest version of every model; returns (version retired, version now served)."""
    repository = Path(repository)
    live = live_versions(repository / MODEL_NAME)
    if not live:
        raise RepositoryError(f"{repository / MODEL_NAME}: no version to roll back")
    if len(live) == 1:
        raise RepositoryError(f"{repository / MODEL_NAME}: version {live[0]} is the only one; retiring it would leave "
                              "Triton nothing to serve (export another model first, or move the folders away by hand)")
    newest = str(live[-1])
    stamp = f"{newest}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    for name in VERSIONED:
        folder = repository / name / newest
        if folder.is_dir():
            retired = repository / name / RETIRED
            retired.mkdir(exist_ok=True)
            folder.rename(retired / (stamp if (retired / newest).exists() else newest))
    write_configs_for(repository, live[-2])
    return live[-1], live[-2]


def skeleton(source: str | Path, target: str | Path) -> Path:
    """A copy of the repository `source` without exported versions, retired ones, staging folders or
    caches (the ensemble's own empty `finer/1` stays)."""
    def ignore(folder, names):
        in_model = Path(folder).name in VERSIONED
        return [n for n in names if n == "__pycache__" or (in_model and (n.isdigit() or n.startswith(".")))]

    return Path(shutil.copytree(source, target, ignore=ignore))


def move_version(source: str | Path, version: str | int, target: str | Path, as_version: str | int) -> Path:
    """Move version `version` of every model of the ensemble from repository `source` into `target`
    as `as_version`; returns the finer_model folder there."""
    for name in VERSIONED:
        shutil.move(str(Path(source) / name / str(version)), str(Path(target) / name / str(as_version)))
    return Path(target) / MODEL_NAME / str(as_version)
