"""Side-by-side benchmark: the same real sentences through every way of running the model, in one run.

    python -m loadtest.bench --model runs/debt/model --sentences 512 --out results/bench-<stamp>

Paths, each turning text into entities:
1. `hf-pipeline`: transformers' token-classification pipeline, PyTorch fp32, one sentence per call
   (the seed's way), `aggregation_strategy="simple"` as a user would set it;
2. `optimum-ort`: the same pipeline on optimum's ORTModelForTokenClassification;
3. the floor: `finer.pipeline.encode` -> ONNX Runtime -> `decode` in process, on the exported fp32
   and int8 `model.onnx`, one sentence per call and length-sorted batches of 8, with every thread the
   served model gets (instances x threads) in one session;
4. `served`: `python -m server` (front doors, supervisor, embedded Triton) as its own process on free
   ports, fp32 then int8, for each `--layouts` of finer_model (instances x ONNX Runtime threads), over
   gRPC and HTTP at 1, 4 and 16 concurrent users, one sentence per `AsyncFinerClient.tag()` call (the
   product's client, which sends no request for a text without a number); the server's resident memory is
   read after each load phase.

The model is exported (fp32 and int8, `export.build.export_model`, int8 F1 gate on the validation
split) into a temporary copy of the model repository; the project's repository is not touched.
Writes `<out>/bench.md`, `bench.json`, `bench.png`, the sentences and the Triton logs; `--benchmarks
BENCHMARKS.md` also replaces the results section of that file.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
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


def model_layout(repository: Path) -> tuple[int, int, int]:
    """finer_model's (instances, intra-op threads, inter-op threads) from its config.pbtxt."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse((repository / "finer_model" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    param = lambda key: int(config.parameters[key].string_value) if key in config.parameters else 0  # noqa: E731
    instances = sum(g.count for g in config.instance_group) or 1
    return instances, param("intra_op_thread_count"), param("inter_op_thread_count")


def floor_threads(repository: Path) -> tuple[int, int]:
    """The floor's ONNX Runtime threads: every thread the server's model instances get together, in one session."""
    instances, intra, inter = model_layout(repository)
    return instances * intra if intra else 0, inter


def parse_layout(text: str) -> tuple[int, int]:
    """'2x1' -> (2 instances, 1 thread each)."""
    try:
        instances, threads = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise BenchError(f"--layouts {text!r}: give INSTANCESxTHREADS, e.g. 1x2 or 2x1") from None
    if instances < 1 or threads < 1:
        raise BenchError(f"--layouts {text!r}: instances and threads must be at least 1")
    return instances, threads


def apply_layout(repository: Path, layout: str, spinning: bool = False) -> None:
    """Regenerate the repository's configs for `layout` of finer_model, windows as exported."""
    from dataclasses import replace

    from finer.pipeline import TaggerConfig
    from finer.serving import ServingSpec
    from export.triton_configs import write_configs

    instances, threads = parse_layout(layout)
    exported = TaggerConfig.load(repository / "finer_model" / "1")
    spec = ServingSpec(max_length=exported.max_length, stride=exported.stride)
    write_configs(repository, replace(spec, model_instances=instances, intra_op_threads=threads, spinning=spinning))


def export_both(model: Path, repository: Path, scratch: Path, validation: Path, max_validation: int | None) -> tuple[dict, dict]:
    """fp32 and int8 versions of `model`, each as version 1 of its own repository copy; and the export report."""
    from export.build import ExportError, export_model
    from export.repository import move_version, skeleton

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

    from loadtest.server_process import ServerExited, ServerProcess

    info["rss_mib"] = {}
    for precision in PRECISIONS:
        for layout in a.layouts:
            apply_layout(repos[precision], layout, a.spinning)
            _log(f"starting the server on the {precision} repository, finer_model {layout} (instances x threads) ...")
            try:
                with ServerProcess(repos[precision], out / f"triton-{precision}-{layout}.log") as server:
                    info.setdefault("triton", server.triton_version())
                    rss = info["rss_mib"][f"{precision} {layout}"] = []
                    for protocol in a.protocols:
                        for users in a.users:
                            keep(measure.served(server, precision, protocol, users, texts, a.warmup, layout=layout,
                                                layout_in_key=len(a.layouts) > 1))
                            rss.append((f"{protocol} {users}", sum(server.rss_mb().values())))
                    info.setdefault("stub_round_trip", {})[f"{precision} {layout}"] = measure.stub_round_trip(server)
            except ServerExited as e:
                raise BenchError(f"server ({precision}, {layout}): {e}") from None
    return results


