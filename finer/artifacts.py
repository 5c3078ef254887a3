"""Where an exported model lives: numbered version folders of `finer_model` in the Triton repository.

Triton serves the highest-numbered version; the preprocess/postprocess models read the tokenizer and
labels from that same folder, so rolling back is moving the newest folder away.
"""
from __future__ import annotations

from pathlib import Path

MODEL_NAME = "finer_model"
FILES = ("model.onnx", "tokenizer.json", "finer.json")


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
