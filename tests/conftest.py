"""Shared fixtures: a tiny DistilBERT token classifier served by the real embedded Triton.

`served` (session-scoped) builds the tiny model of `tiny_model.py`, exports it with
`training.export` into a temporary copy of `model_repository/` as finer_model version 1, starts
Triton behind its front doors on free ports and yields a `Served` that also predicts in-process with PyTorch through the
same `finer.pipeline` steps, so tests compare the server's entities with the reference ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from finer.pipeline import Tagger, TaggerConfig, load_tokenizer

ROOT = Path(__file__).resolve().parent.parent


def export_version(model_folder: Path, repository: Path) -> Path:
    """Export a saved classifier into `repository` as the next finer_model version, as `make export` does."""
    from training.export import export_model

    return export_model(model_folder, repository)


def copy_repository(target: Path) -> Path:
    """The project's model repository without exported versions (the ensemble's empty `finer/1` stays)."""
    from training.repository import skeleton

    return skeleton(ROOT / "model_repository", target)


@dataclass
class TinyExport:
    model_folder: Path  # save_pretrained folder of the tiny classifier
    repository: Path  # a copy of model_repository/ with the export as finer_model version 1
    version: Path

    def torch_model(self):
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification.from_pretrained(self.model_folder).eval()


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> TinyExport:
    from tiny_model import SHAPES, build_tiny_model

    tmp = tmp_path_factory.mktemp("tiny")
    folder = build_tiny_model(tmp / "model", number_shapes=SHAPES)  # serving must apply them unaided
    repository = copy_repository(tmp / "model_repository")
    version = export_version(folder, repository)
    assert version == repository / "finer_model" / "1"
    return TinyExport(folder, repository, version)


@dataclass
class Served:
    server: object  # server.service.FinerServer: Triton behind the front doors, supervised
    export: TinyExport
    model: object  # the PyTorch classifier that was exported
    tokenizer: object  # tokenizers.Tokenizer, loaded as finer_preprocess loads it
    config: TaggerConfig
    startup_s: float

    def reference(self, texts: list[str]) -> list[list[dict]]:
        """Entities from the in-process PyTorch model, through the same windows and decoding."""
        from training.evaluate import torch_logits

        tagger = Tagger(self.tokenizer, self.config, torch_logits(self.model))
        return [[e.to_dict() for e in doc] for doc in tagger.entities(texts)]


@pytest.fixture(scope="session")
def served(tiny_export, tmp_path_factory):
    from server.service import FinerServer
    from server.triton import free_port

    logs = tmp_path_factory.mktemp("triton")
    server = FinerServer(tiny_export.repository, free_port(), free_port(), free_port(),
                          log_file=logs / "server.log", backend_dir=logs / "backends")
    server.start()
    try:
        startup = server.wait_ready(240)
        yield Served(server, tiny_export, tiny_export.torch_model(), load_tokenizer(tiny_export.version / "tokenizer.json"),
                     TaggerConfig.load(tiny_export.version), startup)
    finally:
        server.stop()


def stub_processes(marker: str) -> list[int]:
    """Pids of live Python backend stubs whose command line mentions `marker` (a repository path)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if "triton_python_backend_stub" in cmdline and marker in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


def as_object_array(texts) -> np.ndarray:
    return np.array([t.encode("utf-8") if isinstance(t, str) else t for t in texts], dtype=np.object_)
