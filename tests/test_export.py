"""export.build: a trained model folder (or MLflow URI) -> a checked, numbered finer_model version."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from finer.labels import LabelScope

STATED = "DebtInstrumentInterestRateStatedPercentage"
from finer.pipeline import TaggerConfig, encode, load_tokenizer
from finer.words import split_words
from tiny_model import WORDS, build_tiny_model
from finer.runtime import ort_logits, session
from export import build as export, gates as export_gates
from export.build import ExportError, export_model
from export.report import summary
from export.repository import STEP_FILES, RepositoryError, rollback

ROOT = Path(__file__).resolve().parent.parent

FILES = {"model.onnx", "tokenizer.json", "finer.json", "export.json", "MODEL_CARD.md"}
SENTENCE = "The senior notes bear interest at 7.00% per annum and the revolving credit facility has a maximum borrowing capacity of $750 million."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    """One CLI export into a fresh repository: (repository, what the CLI printed)."""
    repository = tmp_path_factory.mktemp("repo")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = export.main([str(tiny), "--repository", str(repository)])
    assert code == 0
    return repository, out.getvalue()


def versions_in(repository: Path, model: str = "finer_model") -> list[str]:
    """Version folders and hidden ones (retired, staging) of a model; configs are not versions."""
    return sorted(p.name for p in (repository / model).iterdir() if p.is_dir() and p.name != "configs")


def torch_logits(folder: Path, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    import torch
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(attention_mask)).logits.numpy()


def test_cli_writes_version_one_with_every_file(exported):
    repository, printed = exported
    version = repository / "finer_model" / "1"
    assert versions_in(repository) == ["1"]  # no staging folder left behind
    assert {p.name for p in version.iterdir()} == FILES
    assert str(version) in printed and "parity" in printed
    info = json.loads((version / "export.json").read_text())
    assert info["precision"] == "fp32" and info["quantisation"] is None
    assert info["exporter"].startswith("optimum")
    assert info["parity"]["export"]["max_abs_diff"] <= 1e-4
    assert info["parity"]["optimised"]["max_abs_diff"] <= 1e-4
    assert info["optimisation"]["fused"].get("Attention") == 2  # one fused attention per layer
    config = TaggerConfig.load(version)
    assert config.labels == LabelScope.parse("debt").label_names
    assert (config.cls_id, config.sep_id, config.pad_id, config.max_length) == (2, 3, 0, 128)


def test_onnx_signature_serves_each_positions_best_label(exported):
    # What Triton's ONNX Runtime backend compares with config.pbtxt: the session's own view. Batch
    # and sequence are dynamic; serving reads label_ids and label_scores [batch, seq], the logits'
    # argmax and softmax maximum computed in the graph.
    from finer.windows import decision

    sess = session(exported[0] / "finer_model" / "1" / "model.onnx")
    inputs = {i.name: (i.type, i.shape) for i in sess.get_inputs()}
    outputs = {o.name: (o.type, o.shape) for o in sess.get_outputs()}
    assert set(inputs) == {"input_ids", "attention_mask"} and list(outputs) == ["logits", "label_ids", "label_scores"]
    for kind, shape in inputs.values():
        assert kind == "tensor(int64)" and len(shape) == 2 and all(isinstance(d, str) for d in shape)
    assert outputs["label_ids"][0] == "tensor(int64)" and outputs["label_scores"][0] == "tensor(float)"
    assert all(len(shape) == 2 and all(isinstance(d, str) for d in shape) for _, shape in
               (outputs["label_ids"], outputs["label_scores"]))
    ids = np.array([[2, 17, 40, 9, 3]] * 3, dtype=np.int64)
    logits, label_ids, label_scores = sess.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    assert logits.shape == (3, 5, 9) and label_ids.shape == label_scores.shape == (3, 5)
    want_ids, want_scores = decision(logits)
    assert (label_ids == want_ids).all() and np.allclose(label_scores, want_scores, atol=1e-6)


def test_onnx_runtime_matches_torch_on_a_sentence(exported, tiny):
    version = exported[0] / "finer_model" / "1"
    config = TaggerConfig.load(version)
    enc = encode(load_tokenizer(version / "tokenizer.json"), [[w.text for w in split_words(SENTENCE)]] * 3, config)
    got = session(version / "model.onnx").run(
        ["logits"], {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask})[0]
    want = torch_logits(tiny, enc.input_ids, enc.attention_mask)
    mask = enc.attention_mask.astype(bool)
    assert got.shape == want.shape == (3, 32, 9)
    np.testing.assert_allclose(got[mask], want[mask], atol=1e-4)
    assert (got.argmax(-1) == want.argmax(-1))[mask].all()


def test_versions_count_up_and_rollback_retires_the_newest(tiny, tmp_path):
    # Numbering, not promotion (tests/test_promotion.py): later versions are forced in.
    assert export_model(tiny, tmp_path).name == "1"
    assert export_model(tiny, tmp_path, force=True).name == "2"
    for step, files in STEP_FILES.items():  # the whole ensemble is versioned together
        assert versions_in(tmp_path, step) == ["1", "2"]
        assert {p.name for p in (tmp_path / step / "2").iterdir()} == {"model.py", "finer", *files}
        core = tmp_path / step / "2" / "finer"  # the shared core, as exported
        assert (core / "pipeline.py").read_bytes() == (ROOT / "finer" / "pipeline.py").read_bytes()
        assert (core / "data" / "ner_tags_names.json").is_file() and not (core / "__pycache__").exists()
    assert (tmp_path / "finer_preprocess" / "2" / "tokenizer.json").read_bytes() == \
        (tmp_path / "finer_model" / "2" / "tokenizer.json").read_bytes()
    assert rollback(tmp_path) == (2, 1)
    retired = tmp_path / "finer_model" / ".retired" / "2"
    assert {p.name for p in retired.iterdir()} == FILES
    for model in ("finer_model", *STEP_FILES):
        assert versions_in(tmp_path, model) == [".retired", "1"], model
    assert export_model(tiny, tmp_path, force=True).name == "3"  # a number is never reused for another model
    assert versions_in(tmp_path, "finer_postprocess") == [".retired", "1", "3"]
    rollback(tmp_path)
    with pytest.raises(RepositoryError, match="only one"):
        rollback(tmp_path)
    assert versions_in(tmp_path) == [".retired", "1"]


def test_rollback_regenerates_what_the_ensemble_publishes(tiny, tmp_path):
    """Versions with different window lengths: after a rollback the ensemble publishes, the front
    door enforces and the client plans with the settings of the version now served."""
    from google.protobuf.json_format import MessageToDict

    from client.plan import Limits
    from server.service import max_body_bytes, model_config

    repository = tmp_path / "repo"
    export_model(tiny, repository)
    export_model(tiny, repository, max_length=64, stride=16, force=True)

    def published() -> dict:
        config = model_config(repository, "finer")
        return {k: int(v.string_value) for k, v in config.parameters.items()}

    assert published()["max_length"] == 64
    assert rollback(repository) == (2, 1)
    served = published()
    assert served["max_length"] == 128 and served["stride"] == 32, served
    assert max_body_bytes(repository) == served["max_body_bytes"] == 128 * 64 * 4 * 8
    as_json = MessageToDict(model_config(repository, "finer"), preserving_proto_field_name=True)
    assert Limits.from_config(as_json).max_length == 128


def test_bert_exports_without_token_type_ids(tmp_path):
    import onnx

    folder = build_tiny_model(tmp_path / "bert", arch="bert")
    parity_data = tmp_path / "parity.jsonl"
    words = [w.text for w in split_words(SENTENCE)]  # FiNER-style: "7.00" stands apart from "%"
    parity_data.write_text("".join(json.dumps({"tokens": words * k}) + "\n" for k in (1, 2, 5)))
    version = export_model(folder, tmp_path / "repo", parity_data=parity_data, max_length=64)
    assert [i.name for i in onnx.load(str(version / "model.onnx")).graph.input] == ["input_ids", "attention_mask"]
    info = json.loads((version / "export.json").read_text())
    assert info["parity"]["optimised"]["max_abs_diff"] <= 1e-4
    assert info["parity"]["export"]["sentences"] == 3 and info["parity"]["export"]["windows"] > 3  # the long one is cut
    assert info["optimisation"]["fused"].get("Attention") == 2
    config = TaggerConfig.load(version)
    assert (config.max_length, config.buckets) == (64, [32, 48, 64])


def one_line_error(capsys, argv: list[str]) -> str:
    assert export.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)
    return err[-1]


def test_non_token_classifiers_are_refused(tmp_path, capsys):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertModel

    config = DistilBertConfig(vocab_size=100, dim=32, hidden_dim=64, n_layers=1, n_heads=2)
    DistilBertForSequenceClassification(config).save_pretrained(tmp_path / "sequence")
    DistilBertModel(config).save_pretrained(tmp_path / "encoder")
    repository = tmp_path / "repo"
    message = one_line_error(capsys, [str(tmp_path / "sequence"), "--repository", str(repository)])
    assert "DistilBertForSequenceClassification" in message and "not a token classifier" in message
    with pytest.raises(ExportError, match="not a token classifier"):
        export_model(tmp_path / "encoder", repository)
    assert versions_in(repository) == []  # nothing written, no staging left


def test_missing_folder_and_unreadable_uri_fail_in_one_line(tmp_path, capsys):
    assert "no such model folder" in one_line_error(capsys, [str(tmp_path / "absent"), "--repository", str(tmp_path)])
    message = one_line_error(capsys, ["models:/finer/1", "--repository", str(tmp_path),
                                      "--tracking-uri", f"sqlite:///{tmp_path}/mlruns.db"])
    assert "no MLflow database" in message and not (tmp_path / "mlruns.db").exists()


def test_exports_a_registered_mlflow_model(tiny, tmp_path, monkeypatch, capsys):
    import mlflow

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("export-test", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_artifacts(str(tiny), artifact_path="model")  # how training logs the model folder
        source = mlflow.get_artifact_uri("model")
    client = mlflow.MlflowClient(uri)
    client.create_registered_model("finer-test")
    client.create_model_version("finer-test", source=source, run_id=run.info.run_id)
    monkeypatch.chdir(tmp_path)  # export must find the registry at `uri`, not in a default ./mlflow.db
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    version = export_model("models:/finer-test/1", tmp_path / "repo", tracking_uri=uri)
    assert {p.name for p in version.iterdir()} == FILES
    assert json.loads((version / "export.json").read_text())["source"]["model"] == "models:/finer-test/1"
    path, _ = export.locate_model(f"runs:/{run.info.run_id}/model", uri, tmp_path / "scratch")
    assert (path / "config.json").is_file()
    message = one_line_error(capsys, ["models:/finer-test/7", "--repository", str(tmp_path), "--tracking-uri", uri])
    assert "cannot download it from MLflow" in message
    assert not (tmp_path / "mlflow.db").exists()


def test_parity_failure_writes_nothing(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(export_gates, "PARITY_TOLERANCE", -1.0)  # any difference, even 0, now fails the gate
    with pytest.raises(ExportError, match="parity gate failed"):
        export_model(tiny, tmp_path)
    assert versions_in(tmp_path) == []


@pytest.fixture(scope="module")
def validation(exported, tmp_path_factory) -> Path:
    """Sentences tagged by the fp32 export itself: fp32 scores F1 1.0, int8 scores its agreement with fp32."""
    from evaluation.evaluate import predict

    version = exported[0] / "finer_model" / "1"
    rng = np.random.default_rng(0)
    numbers = ["7.00", "1,893.6", "2.25", "500", "0.75", "3", "12.5"] * 8  # only numbers can be entities
    rows = [{"tokens": [str(w) for w in rng.choice(WORDS + numbers + ["%", "$", "."], size=rng.integers(5, 40))]}
            for _ in range(40)]
    run = ort_logits(session(version / "model.onnx"))
    tags = predict(run, load_tokenizer(version / "tokenizer.json"), rows, TaggerConfig.load(version))
    path = tmp_path_factory.mktemp("validation") / "validation.jsonl"
    path.write_text("".join(json.dumps({"tokens": r["tokens"], "ner_tags": t}) + "\n" for r, t in zip(rows, tags)))
    assert sum(t.startswith("B-") for s in tags for t in s) > 20
    return path


def test_int8_reports_both_f1_and_gates_on_the_drop(tiny, validation, tmp_path):
    report = {}
    version = export_model(tiny, tmp_path, quantize="int8", validation=validation, max_f1_drop=100.0,
                           also_fp32=True, report=report)
    assert versions_in(tmp_path) == ["1", "2"] and version.name == "2"
    fp32, int8 = (json.loads((tmp_path / "finer_model" / v / "export.json").read_text()) for v in "12")
    assert (fp32["precision"], int8["precision"]) == ("fp32", "int8")
    gate = int8["quantisation"]["gate"]
    assert gate["f1"]["fp32"] == 1.0 and 0.0 < gate["f1"]["int8"] <= 1.0 and gate["passed"]
    assert gate["drop_points"] == pytest.approx(100 * (1.0 - gate["f1"]["int8"]))
    point, low, high = gate["int8_minus_fp32_points"]  # paired bootstrap over the same sentences
    assert low <= point <= high and point == pytest.approx(-gate["drop_points"], abs=1e-3)
    assert gate["speedup"] > 0 and set(gate["seconds"]) == {"fp32", "int8"}
    assert int8["quantisation"]["fp32_groups"] == [] and int8["quantisation"]["fp32_nodes"] == []
    assert int8["model_bytes"] < fp32["model_bytes"]
    assert "int8 gate" in summary(report)

    # A gate nothing can pass: fail with both figures in the message and write nothing ...
    with pytest.raises(ExportError, match=r"int8 entity micro-F1 .* vs fp32 1\.0000"):
        export_model(tiny, tmp_path, quantize="int8", validation=validation, max_f1_drop=-1.0)
    assert versions_in(tmp_path) == ["1", "2"]
    # ... or, if asked, keep the fp32 model and say why.
    version = export_model(tiny, tmp_path, quantize="int8", validation=validation, max_f1_drop=-1.0, on_f1_drop="fp32",
                           force=True)  # over a served version: promotion is tests/test_promotion.py's
    info = json.loads((version / "export.json").read_text())
    assert version.name == "3" and info["precision"] == "fp32" and info["quantisation"]["gate"]["passed"] is False


def test_int8_answers_do_not_depend_on_their_batch_mates(tiny, validation, tmp_path):
    """A dynamic int8 scale is computed over the whole batch, so a document's answer would change with
    the windows Triton batches it with; the export fixes the scales, and a document tagged alone and
    among others (longer ones, padded to another length) gets the same tags and scores."""
    import onnx

    from finer.pipeline import Tagger

    version = export_model(tiny, tmp_path, quantize="int8", validation=validation, max_f1_drop=100.0)
    ops = {n.op_type for n in onnx.load(str(version / "model.onnx")).graph.node}
    assert "DynamicQuantizeLinear" not in ops and {"QuantizeLinear", "MatMulInteger"} <= ops
    assert json.loads((version / "export.json").read_text())["quantisation"]["calibration_windows"] > 0
    tagger = Tagger.from_version(version)
    doc = [w.text for w in split_words(SENTENCE)]
    loud = [w.text for w in split_words(" ".join(export_gates.SAMPLE_TEXTS))]  # several windows of 128
    tags, scores = tagger.word_scores([doc])[0]
    for mates, at in (([loud, doc], 1), ([doc, loud, doc[:5]], 0), ([doc] * 8, 5)):
        among_tags, among_scores = tagger.word_scores(mates)[at]
        assert among_tags == tags
        np.testing.assert_allclose(among_scores, scores, rtol=0, atol=1e-6)


def test_int8_keeps_the_named_node_groups_fp32(tiny, validation, tmp_path):
    import onnx

    from export.onnx_optimise import node_groups

    version = export_model(tiny, tmp_path, quantize="int8", validation=validation, max_f1_drop=100.0,
                           int8_fp32=("classifier", "ffn.0"))
    fp32_graph = tmp_path / "fp32-reference"
    groups = node_groups(exported_fp32_model(tiny, fp32_graph))
    assert {"classifier", "ffn.0", "ffn.1", "attention.0", "attention.1"} <= set(groups)
    float_matmuls = {n.name for n in onnx.load(str(version / "model.onnx")).graph.node if n.op_type == "MatMul"}
    assert float_matmuls == set(groups["classifier"] + groups["ffn.0"])
    with pytest.raises(ExportError, match="no node group ffn.9"):
        export_model(tiny, tmp_path, quantize="int8", validation=validation, int8_fp32=("ffn.9",))


def exported_fp32_model(tiny, repository: Path) -> Path:
    return export_model(tiny, repository) / "model.onnx"


def test_int8_needs_a_validation_file(tiny, tmp_path):
    with pytest.raises(ExportError, match="--validation"):
        export_model(tiny, tmp_path, quantize="int8")


def test_falls_back_to_the_dynamo_exporter_for_architectures_optimum_lacks(tiny, tmp_path, monkeypatch):
    from optimum.exporters.tasks import TasksManager

    def unsupported(*args, **kwargs):
        raise KeyError("distilbert is not supported yet")

    monkeypatch.setattr(TasksManager, "get_exporter_config_constructor", unsupported)
    version = export_model(tiny, tmp_path)
    info = json.loads((version / "export.json").read_text())
    assert info["exporter"].startswith("torch.onnx dynamo")
    assert info["parity"]["optimised"]["max_abs_diff"] <= 1e-4


def test_the_calibrated_minimum_scores_travel_to_every_step(tiny, tmp_path):
    model = tmp_path / "calibrated"
    shutil.copytree(tiny, model)
    (model / "finer.json").write_text(json.dumps({"min_scores": {STATED: 0.6}}))  # as training writes it, in part
    version = export_model(model, tmp_path / "repo")
    for step in ("finer_model", "finer_postprocess"):
        assert TaggerConfig.load(tmp_path / "repo" / step / version.name).min_scores == {STATED: 0.6}, step
