"""Side-by-side benchmark: the same real sentences through every way of running the model, in one run.

    python -m loadtest.bench --model runs/debt/model --sentences 512 --out results/bench-<stamp>

Paths, each turning text into entities:
1. `hf-pipeline`: transformers' token-classification pipeline, PyTorch fp32, one sentence per call
   (the seed's way), `aggregation_strategy="simple"` as a user would set it;
2. `optimum-ort`: the same pipeline on optimum's ORTModelForTokenClassification;
3. the floor: `finer.pipeline.encode` -> ONNX Runtime -> `decode` in process, on the exported fp32
   and int8 `model.onnx`, one sentence per call and length-sorted batches of 8;
4. `served`: the Triton ensemble (embedded server started here on free ports), fp32 then int8, over
   gRPC and HTTP at 1, 4 and 16 concurrent users, one sentence per request.

The model is exported (fp32 and int8, `training.export.export_model`, int8 F1 gate on the validation
split) into a temporary copy of the model repository; the project's repository is not touched.
Writes `<out>/bench.md`, `bench.json`, `bench.png`, the sentences and the Triton logs; `--benchmarks
BENCHMARKS.md` also replaces the results section of that file.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from loadtest.sentences import DEFAULT_CORPUS, read_corpus, write_sentences

ROOT = Path(__file__).resolve().parent.parent
PRECISIONS = ("fp32", "int8")


class BenchError(Exception):
    """A user-fixable problem, reported as one line."""


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def thread_settings(repository: Path) -> tuple[int, int]:
    """intra/inter-op threads of finer_model's config.pbtxt, so the floor runs ONNX Runtime as the server does."""
    text = (repository / "finer_model" / "config.pbtxt").read_text()

    def param(key: str) -> int:
        m = re.search(rf'key:\s*"{key}"\s*value\s*{{\s*string_value:\s*"(\d+)"', text)
        return int(m.group(1)) if m else 0

    return param("intra_op_thread_count"), param("inter_op_thread_count")


def export_both(model: Path, repository: Path, scratch: Path, validation: Path, max_validation: int | None) -> tuple[dict, dict]:
    """fp32 and int8 versions of `model`, each as version 1 of its own repository copy; and the export report."""
    from training.export import ExportError, export_model
    from training.repository import move_version, skeleton

    staging = skeleton(repository, scratch / "export")
    report: dict = {}
    try:
        # The bench measures int8 whatever its F1: the gate's figures are reported against the target instead.
        export_model(model, staging, quantize="int8", also_fp32=True, validation=validation,
                     max_validation_sentences=max_validation, max_f1_drop=100.0, report=report)
    except ExportError as e:
        raise BenchError(f"export of {model} failed: {e}") from None
    repos = {}
    for folder, info in report.items():
        repo = skeleton(repository, scratch / info["precision"])
        move_version(staging, Path(folder).name, repo, 1)
        repos[info["precision"]] = repo
    return repos, report


def measure_all(a, model: Path, texts: list[str], repos: dict, threads: tuple[int, int], out: Path, info: dict) -> dict:
    from loadtest import measure

    results: dict = {}

    def keep(r):
        results[r.key] = r
        _log(f"  {r.label}: {r.rate:.1f} sentences/s, p50 {r.percentile(50):.1f} ms, p95 {r.percentile(95):.1f} ms"
             + (f", {r.errors} errors (e.g. {r.error})" if r.errors else ""))

    _log("HF pipeline (PyTorch fp32) ...")
    keep(measure.one_at_a_time("hf-pipeline", "hf-pipeline", "HF pipeline (PyTorch)", "fp32",
                               measure.hf_pipeline(model, a.aggregation), texts, a.warmup))
    gc.collect()
    _log("optimum ONNX Runtime pipeline (exports the model on load) ...")
    keep(measure.one_at_a_time("optimum-ort", "optimum-ort", "optimum ORT pipeline", "fp32",
                               measure.optimum_pipeline(model, a.aggregation), texts, a.warmup))
    gc.collect()
    for precision in PRECISIONS:
        floor = measure.Floor(repos[precision] / "finer_model" / "1", *threads)
        for batch in (1, 8):
            keep(floor.measure(f"onnx-{precision}-b{batch}", precision, texts, batch, a.warmup))
        del floor
        gc.collect()

    from server.service import FinerServer
    from server.triton import LaunchError, free_port

    for precision in PRECISIONS:
        _log(f"starting Triton on the {precision} repository ...")
        server = FinerServer(repos[precision], free_port(), free_port(), free_port(),
                              log_file=out / f"triton-{precision}.log", backend_dir=repos[precision].parent / "backends")
        try:
            server.start()
            server.wait_ready(300)
            info.setdefault("triton", _triton_version(server))
            for protocol in a.protocols:
                for users in a.users:
                    keep(measure.served(server, precision, protocol, users, texts, a.warmup))
        except LaunchError as e:
            raise BenchError(f"Triton ({precision}): {str(e).splitlines()[0]}; log: {server.log_file}") from None
        finally:
            server.stop()
    return results


