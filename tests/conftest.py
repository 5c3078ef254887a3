"""Shared fixtures: a tiny DistilBERT token classifier served by the real embedded Triton; and the tiers.

Every test gets one tier marker (`pytest -m unit`, `make test-fast`; `make test` runs them all):
unit (no server, no training: under a minute), server (a real Triton), training (fine-tuning or
exporting a model), browser (Chromium), cluster (kubectl, torchrun, Docker Compose). A file's tier
is in TIERS; any other test is `server` if it uses the `served` fixture, else `unit`.

`served` (session-scoped) builds the tiny model of `tiny_model.py`, exports it with
`export.build` into a temporary copy of `model_repository/` as finer_model version 1, starts
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
TIERS = {
    "browser": ["test_demo"],
    "cluster": ["test_k8s", "test_compose", "test_train_parallel"],
    "training": ["test_train", "test_pretrain", "test_quality_options", "test_export", "test_promotion"],
    "server": ["test_batch", "test_client", "test_client_cli", "test_loadtest", "test_model_store", "test_overload",
               "test_reliability", "test_server", "test_versions", "test_labels"],
}
TIER_OF = {name: tier for tier, names in TIERS.items() for name in names}


def pytest_configure(config):
    for tier in ("unit", *TIERS):
        config.addinivalue_line("markers", f"{tier}: the {tier} tier (see tests/conftest.py)")


def pytest_collection_modifyitems(items):
    for item in items:
        tier = TIER_OF.get(Path(str(item.fspath)).stem) or ("server" if "served" in item.fixturenames else "unit")
        item.add_marker(getattr(pytest.mark, tier))


def export_version(model_folder: Path, repository: Path, force: bool = False) -> Path:
    """Export a saved classifier into `repository` as the next finer_model version, as `make export` does
    (`force`: without the champion / challenger comparison, which needs evaluation data)."""
    from export.build import export_model

    return export_model(model_folder, repository, force=force)


def copy_repository(target: Path) -> Path:
    """The project's model repository without exported versions (the ensemble's empty `finer/1` stays)."""
    from export.repository import skeleton

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
        from training.models import torch_logits

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
