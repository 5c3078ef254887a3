"""Champion / challenger at export (export.promotion), the model card (export.model_card) and the
registry aliases (export.registry), with real tiny models, real ONNX exports and a real MLflow store.

The evaluation set is what model A (the better one) tags: A scores 1.0 on it, B (another random
model with the same labels) far less, so the verdicts are known in advance."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from conftest import copy_repository
from export.build import ExportError, export_model
from export.model_card import FILE as CARD
from export.promotion import Model
from export.repository import rollback
from finer.artifacts import versions
from finer.runtime import ort_logits, session
from tiny_model import WORDS, build_tiny_model

NAME = "finer-promo"


def sentences(n: int, seed: int = 3) -> list[list[str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.choices(WORDS, k=rng.randint(6, 14))
        for _ in range(rng.randint(1, 3)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(["7.25", "1.5", "300", "4.375", "12", "0.50"]))
        out.append(words)
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Models A (better) and B, both registered in a fresh MLflow store, and data that A tags right."""
    import mlflow

    from evaluation.evaluate import predict

    tmp = tmp_path_factory.mktemp("promotion")
    uri = f"sqlite:///{tmp / 'mlruns.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(NAME)
    models = {}
    for name, seed in (("a", 13), ("b", 7)):
        folder = build_tiny_model(tmp / name, seed=seed)
        version = client.create_model_version(NAME, source=str(folder)).version
        (folder / "mlflow.json").write_text(json.dumps({"run_id": "", "model_uri": f"models:/{NAME}/{version}"}))
        models[name] = folder
    scratch = export_model(models["a"], copy_repository(tmp / "scratch"), tracking_uri=uri)
    a = Model.of_version(scratch)
    rows = [{"tokens": t, "ner_tags": ["O"] * len(t)} for t in sentences(160)]
    for row, tags in zip(rows, predict(ort_logits(session(a.onnx)), a.tokenizer, rows, a.config)):
        row["ner_tags"] = tags
    assert sum(t.startswith("B-") for r in rows for t in r["ner_tags"]) > 100
    data = tmp / "data"
    data.mkdir()
    for split in ("train", "validation", "test"):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"models": models, "data": data, "client": client, "uri": uri, "tmp": tmp}


def champion(setup, alias="champion") -> str:
    return str(setup["client"].get_model_version_by_alias(NAME, alias).version)


def test_a_worse_model_is_refused_and_a_better_one_served(setup, tmp_path, capsys):
    a, b = setup["models"]["a"], setup["models"]["b"]
    repository = copy_repository(tmp_path / "repo")
    kw = {"eval_data": str(setup["data"]), "tracking_uri": setup["uri"]}
    assert export_model(b, repository, **kw).name == "1"  # nothing served yet: no comparison
    assert champion(setup) == "2"  # B's registered version

    promoted = export_model(a, repository, **kw)
    record = json.loads((promoted / "export.json").read_text())["promotion"]
    assert promoted.name == "2" and record["promoted"] and not record["forced"] and record["served_version"] == 1
    for part in ("test_filtered", "test_unfiltered"):
        s = record["sets"][part]
        assert s["candidate_f1"] == 1.0 > s["served_f1"] and s["interval_points"][0] > 0
    assert "promoted" in capsys.readouterr().err
    assert champion(setup) == "1"

    with pytest.raises(ExportError, match="not written: the candidate is worse than served version 2"):
        export_model(b, repository, **kw)
    line = capsys.readouterr().err
    assert "worse beyond the interval on test_filtered, test_unfiltered, refused" in line
    assert versions(repository / "finer_model") == [1, 2]
    assert [p.name for p in (repository / "finer_model").iterdir() if p.name.startswith(".")] == []  # no staging left
    assert champion(setup) == "1" and champion(setup, "challenger") == "2"

    forced = export_model(b, repository, force=True, **kw)
    record = json.loads((forced / "export.json").read_text())["promotion"]
    assert forced.name == "3" and record["forced"] and "--force" in record["verdict"]
    assert champion(setup) == "2"
    from export.registry import champion_of

    assert rollback(repository) == (3, 2)
    assert champion_of(repository / "finer_model" / "2", setup["uri"]) == f"registry: models:/{NAME}/1 is now {NAME}@champion"
    assert champion(setup) == "1"


