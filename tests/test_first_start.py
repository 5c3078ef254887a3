"""`make serve`'s first-start decisions: which data and base model, and when nothing is to be built."""
import shutil
from pathlib import Path

import pytest

from finer.artifacts import STEP_FILES
from export import first_start as bootstrap

FIXTURES = Path(__file__).parent / "fixtures" / "ixbrl"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(bootstrap, "CACHE", tmp_path / "cache")
    return monkeypatch


def test_no_hub_and_no_filings_says_what_to_do(offline):
    offline.delenv(bootstrap.FILINGS_ENV, raising=False)
    with pytest.raises(bootstrap.BootstrapError, match="FINER_FILINGS=.* make serve"):
        bootstrap.training_plan()


def test_missing_filings_folder(offline, tmp_path):
    offline.setenv(bootstrap.FILINGS_ENV, str(tmp_path / "nope"))
    with pytest.raises(bootstrap.BootstrapError, match="no such folder"):
        bootstrap.training_plan()


def test_offline_plan_builds_the_corpus_and_uses_the_offline_encoder(offline, tmp_path):
    filings = tmp_path / "filings"
    for i, company in enumerate(("alpha", "beta", "gamma", "delta")):
        # four companies so that every split gets one; the same fixture text under other names
        text = (FIXTURES / "alpha_10-K_2023-12-31.htm").read_text().replace("0000000001", f"000000000{i + 1}")
        (filings / company).mkdir(parents=True)
        (filings / company / f"{company}_10-K_2023-12-31.htm").write_text(text)
    offline.setenv(bootstrap.FILINGS_ENV, str(filings))
    args, source = bootstrap.training_plan()
    assert "unreachable" in source and str(filings) in source
    corpus = Path(args[args.index("--data") + 1])
    assert (corpus / "train.jsonl").is_file() and args[args.index("--model") + 1] == "offline-minilm"
    # fixed epochs (the same model on any machine), a wall-clock guard, and a quick test score
    assert args[args.index("--epochs") + 1] == "3" and args.count("--time_budget_minutes") == 1
    assert args[args.index("--scope") + 1] == "debt" and args[args.index("--score_test") + 1] == "filtered"


def test_an_exported_model_is_used_as_it_is(tmp_path):
    repo = tmp_path / "repo"
    folder = repo / "finer_model" / "4"
    folder.mkdir(parents=True)
    for name in ("model.onnx", "tokenizer.json", "finer.json"):
        (folder / name).write_text("{}")
    with pytest.raises(bootstrap.BootstrapError, match="finer_preprocess/4 lacks model.py.*make export"):
        bootstrap.ensure_model(repo, run_dir=tmp_path / "run")  # a half version is not retrained over
    for step, files in STEP_FILES.items():
        (repo / step / "4").mkdir(parents=True)
        for name in ("model.py", *files):
            (repo / step / "4" / name).write_text("{}")
    assert bootstrap.ensure_model(repo, run_dir=tmp_path / "run") == folder
    assert not (tmp_path / "run").exists()  # nothing trained


def test_the_int8_gate_reads_the_data_s_validation_split(offline, tmp_path):
    import zipfile

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    assert bootstrap.gate_file(["--data", str(corpus)]) is None  # no split: fp32 is exported, no gate
    (corpus / "validation.jsonl").write_text('{"tokens": ["7.00"], "ner_tags": ["O"]}\n')
    assert bootstrap.gate_file(["--epochs", "3", "--data", str(corpus)]) == corpus / "validation.jsonl"
    # the hub's zip: its validation member is extracted once into the cache
    archive = tmp_path / "finer139.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("finer139/train.jsonl", "train\n")
        zf.writestr("finer139/validation.jsonl", "validation rows\n")
    offline.setattr("filings.sources.download_finer139", lambda: archive)
    path = bootstrap.gate_file(["--data", "hub"])
    assert path.read_text() == "validation rows\n" and path.parent == bootstrap.CACHE


def test_the_first_start_says_where_its_minutes_went(tmp_path):
    import os

    venv = tmp_path / ".venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / ".installed").touch()
    os.utime(venv / "pyvenv.cfg", (1000.0, 1000.0))
    os.utime(venv / ".installed", (1150.0, 1150.0))
    assert bootstrap.setup_minutes(venv) == 2.5
    assert bootstrap.setup_minutes(tmp_path / "none") is None
    table = bootstrap.breakdown({"setup (make setup)": 2.5, "corpus": None, "fine-tuning": 14.25})
    assert table.splitlines() == ["first start, minutes:", "  setup (make setup)    2.5",
                                  "  fine-tuning          14.2", "  total                16.8"]
