"""The ensemble is versioned as one: the tokenizer and labels served are those of the model version
Triton loaded, through an export with other labels and a rollback (real server, restarted)."""
from __future__ import annotations

import pytest

from client import FinerClient
from conftest import copy_repository, export_version
from finer.labels import LabelScope
from finer.pipeline import Tagger, TaggerConfig, load_tokenizer
from server.triton import TritonServer, free_port
from tiny_model import SHAPES, build_tiny_model
from export.repository import rollback

TEXTS = ["The notes bear interest at 7.00% and the $500 million facility at SOFR plus 1.25%.",
         "Loans of $1,893.6 million mature in 2030 at a rate of 3.875 % per annum."]


def reference(version_dir, model_dir) -> list[list[tuple]]:
    """Entities of the in-process PyTorch model through the version's own tokenizer and finer.json."""
    from transformers import AutoModelForTokenClassification

    from training.models import torch_logits

    model = AutoModelForTokenClassification.from_pretrained(model_dir).eval()
    tagger = Tagger(load_tokenizer(version_dir / "tokenizer.json"), TaggerConfig.load(version_dir), torch_logits(model))
    return [[(e.text, e.label, e.start, e.end) for e in doc] for doc in tagger.entities(TEXTS)]


def served(repository, tmp_path, name):
    server = TritonServer(repository, free_port(), free_port(), free_port(), log_file=tmp_path / f"{name}.log",
                          backend_dir=tmp_path / "backends")
    server.start()
    try:
        server.wait_ready(240)
        with FinerClient(server.grpc_url) as client:
            meta = client.metadata()
            found = [[(e.text, e.label, e.start, e.end) for e in doc] for doc in client.tag(TEXTS)]
        return meta, found
    finally:
        server.stop()


@pytest.mark.filterwarnings("ignore")  # exporter deprecation notes
def test_labels_and_tokenizer_follow_the_served_version_through_rollback(tmp_path):
    repository = copy_repository(tmp_path / "repo")
    debt = build_tiny_model(tmp_path / "debt")  # 4 debt types, numbers read as they are
    other_labels = LabelScope.parse("DebtInstrumentFaceAmount,ShareBasedCompensation").label_names
    other = build_tiny_model(tmp_path / "other", labels=other_labels, number_shapes=SHAPES, seed=7)
    v1, v2 = export_version(debt, repository), export_version(other, repository, force=True)  # no shared type
    assert (v1.name, v2.name) == ("1", "2")
    assert (repository / "finer_preprocess" / "2" / "tokenizer.json").read_bytes() != \
        (repository / "finer_preprocess" / "1" / "tokenizer.json").read_bytes()

    meta, found = served(repository, tmp_path, "v2")
    assert meta.steps == {"finer_preprocess": "2", "finer_model": "2", "finer_postprocess": "2"}
    assert meta.labels == other_labels
    assert found == reference(v2, other) and any(found)

    assert rollback(repository) == (2, 1)
    meta, found = served(repository, tmp_path, "v1")
    assert meta.steps == {"finer_preprocess": "1", "finer_model": "1", "finer_postprocess": "1"}
    assert meta.labels == LabelScope.parse("debt").label_names
    assert found == reference(v1, debt) and any(found)
