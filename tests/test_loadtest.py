"""Smoke versions of the load tests and the benchmark, on the tiny model and the real embedded Triton.

The benchmark runs every path on a few generated filing sentences with one user; Locust runs
headless for a few seconds per protocol against the session's server.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from finer_samples import write_dataset
from loadtest import bench, run
from loadtest.sentences import detokenize, read_corpus

FP32_PATHS = ["onnx-fp32-b8", "served-fp32-grpc-1", "served-fp32-http-1"]
ALL_PATHS = ["hf-pipeline", "optimum-ort", "onnx-fp32-b1", "onnx-int8-b1", "onnx-int8-b8", *FP32_PATHS,
             "served-int8-grpc-1", "served-int8-http-1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("loadtest-data"))


def test_corpus_sentences_split_back_into_their_words(dataset):
    from finer.words import split_words

    assert detokenize(["rate", "of", "7.00", "%", "(", "d", ")", "for", "$", "100", "million", "."]) == \
        "rate of 7.00% (d) for $100 million."
    rows = read_corpus(dataset / "test.jsonl", None)
    assert rows and all([w.text for w in split_words(r["text"])] == r["tokens"] for r in rows)


def test_bench_smoke(tiny_export, dataset, tmp_path, capsys):
    out = tmp_path / "bench"
    code = bench.main(["--model", str(tiny_export.model_folder), "--sentences", "16", "--users", "1", "--warmup", "2",
                       "--corpus", str(dataset / "test.jsonl"), "--validation", str(dataset / "validation.jsonl"),
                       "--out", str(out)])
    assert code == 0, capsys.readouterr().err[-2000:]
    raw = json.loads((out / "bench.json").read_text())
    assert set(raw["results"]) == set(ALL_PATHS)
    for key, r in raw["results"].items():
        assert r["errors"] == 0 and r["sentences_per_s"] > 0 and len(r["entities_per_sentence"]) == 16, key
    # the same fp32 model.onnx gives the same entities in process, batched, and served over both protocols
    agreement = raw["agreement_vs_onnx_fp32"]
    assert sum(raw["results"]["onnx-fp32-b1"]["entities_per_sentence"]) > 0
    for key in FP32_PATHS:
        assert agreement[key]["f1"] == 1.0 and agreement[key]["identical_sentences"] == 1.0, key
    # int8 served = int8 in process; int8 vs fp32 is reported on its own
    same = raw["agreement_vs_floor_same_precision"]
    assert same["served-int8-grpc-1"]["f1"] == same["served-int8-http-1"]["f1"] == 1.0
    assert 0.0 <= agreement["onnx-int8-b1"]["f1"] <= 1.0
    table = (out / "bench.md").read_text()
    for label in ("| HF pipeline (PyTorch) | fp32 |", "| optimum ORT pipeline | fp32 |", "| ONNX Runtime (floor) | fp32 |",
                  "| ONNX Runtime (floor) | int8 |", "| Triton ensemble | fp32 | grpc, 1 user", "| Triton ensemble | int8 | http, 1 user",
                  "batch 8, length-sorted"):
        assert label in table, label
    assert "| target |" in table and raw["targets"]
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "triton-fp32-2x1.log").is_file() and (out / "triton-int8-2x1.log").is_file()
    # the server's memory is read after each load phase and held to the growth target
    rss = raw["machine"]["rss_mib"]
    assert set(rss) == {"fp32 2x1", "int8 2x1"} and all(len(v) == 2 and v[0][1] > 100 for v in rss.values())
    assert raw["machine"]["stub_round_trip"]["int8 2x1"]["server_ms"] > 0
    noop = next(t for t in raw["targets"] if t["target"].startswith("a request that does nothing (int8 2x1)"))
    assert noop["value"] == raw["machine"]["stub_round_trip"]["int8 2x1"]["client_ms"] and noop["threshold"] == 1.5
    assert "#### Server memory" in table and any(t["target"].startswith("server memory (int8 2x1)") for t in raw["targets"])
    # --render redoes the same tables from bench.json alone
    (out / "bench.md").unlink()
    assert bench.main(["--render", str(out)]) == 0 and (out / "bench.md").read_text() == table


def test_bench_layouts_regenerate_the_model_config(tiny_export, tmp_path):
    import shutil

    from loadtest.bench import BenchError, apply_layout, floor_threads, model_layout, parse_layout

    repository = Path(shutil.copytree(tiny_export.repository, tmp_path / "repo"))
    assert model_layout(repository)[:2] == (2, 1) and floor_threads(repository) == (2, 1)  # the spec's default
    apply_layout(repository, "1x2")
    assert model_layout(repository) == (1, 2, 1)
    assert 'key: "session.intra_op.allow_spinning"\n  value {\n    string_value: "0"' in \
        (repository / "finer_model" / "config.pbtxt").read_text()  # idle threads sleep unless --spinning
    apply_layout(repository, "1x2", spinning=True)
    assert 'string_value: "1"' in (repository / "finer_model" / "config.pbtxt").read_text().split("allow_spinning")[1]
    assert floor_threads(repository) == (2, 1)  # the floor still gets every thread the server's model gets
    for bad in ("2", "0x1", "twoxone"):
        with pytest.raises(BenchError, match="--layouts"):
            parse_layout(bad)


def test_bench_user_errors(tmp_path, dataset, capsys):
    assert bench.main(["--model", str(tmp_path / "nope"), "--corpus", str(dataset / "test.jsonl"),
                       "--validation", str(dataset / "validation.jsonl"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "config.json" in err and "\n" not in err


def test_benchmarks_section_is_replaced_in_place(tmp_path):
    from loadtest.report import MARK_END, MARK_START, update_benchmarks

    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(f"# Benchmarks\n\nintro\n\n{MARK_START}\nold\n{MARK_END}\n\nfooter\n")
    update_benchmarks(doc, "new table")
    update_benchmarks(doc, "newer table")
    text = doc.read_text()
    assert "newer table" in text and "old" not in text and "new table" not in text
    assert text.startswith("# Benchmarks\n\nintro") and text.rstrip().endswith("footer") and text.count(MARK_START) == 1


def _stats(path: Path) -> dict:
    with path.open(newline="") as fh:
        return {r["Name"]: r for r in csv.DictReader(fh)}


def test_locust_both_protocols(served, dataset, tmp_path):
    out = tmp_path / "locust"
    code = run.main(["--users", "2", "--duration", "5s", "--protocol", "both", "--host", served.server.http_url,
                     "--grpc-url", served.server.grpc_url, "--corpus", str(dataset / "test.jsonl"), "--out", str(out)])
    assert code == 0, (out / "http.log").read_text()[-1500:]
    for protocol in ("http", "grpc"):
        stats = _stats(out / f"{protocol}_stats.csv")
        total = stats["Aggregated"]
        assert int(total["Request Count"]) > 0 and int(total["Failure Count"]) == 0, protocol
        assert int(stats["sentence"]["Request Count"]) > 0
        assert "<html" in (out / f"{protocol}.html").read_text().lower()
    summary = json.loads((out / "summary.json").read_text())
    assert {r["protocol"] for r in summary["rows"]} == {"http", "grpc"}


def test_locust_counts_server_errors_as_failures(served, tmp_path):
    # One document over the server's max_text_bytes: every request is refused (INVALID_ARGUMENT [too_big]).
    corpus = tmp_path / "huge.jsonl"
    corpus.write_text(json.dumps({"tokens": ["interest"] * 20000, "ner_tags": ["O"] * 20000}) + "\n")
    out = tmp_path / "locust"
    code = run.main(["--users", "1", "--duration", "2s", "--protocol", "both", "--host", served.server.http_url,
                     "--grpc-url", served.server.grpc_url, "--corpus", str(corpus), "--out", str(out)])
    assert code == 1
    for protocol in ("http", "grpc"):
        total = _stats(out / f"{protocol}_stats.csv")["Aggregated"]
        assert int(total["Request Count"]) > 0 and total["Failure Count"] == total["Request Count"], protocol
        assert "max_text_bytes" in (out / f"{protocol}_failures.csv").read_text()


def test_run_needs_a_running_server(tmp_path, capsys):
    from server.triton import free_port

    port = free_port()
    assert run.main(["--host", f"http://127.0.0.1:{port}", "--protocol", "http", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no server at") and "make serve" in err and "\n" not in err


def test_padding_cost_counts_padded_positions_and_quadratic_attention():
    from loadtest.padding import cost

    # two requests of one window each (10 and 30 sub-tokens) in a 32 bucket; one of 10+40 in 64
    share, attention = cost([[10], [30]], (32, 64))
    assert share == pytest.approx(1 - 40 / 64) and attention == pytest.approx(2 * 32**2 / (10**2 + 30**2))
    share, attention = cost([[10, 40]], (32, 64))
    assert share == pytest.approx(1 - 50 / 128) and attention == pytest.approx(2 * 64**2 / (10**2 + 40**2))


def test_doc_cost_tags_growing_documents_and_a_batch_of_filings(tiny_export, tmp_path, capsys):
    from loadtest import doc_cost

    import shutil

    filing = Path(__file__).parent / "fixtures" / "ixbrl" / "alpha_10-K_2023-12-31.htm"
    fixtures = tmp_path / "filings"
    for name in ("a", "b", "c"):
        (fixtures / name).mkdir(parents=True)
        shutil.copy(filing, fixtures / name / filing.name)
    out, doc = tmp_path / "cost", tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n")
    assert doc_cost.main(["--repository", str(tiny_export.repository), "--filing", str(filing), "--filings", str(fixtures),
                          "--count", "2", "--out", str(out), "--benchmarks", str(doc)]) == 0, capsys.readouterr().err[-2000:]
    raw = json.loads((out / "doc_cost.json").read_text())
    rows = raw["by_length"]
    # sizes grow up to the whole filing, and each row was timed and measured
    assert [r["sentences"] for r in rows] == sorted(r["sentences"] for r in rows) and rows[0]["sentences"] == 1
    assert all(r["seconds_per_call"] > 0 and r["client_mib"] > 0 and r["server_mib"] > 100 for r in rows)
    assert raw["batch"]["tagged"] == 2 and raw["batch"]["server_peak_mib"] > 100
    # the whole filing from 4 clients at once: each answer is the one it got alone
    check = raw["among_others"]
    assert check["users"] == 4 and check["entities"] == [rows[-1]["entities"]] * 4 and check["identical"] == 4
    text = doc.read_text()
    assert text.count("<!-- doc-cost:start -->") == 1 and "| document | words |" in text and "| filings | seconds |" in text
    assert "| 4 users at once |" in text
