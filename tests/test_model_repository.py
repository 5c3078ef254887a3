"""The model repository's configs keep the contract clients and the official container rely on."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc

from conftest import ROOT
from finer import artifacts
from finer.pipeline import TaggerConfig
from finer.runtime import triton_options
from finer.serving import ServingSpec
from finer.windows import make_windows, window_count

REPO = ROOT / "model_repository"


def load(name: str) -> mc.ModelConfig:
    return text_format.Parse((REPO / name / "config.pbtxt").read_text(), mc.ModelConfig())


def params(config: mc.ModelConfig) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def tensors(items) -> dict[str, tuple[int, list[int]]]:
    return {t.name: (t.data_type, list(t.dims)) for t in items}


def test_every_config_parses_with_its_own_name():
    for name in ("finer", "finer_preprocess", "finer_model", "finer_postprocess"):
        assert load(name).name == name


def test_ensemble_contract():
    config = load("finer")
    assert config.platform == "ensemble" and config.max_batch_size == 0
    assert tensors(config.input) == {"TEXT": (mc.TYPE_STRING, [-1]), "LABELS": (mc.TYPE_STRING, [-1])}
    assert [t.name for t in config.input if t.optional] == ["LABELS"]  # narrowing is opt-in
    assert tensors(config.output) == {"ENTITIES": (mc.TYPE_STRING, [-1])}
    assert params(config)["max_documents"] == "64"
    assert (REPO / "finer" / "1").is_dir()  # Triton needs a version folder even for an ensemble


def test_ensemble_steps_are_wired():
    config = load("finer")
    available = {t.name for t in config.input}
    for step in config.ensemble_scheduling.step:
        model = load(step.model_name)
        assert set(step.input_map) == {t.name for t in model.input}, step.model_name
        assert set(step.input_map.values()) <= available, step.model_name
        assert set(step.output_map) <= {t.name for t in model.output}, step.model_name
        available |= set(step.output_map.values())
    assert {t.name for t in config.output} <= available


def test_limits_agree_across_configs():
    ensemble, pre, model = params(load("finer")), params(load("finer_preprocess")), load("finer_model")
    assert ensemble["max_documents"] == pre["max_documents"]
    assert ensemble["max_windows"] == pre["max_windows"] == str(model.max_batch_size)


def test_python_steps():
    pre, post = load("finer_preprocess"), load("finer_postprocess")
    assert pre.backend == post.backend == "python" and pre.max_batch_size == post.max_batch_size == 0
    assert tensors(pre.output) == {
        "INPUT_IDS": (mc.TYPE_INT64, [-1, -1]), "ATTENTION_MASK": (mc.TYPE_INT64, [-1, -1]),
        "WORD_IDS": (mc.TYPE_INT32, [-1, -1]), "WORD_SPANS": (mc.TYPE_INT32, [-1, 3]),
    }
    assert tensors(post.input)["LABEL_IDS"] == (mc.TYPE_INT64, [-1, -1])
    assert tensors(post.input)["LABEL_SCORES"] == (mc.TYPE_FP32, [-1, -1])
    for step in ("finer_preprocess", "finer_postprocess", "finer_labels"):  # copied into each version by export
        assert (REPO / step / "model.py").is_file()


def test_committed_configs_are_the_generated_ones():
    from export.triton_configs import differences

    assert differences(REPO) == [], "run `python -m export.triton_configs` and commit the result"


def test_gpu_config_runs_the_model_on_the_gpu():
    gpu = text_format.Parse((REPO / "finer_model" / "configs" / "gpu.pbtxt").read_text(), mc.ModelConfig())
    assert [g.kind for g in gpu.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    cpu = load("finer_model")
    assert gpu.max_batch_size == cpu.max_batch_size and gpu.input == cpu.input and gpu.output == cpu.output
    assert [w.name for w in gpu.model_warmup] == [w.name for w in cpu.model_warmup]
    assert "intra_op_thread_count" not in gpu.parameters  # CPU thread settings stay off the GPU


def test_ensemble_publishes_window_settings():

    ensemble = params(load("finer"))
    assert (int(ensemble["max_length"]), int(ensemble["stride"])) == (ServingSpec.max_length, ServingSpec.stride)


def test_onnx_model_config():
    config = load("finer_model")
    assert config.backend == "onnxruntime" and config.max_batch_size > 0
    assert tensors(config.input) == {"input_ids": (mc.TYPE_INT64, [-1]), "attention_mask": (mc.TYPE_INT64, [-1])}
    # each position's best label and its probability (export appends them); the logits are not copied out
    assert tensors(config.output) == {"label_ids": (mc.TYPE_INT64, [-1]), "label_scores": (mc.TYPE_FP32, [-1])}
    assert 0 < config.dynamic_batching.max_queue_delay_microseconds <= 5000
    # the spec's CPU layout: instances x threads (two single-threaded instances, BENCHMARKS.md)
    spec = ServingSpec()
    assert [(g.kind, g.count) for g in config.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, spec.model_instances)]
    assert params(config)["intra_op_thread_count"] == str(spec.intra_op_threads)
    assert {"intra_op_thread_count", "inter_op_thread_count"} <= set(params(config))
    # the session the embedded server's backend builds from it: threads as set, idle threads sleep
    options = triton_options(json_format.MessageToDict(config, preserving_proto_field_name=True))
    assert options.intra_op_num_threads == spec.intra_op_threads
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == str(int(spec.spinning)) == "0"
    default_buckets = next(f for f in fields(TaggerConfig) if f.name == "buckets").default_factory()
    warmed = sorted(w.inputs["input_ids"].dims[0] for w in config.model_warmup)
    assert warmed == sorted(default_buckets)


def test_latest_version_is_numeric_and_complete(tmp_path: Path):
    with pytest.raises(artifacts.MissingArtifacts, match="make export"):
        artifacts.latest(tmp_path)
    for version in ("2", "10"):
        (tmp_path / version).mkdir()
        for name in artifacts.FILES:
            (tmp_path / version / name).write_text("x")
    (tmp_path / "notes").mkdir()
    assert artifacts.latest(tmp_path) == tmp_path / "10"
    (tmp_path / "11").mkdir()
    with pytest.raises(artifacts.MissingArtifacts, match="lacks model.onnx"):
        artifacts.latest(tmp_path)


@pytest.mark.parametrize("max_length,stride", [(128, 32), (10, 3), (34, 0)])
def test_window_count_matches_make_windows(max_length, stride):
    for n in range(0, 400):
        built = make_windows(list(range(n)), list(range(n)), cls_id=1, sep_id=2, max_length=max_length, stride=stride)
        assert window_count(n, max_length=max_length, stride=stride) == len(built)


def test_labels_model_takes_no_inputs():
    config = load("finer_labels")
    assert config.backend == "python" and all(i.optional for i in config.input)
    assert [o.name for o in config.output] == ["LABELS", "VERSION", "MODEL_CARD"]