def _triton_version(server) -> str:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"{server.http_address}:{server.http_port}")
    try:
        return client.get_server_metadata().get("version", "?")
    finally:
        client.close()


def parse_list(text: str, kind=str) -> list:
    return [kind(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="trained model folder (runs/<name>/model)")
    which.add_argument("--arch", choices=["distilbert-base", "bert-base"],
                       help="a randomly initialised classifier of that size instead (speed only; loadtest.sized_models)")
    p.add_argument("--sentences", type=int, default=512, help="test sentences drawn at random (default: %(default)s)")
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS),
                   help="corpus folder (its test.jsonl and validation.jsonl) or a FiNER-format jsonl (default: %(default)s)")
    p.add_argument("--tagged-share", type=float, default=0.25,
                   help="share of the sentences drawn from those holding an entity of the model's labels, the rest "
                        "at random (entities are rare in filings; 0 = a plain random sample) (default: %(default)s)")
    p.add_argument("--validation", default=None, help="FiNER-format jsonl for the int8 F1 gate (default: the corpus's validation.jsonl)")
    p.add_argument("--validation-sentences", type=int, default=None, help="score only the first N of --validation (default: all)")
    p.add_argument("--users", default="1,4,16", help="concurrent users for the served paths (default: %(default)s)")
    p.add_argument("--protocols", default="grpc,http", help="served protocols (default: %(default)s)")
    p.add_argument("--aggregation", default="simple", help="the HF pipelines' aggregation_strategy (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=8, help="untimed calls per path before measuring (default: %(default)s)")
    p.add_argument("--repository", default=str(ROOT / "model_repository"), help="model repository to copy (default: the project's)")
    p.add_argument("--seed", type=int, default=13, help="sentence sample seed (default: %(default)s)")
    p.add_argument("--out", default=None, help="results folder (default: results/bench-<timestamp>)")
    p.add_argument("--benchmarks", default=None, help="also write the results section of this file (e.g. BENCHMARKS.md)")
    a = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = Path(a.out or f"results/bench-{datetime.now():%Y%m%d-%H%M%S}")
    try:
        a.users = parse_list(a.users, int)
        a.protocols = parse_list(a.protocols)
        if not a.users or min(a.users) < 1 or set(a.protocols) - {"grpc", "http"} or not a.protocols:
            raise BenchError("--users takes counts such as 1,4,16 and --protocols grpc, http or grpc,http")
        if a.arch:
            from loadtest.sized_models import build

            _log(f"building a randomly initialised {a.arch} token classifier ...")
            model = build(a.arch, out / f"model-{a.arch}")
        else:
            model = Path(a.model)
        if not (model / "config.json").is_file():
            raise BenchError(f"{model}: not a trained model folder (no config.json); train one with `make train`")
        corpus = Path(a.corpus)
        test = corpus / "test.jsonl" if corpus.is_dir() else corpus
        validation = Path(a.validation) if a.validation else (corpus / "validation.jsonl" if corpus.is_dir() else None)
        if not test.is_file():
            raise BenchError(f"{test}: no test sentences; build the corpus (`make corpus FINER_FILINGS=...`) or pass --corpus")
        if validation is None or not validation.is_file():
            raise BenchError(f"{validation or '--validation'}: no validation file for the int8 F1 gate; pass --validation")
        repository = Path(a.repository)
        if not (repository / "finer" / "config.pbtxt").is_file():
            raise BenchError(f"{repository}: not the finer model repository (no finer/config.pbtxt)")
        if not 0.0 <= a.tagged_share <= 1.0:
            raise BenchError(f"--tagged-share {a.tagged_share}: give a share between 0 and 1")
        model_labels = set(json.loads((model / "config.json").read_text()).get("id2label", {}).values())
        rows = read_corpus(test, a.sentences, seed=a.seed, tagged_share=a.tagged_share, labels=model_labels)
        if not rows:
            raise BenchError(f"{test}: no sentences of 3 words or more")
        texts = [r["text"] for r in rows]
        out.mkdir(parents=True, exist_ok=True)
        write_sentences(out / "sentences.jsonl", texts)

        from loadtest import report as rep

        info = rep.machine()
        _log(f"{len(texts)} sentences from {test}; machine: {info.get('cpu')}, load {info['load_average']}")
        started = time.time()
        with tempfile.TemporaryDirectory(prefix="finer-bench-") as scratch:
            _log("exporting fp32 and int8 into a temporary repository ...")
            repos, export_report = export_both(model, repository, Path(scratch), validation, a.validation_sentences)
            exported = json.loads((repos["fp32"] / "finer_model" / "1" / "finer.json").read_text())
            labels = exported["labels"]
            results = measure_all(a, model, texts, repos, thread_settings(repository), out, info)
        info["load_average_end"] = list(os.getloadavg())
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    from loadtest.compare import agreement, gold_f1, gold_spans

    reference = results[rep.REFERENCE].entities
    agreements = {k: agreement(r.entities, reference) for k, r in results.items()}
    same = {k: agreement(r.entities, results[f"onnx-{r.precision}-b1"].entities) for k, r in results.items()}
    gold = gold_spans(rows, labels)
    gold_scores = {k: gold_f1(r.entities, gold) for k, r in results.items()} if gold else {}
    int8_info = next((i for i in export_report.values() if i["precision"] == "int8"), {})
    gate = (int8_info.get("quantisation") or {}).get("gate")
    target_rows = rep.targets(results, gate)

    n_entities = sum(map(len, reference))
    n_tagged = sum(any(t != "O" and t in set(labels) for t in r["ner_tags"]) for r in rows)
    words = sorted(len(r["tokens"]) for r in rows)
    title = (f"{model} — {len(texts)} test sentences ({n_tagged} with a gold entity of the model's labels; "
             f"words per sentence median {words[len(words) // 2]}, max {words[-1]}; {n_entities} entities by ONNX fp32), "
             f"{datetime.now():%Y-%m-%d %H:%M}, {(time.time() - started) / 60:.1f} min")
    section = "\n\n".join([
        f"### {title}",
        f"Machine: {rep.describe_machine(info)}",
        rep.main_table(results, agreements),
        "Latency is per call: one sentence, except `batch 8` rows (eight sentences). Ratios compare sentences/s; "
        "the floor is ONNX Runtime in process at the same precision. Agreement: entities as (start, end, label) "
        "per sentence against ONNX Runtime fp32, one sentence per call.",
        "#### Targets (set for a 2-core machine)",
        rep.targets_table(target_rows),
        "#### Agreement and accuracy",
        rep.agreement_table(results, agreements, same, gold_scores),
        "The HF pipelines tag sub-words of the raw text and group them (`aggregation_strategy="
        f"\"{a.aggregation}\"`); our paths tag FiNER words (`7.00%` is the words `7.00` and `%`, BERT's pre-tokenizer "
        "makes `7 . 00 %` of it), so their spans can stop inside a number or merge neighbours: overlap F1 counts a "
        "same-label entity whose span overlaps as found. The HF pipeline also sees a whole sentence (up to 512 "
        "sub-tokens) where ours see windows of the trained length."
        + (" This model reads numbers as shape tokens (`finer.json`); the HF pipelines know nothing of that and "
           "feed it raw digits, so their agreement and F1 are not its real quality, only their speed counts."
           if exported.get("number_shapes") else "")
        + (f" Gold F1 is over {gold_scores[rep.REFERENCE]['gold_entities']} gold entities of the model's labels in "
           f"these sentences ({a.tagged_share:.0%} of the sample was drawn from sentences holding one)." if gold_scores else ""),
        "#### Where a served request's time goes (Triton statistics, mean per request)",
        rep.profile_table(results),
    ])
    (out / "bench.md").write_text(section + "\n")
    raw = {"model": str(model), "sentences": len(texts), "corpus": str(test), "machine": info, "targets": target_rows,
           "export": export_report, "agreement_vs_onnx_fp32": agreements, "agreement_vs_floor_same_precision": same,
           "gold": gold_scores,
           "results": {k: {**{f: getattr(r, f) for f in ("path", "label", "precision", "calls", "protocol", "users", "batch",
                                                        "seconds", "errors", "error", "server", "latencies_ms")},
                           "sentences_per_s": r.rate, "p50_ms": r.percentile(50), "p95_ms": r.percentile(95),
                           "p99_ms": r.percentile(99), "entities_per_sentence": [len(e) for e in r.entities]}
                       for k, r in results.items()}}
    (out / "bench.json").write_text(json.dumps(raw, indent=1, default=str))
    rep.plot(results, out / "bench.png", title)
    if a.benchmarks:
        rep.update_benchmarks(Path(a.benchmarks), section)
    print(section)
    print(f"\nwritten: {out}/bench.md, bench.json, bench.png" + (f"; {a.benchmarks} updated" if a.benchmarks else ""))
    return 1 if any(r.errors for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