def test_missing_evaluation_data_is_one_line_and_force_still_writes(setup, tmp_path):
    repository = copy_repository(tmp_path / "repo")
    a = setup["models"]["a"]
    export_model(a, repository, tracking_uri=setup["uri"])
    missing = tmp_path / "nowhere"
    with pytest.raises(ExportError, match=f"evaluation set {missing}: .*no such file or folder.*--force") as e:
        export_model(a, repository, eval_data=str(missing), tracking_uri=setup["uri"])
    assert "\n" not in str(e.value)
    with pytest.raises(ExportError, match="no evaluation data .* --eval-data"):
        export_model(a, repository, tracking_uri=setup["uri"])  # a model with no training.json: no default
    written = export_model(a, repository, eval_data=str(missing), force=True, tracking_uri=setup["uri"])
    record = json.loads((written / "export.json").read_text())["promotion"]
    assert written.name == "2" and record["forced"] and str(missing) in record["verdict"]


def test_a_candidate_with_other_labels_is_compared_on_the_shared_types(setup, tmp_path):
    from finer.labels import LabelScope

    repository = copy_repository(tmp_path / "repo")
    export_model(setup["models"]["a"], repository, tracking_uri=setup["uri"])
    wider = build_tiny_model(tmp_path / "wider", labels=LabelScope.parse(
        "DebtInstrumentInterestRateStatedPercentage,DebtInstrumentFaceAmount").label_names, seed=5)
    written = export_model(wider, repository, eval_data=str(setup["data"]), force=True)
    record = json.loads((written / "export.json").read_text())["promotion"]
    assert record["scope"] == ["DebtInstrumentInterestRateStatedPercentage"]
    assert "on the 1 types both serve (candidate 2, served 4)" in record["verdict"]
    unrelated = build_tiny_model(tmp_path / "unrelated", labels=LabelScope.parse("ShareBasedCompensation").label_names)
    with pytest.raises(ExportError, match="share no entity type"):
        export_model(unrelated, repository, eval_data=str(setup["data"]))


def test_every_version_has_a_model_card_from_what_training_left(setup, tmp_path):
    """training.json and scores.json beside the weights (as evaluation.run leaves them) fill the card;
    the comparison's default evaluation data is the data training.json names."""
    import shutil
    from collections import Counter

    from training import facts
    from training.train import TrainArgs

    folder = Path(shutil.copytree(setup["models"]["a"], tmp_path / "model"))
    rows = [json.loads(line) for line in (setup["data"] / "test.jsonl").read_text().splitlines()]
    for r in rows:
        r.update(cik="0000320193", form="10-K", period="2021-12-31")
    args = TrainArgs(data=str(setup["data"]), epochs=2.0, output_dir=str(tmp_path / "run"))
    facts.write(folder, args, ["DebtInstrumentInterestRateStatedPercentage", "DebtInstrumentFaceAmount"],
                {"train": rows, "test": rows[:10]}, Counter({"DebtInstrumentInterestRateStatedPercentage": 40}),
                3.5, 0.81, "run123")
    (folder / "scores.json").write_text(json.dumps({"filtered": {
        "sentences": 10, "micro": {"precision": 0.9, "recall": 0.8, "f1-score": 0.847}, "micro_f1_ci": [0.8, 0.9],
        "per_type": {"DebtInstrumentInterestRateStatedPercentage": {"f1": 0.85, "support": 9, "ci": [0.7, 0.95]},
                     "DebtInstrumentFaceAmount": {"f1": 0.2, "support": 6, "ci": [0.0, 0.5]}},
        "by_year": {"2021": {"gold_entities": 9, "micro_f1": 0.847, "micro_f1_ci": [0.8, 0.9]}},
        "uncalibrated": {"precision": 0.8, "recall": 0.85, "f1-score": 0.82}}}))
    repository = copy_repository(tmp_path / "repo")
    export_model(setup["models"]["b"], repository, tracking_uri=setup["uri"])
    version = export_model(folder, repository, tracking_uri=setup["uri"])  # compared on training.json's data
    assert json.loads((version / "export.json").read_text())["promotion"]["promoted"]
    card = (version / CARD).read_text()
    for section in ("## Model details", "## Training data", "## Training procedure", "## Evaluation", "## Export",
                    "## Calibrated decision", "## Intended use", "## Limitations", "## How to reproduce"):
        assert section in card, section
    assert "| train | 160 | 1 | 2021-2021 | 10-K 160 |" in card
    assert "0.847 [0.800, 0.900]" in card and "`epochs=2.0`" in card and "run123" in card
    assert "Trained on filings of 2021-2021" in card and "DebtInstrumentFaceAmount (0)" in card
    assert "below F1 0.5 on the test sentences that hold a tag: DebtInstrumentFaceAmount (0.200 on 6 entities)" in card
    assert "DebtInstrumentInterestRateStatedPercentage (0.850" not in card
    assert f"python -m evaluation.run --data {setup['data']} --epochs 2.0" in card
    assert "Promotion: candidate vs served version 1" in card
    assert (repository / "finer_labels" / version.name / CARD).read_text() == card  # served by finer_labels
    assert setup["client"].get_model_version(NAME, "1").description == card
