"""Export stage 1, the source: a trained model folder or MLflow URI -> classifier, tokenizer and finer.json."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import warnings
from pathlib import Path

from finer.labels import OUTSIDE, finer_label_names
from finer.pipeline import CONFIG_FILE, TaggerConfig
from finer.serving import ServingSpec, buckets_for


class ExportError(Exception):
    """A user-fixable problem: the message says what is wrong and what to do; no version was written."""


@contextlib.contextmanager
def quiet():
    """Hide the exporters' tracer warnings and info logs; errors still surface as exceptions."""
    from transformers.utils import logging as hf_logging

    old = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    names = ("optimum", "onnxruntime", "onnx_ir", "onnxscript", "torch.onnx", "root")
    levels = {n: logging.getLogger(n if n != "root" else None).level for n in names}
    for n in names:
        logging.getLogger(n if n != "root" else None).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(old)
        for n, level in levels.items():
            logging.getLogger(n if n != "root" else None).setLevel(level)


def _is_uri(source: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:/", source) is not None and not Path(source).exists()


def locate_model(source: str, tracking_uri: str, scratch: Path) -> tuple[Path, dict]:
    """A local model folder for `source` (a folder, or an MLflow `models:/` / `runs:/` URI) and its provenance."""
    if _is_uri(source):
        database = tracking_uri[len("sqlite:///"):] if tracking_uri.startswith("sqlite:///") else None
        if database and not Path(database).is_file():  # MLflow would quietly create an empty store
            raise ExportError(f"{source}: no MLflow database at {database}; train first (`make train`) "
                              "or point --tracking-uri at the store the run was logged to")
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        import mlflow

        try:
            # models:/ resolves through the registry URI, which would otherwise default to ./mlflow.db.
            mlflow.set_tracking_uri(tracking_uri)
            mlflow.set_registry_uri(tracking_uri)
            path = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(scratch / "source"),
                                                             tracking_uri=tracking_uri))
        except Exception as e:  # mlflow raises many types (MlflowException, OSError, sqlalchemy errors)
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ExportError(f"{source}: cannot download it from MLflow at {tracking_uri} ({reason}); "
                              "check the URI (models:/<name>/<version> or runs:/<run id>/model) and --tracking-uri") from None
        if not (path / "config.json").is_file() and (path / "model" / "config.json").is_file():
            path = path / "model"  # a runs:/<id> URI: the run's artifact root holding model/
        provenance = {"model": source, "tracking_uri": tracking_uri}
    else:
        path = Path(source)
        if not path.is_dir():
            raise ExportError(f"{path}: no such model folder; give a trained model folder (e.g. runs/latest/model) "
                              "or an MLflow URI (models:/<name>/<version>, runs:/<run id>/model)")
        provenance = {"model": str(path.resolve())}
    if not (path / "config.json").is_file():
        raise ExportError(f"{source}: no config.json in {path}; this is not a saved Hugging Face model folder")
    mlflow_info = path / "mlflow.json"  # written by training when the run was tracked
    if mlflow_info.is_file():
        with contextlib.suppress(ValueError):
            provenance["mlflow"] = json.loads(mlflow_info.read_text())
    return path, provenance


def load_classifier(path: Path):
    """The token classifier and its fast tokenizer; refuses anything else with a reason."""
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError) as e:
        raise ExportError(f"{path}/config.json: cannot read it ({str(e).splitlines()[0][:160]})") from None
    archs = config.architectures or []
    # AutoModelForTokenClassification would happily put a fresh random head on any encoder.
    if not any(a.endswith("ForTokenClassification") for a in archs):
        raise ExportError(f"{path}: architectures {archs or 'unset'} is not a token classifier "
                          "(need *ForTokenClassification); export a model trained by `make train`")
    labels = [config.id2label[i] for i in range(config.num_labels)]
    unknown = [t for t in labels if t != OUTSIDE and t not in set(finer_label_names())]
    if labels[0] != OUTSIDE or unknown:
        raise ExportError(f"{path}/config.json: id2label must be 'O' then FiNER-139 tags "
                          f"(got {labels[0]!r} first{', unknown ' + ', '.join(unknown[:3]) if unknown else ''})")
    try:
        with quiet():
            model = AutoModelForTokenClassification.from_pretrained(path).eval()
            tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, RuntimeError) as e:
        raise ExportError(f"{path}: cannot load the model or tokenizer ({str(e).splitlines()[0][:200]})") from None
    if not tokenizer.is_fast:
        raise ExportError(f"{path}: no fast tokenizer (tokenizer.json); save the tokenizer with transformers' fast class")
    return model, tokenizer, labels


def tagger_settings(path: Path, tokenizer, labels: list[str], model_config, max_length: int | None,
                    stride: int | None) -> TaggerConfig:
    """finer.json for serving: window settings from the flags, else the training run's finer.json, else the
    serving spec's defaults; the calibrated minimum scores from the training run's finer.json."""
    from training.features import tagger_config

    trained = json.loads((path / CONFIG_FILE).read_text()) if (path / CONFIG_FILE).is_file() else {}
    max_length = max_length or trained.get("max_length") or ServingSpec.max_length
    stride = stride if stride is not None else trained.get("stride", ServingSpec.stride)
    limit = getattr(model_config, "max_position_embeddings", None)
    if limit and max_length > limit:
        raise ExportError(f"--max-length {max_length} exceeds the model's {limit} positions")
    if not 0 <= stride < max_length - 2:
        raise ExportError(f"--stride {stride} must be at least 0 and below max_length - 2 ({max_length - 2})")
    config = tagger_config(tokenizer, {i: t for i, t in enumerate(labels)}, max_length, stride,
                           trained.get("number_shapes", ()))
    if None in (config.cls_id, config.sep_id, config.pad_id):
        raise ExportError(f"{path}: the tokenizer has no cls/bos, sep/eos or pad token id; windows need all three")
    config.buckets = buckets_for(max_length)
    config.min_scores = trained.get("min_scores", {})  # the calibrated decision travels with the model
    return config
