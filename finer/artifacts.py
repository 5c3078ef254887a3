"""Where an exported model lives: version N of every model of the ensemble in the Triton repository.

Triton serves the highest-numbered version of each model; `finer_model/<N>` holds the ONNX model
and each Python step's `<N>` its code and the files it reads (see `export.repository`), so one
number names the whole served model and a rollback retires it everywhere.
"""
from __future__ import annotations

from pathlib import Path

MODEL_NAME = "finer_model"
FILES = ("model.onnx", "tokenizer.json", "finer.json")
# The Python steps and the exported files each reads from its own version folder (besides model.py).
STEP_FILES = {
    "finer_preprocess": ("tokenizer.json", "finer.json"),
    "finer_postprocess": ("finer.json",),
    "finer_labels": ("finer.json", "MODEL_CARD.md"),  # the card: export.model_card
}


class MissingArtifacts(FileNotFoundError):
    pass


def versions(model_dir: str | Path) -> list[int]:
    """Version numbers present in `model_dir`, ascending."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def latest(model_dir: str | Path) -> Path:
    """The newest version folder holding every exported file; a one-line error otherwise."""
    model_dir = Path(model_dir)
    found = versions(model_dir)
    if not found:
        raise MissingArtifacts(
            f"no exported model in {model_dir}/<version>/: run `make export` (then `make serve`)"
        )
    folder = model_dir / str(found[-1])
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise MissingArtifacts(
            f"{folder} lacks {', '.join(missing)}: run `make export` again or remove that folder"
        )
    return folder


def latest_ensemble(repository: str | Path) -> Path:
    """finer_model's newest complete version, checked to exist in every Python step too."""
    repository = Path(repository)
    folder = latest(repository / MODEL_NAME)
    for step, files in STEP_FILES.items():
        missing = [name for name in ("model.py", *files) if not (repository / step / folder.name / name).is_file()]
        if missing:
            raise MissingArtifacts(
                f"{repository / step / folder.name} lacks {', '.join(missing)}: version {folder.name} was not "
                "exported as a whole ensemble; run `make export` again")
    return folder