def parse_list(text: str, kind=str) -> list:
    return [kind(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="trained model folder (runs/<name>/model)")
    which.add_argument("--render", metavar="RESULTS", help="only redo the tables of an earlier run from its bench.json")
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
    p.add_argument("--layouts", default=None,
                   help="finer_model layouts to serve, INSTANCESxTHREADS each, e.g. 1x2,2x1 (default: the repository's)")
    p.add_argument("--spinning", action="store_true",
                   help="let finer_model's idle ONNX Runtime threads spin, as the official container's backend does")
    p.add_argument("--aggregation", default="simple", help="the HF pipelines' aggregation_strategy (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=8, help="untimed calls per path before measuring (default: %(default)s)")
    p.add_argument("--repository", default=str(ROOT / "model_repository"), help="model repository to copy (default: the project's)")
    p.add_argument("--seed", type=int, default=13, help="sentence sample seed (default: %(default)s)")
    p.add_argument("--out", default=None, help="results folder (default: results/bench-<timestamp>)")
    p.add_argument("--benchmarks", default=None, help="also write the results section of this file (e.g. BENCHMARKS.md)")
    a = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if a.render:
        path = Path(a.render) / "bench.json"
        if not path.is_file():
            print(f"error: {path}: no such file; give the results folder of a bench run", file=sys.stderr)
            return 1
        raw = json.loads(path.read_text())
        return publish(raw, results_from(raw), Path(a.render), a.benchmarks)
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
        if a.layouts is None:
            instances, intra, _ = model_layout(repository)
            a.layouts = f"{instances}x{intra}"
        a.layouts = parse_list(a.layouts)
        for layout in a.layouts:
            parse_layout(layout)
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
            results = measure_all(a, model, texts, repos, floor_threads(repos["fp32"]), out, info)
        info["load_average_end"] = list(os.getloadavg())
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    from loadtest.compare import agreement, gold_f1, gold_spans

    reference = results[rep.REFERENCE].entities
    gold = gold_spans(rows, labels)
    known = set(labels)
    n_tagged = sum(any(t != "O" and t in known for t in r["ner_tags"]) for r in rows)
    words = sorted(len(r["tokens"]) for r in rows)
    title = (f"{model} — {len(texts)} test sentences ({n_tagged} with a gold entity of the model's labels; "
             f"words per sentence median {words[len(words) // 2]}, max {words[-1]}; {sum(map(len, reference))} entities "
             f"by ONNX fp32), {(time.time() - started) / 60:.1f} min")
    raw = {"title": title, "model": str(model), "arch": a.arch, "sentences": len(texts), "corpus": str(test),
           "aggregation": a.aggregation, "tagged_share": a.tagged_share, "spinning": a.spinning, "number_shapes": bool(exported.get("number_shapes")),
           "machine": info, "export": export_report,
           "agreement_vs_onnx_fp32": {k: agreement(r.entities, reference) for k, r in results.items()},
           "agreement_vs_floor_same_precision": {k: agreement(r.entities, results[f"onnx-{r.precision}-b1"].entities)
                                                 for k, r in results.items()},
           "gold": {k: gold_f1(r.entities, gold) for k, r in results.items()} if gold else {},
           "results": {k: {**{f: getattr(r, f) for f in RESULT_FIELDS},
                           "sentences_per_s": r.rate, "p50_ms": r.percentile(50), "p95_ms": r.percentile(95),
                           "p99_ms": r.percentile(99), "entities_per_sentence": [len(e) for e in r.entities]}
                       for k, r in results.items()}}
    return publish(raw, results, out, a.benchmarks)


RESULT_FIELDS = ("path", "label", "precision", "calls", "protocol", "users", "batch", "seconds", "errors", "error", "server",
                 "latencies_ms", "layout", "sent_ms")


def results_from(raw: dict) -> dict:
    """The measured rows of a bench.json as Results (entities only counted: the agreement figures are stored)."""
    from loadtest.measure import Result

    out = {}
    for key, r in raw["results"].items():
        out[key] = Result(key, **{f: r[f] for f in RESULT_FIELDS if f in r}, entities=[()] * len(r["entities_per_sentence"]))
    return out


def publish(raw: dict, results: dict, out: Path, benchmarks: str | None) -> int:
    """bench.json, bench.md, bench.png and (with `benchmarks`) the run's section of that file; the section is
    rendered from bench.json's figures alone, so `--render` can redo it."""
    from loadtest import report as rep

    int8_info = next((i for i in raw["export"].values() if i["precision"] == "int8"), {})
    gate = (int8_info.get("quantisation") or {}).get("gate")
    # A randomly initialised model (--arch) has no accuracy to keep: its gate figures are not a target.
    raw["targets"] = rep.targets(results, None if raw.get("arch") else gate, raw["machine"].get("rss_mib"),
                                 raw["machine"].get("stub_round_trip"))
    info, gold_scores = raw["machine"], raw["gold"]
    agreements = raw["agreement_vs_onnx_fp32"]
    section = "\n\n".join([
        f"### {raw['title']}",
        f"Machine: {rep.describe_machine(info)}",
        rep.main_table(results, agreements),
        "Latency is per call: one sentence, except `batch 8` rows (eight sentences). Ratios compare sentences/s; "
        "the floor is ONNX Runtime in process at the same precision, with every thread the served model gets. "
        "Agreement: entities as (start, end, label) per sentence against ONNX Runtime fp32, one sentence per call. "
        "Served rows name finer_model's layout: instances x ONNX Runtime threads each; idle threads "
        # a bench.json from before the setting existed was measured with spinning threads
        + ("spin, as in the official container." if raw.get("spinning", True) else "sleep (`session.intra_op.allow_spinning=0`)."),
        "#### Targets (set for a 2-core machine)",
        rep.targets_table(raw["targets"]),
        "#### Agreement and accuracy",
        rep.agreement_table(results, agreements, raw["agreement_vs_floor_same_precision"], gold_scores),
        "The HF pipelines tag sub-words of the raw text and group them (`aggregation_strategy="
        f"\"{raw['aggregation']}\"`); our paths tag FiNER words (`7.00%` is the words `7.00` and `%`, BERT's pre-tokenizer "
        "makes `7 . 00 %` of it), so their spans can stop inside a number or merge neighbours: overlap F1 counts a "
        "same-label entity whose span overlaps as found. The HF pipeline also sees a whole sentence (up to 512 "
        "sub-tokens) where ours see windows of the trained length."
        + (" This model reads numbers as shape tokens (`finer.json`); the HF pipelines know nothing of that and "
           "feed it raw digits, so their agreement and F1 are not its real quality, only their speed counts."
           if raw["number_shapes"] else "")
        + (" Its weights are random (`--arch`): the entities are noise, only the speed counts." if raw.get("arch") else "")
        + (f" Gold F1 is over {gold_scores[rep.REFERENCE]['gold_entities']} gold entities of the model's labels in "
           f"these sentences ({raw['tagged_share']:.0%} of the sample was drawn from sentences holding one)."
           if gold_scores and not raw.get("arch") else ""),
        "#### Where a served request's time goes (Triton statistics, mean per request)",
        rep.profile_table(results),
        rep.round_trip_note(info.get("stub_round_trip") or {}, results),
        "#### Server memory over the load phases (resident, all of its processes)",
        rep.memory_table(info.get("rss_mib") or {}),
    ])
    (out / "bench.md").write_text(section + "\n")
    (out / "bench.json").write_text(json.dumps(raw, indent=1, default=str))
    rep.plot(results, out / "bench.png", raw["title"])
    if benchmarks:  # each model size has a section of its own
        tag = f"bench:{raw['arch']}" if raw.get("arch") else "bench"
        rep.update_benchmarks(Path(benchmarks), section, (f"<!-- {tag}:start -->", f"<!-- {tag}:end -->"))
    print(section)
    print(f"\nwritten: {out}/bench.md, bench.json, bench.png" + (f"; {benchmarks} updated" if benchmarks else ""))
    return 1 if any(r.errors for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
