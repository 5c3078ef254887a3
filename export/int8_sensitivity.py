"""Which parts of the model lose accuracy under int8: quantise one group at a time, measure the harm.

    python -m export.int8_sensitivity runs/all_dapt/model --validation .cache/corpus/ixbrl/validation.jsonl

The exported fp32 graph's quantisable nodes fall into groups: each encoder layer's attention (the
fused `Attention` node and its output projection), each layer's feed-forward block (the two dense
MatMuls), and the classifier. For each group, a model is quantised with only that group in int8,
and its word tags on validation sentences are compared with fp32's: the share of words that could
be entities (`finer.words.may_be_entity`) whose tag changes, and the entity micro-F1 against the
gold tags. Groups are then ranked by harm; the table says which to keep in fp32 (`--int8-fp32`).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def word_tags_of(path: Path, tokenizer, config, documents: list[list[str]]) -> list[list[str]]:
    from finer.pipeline import Tagger
    from finer.runtime import ort_logits, session

    return Tagger(tokenizer, config, ort_logits(session(path))).word_tags(documents)


def changed_share(reference: list[list[str]], other: list[list[str]], documents: list[list[str]]) -> float:
    from finer.words import may_be_entity

    pairs = [(a, b) for ref, oth, doc in zip(reference, other, documents) for a, b, w in zip(ref, oth, doc)
             if may_be_entity(w)]
    return sum(a != b for a, b in pairs) / max(1, len(pairs))


def study(model: str, validation: Path, sentences: int, scratch: Path) -> list[dict]:
    """One row per group: the group, its nodes, the share of candidate words whose tag changes, and F1."""
    from finer.labels import OUTSIDE
    from training.metrics import entity_scores
    from export.build import build_fp32
    from export.gates import calibration_feeds, validation_rows
    from export.onnx_optimise import node_groups, quantise

    fp32 = build_fp32(model, scratch, tracking_uri="", max_length=None, stride=None, parity_data=None,
                      parity_sentences=16, timings={})
    rows = validation_rows(validation)
    feeds = calibration_feeds(rows, fp32.tokenizer, fp32.config)
    # Tagged sentences first (a stable sort keeps each group's order): one pass, not a list search per row.
    rows = sorted(rows, key=lambda r: all(t == OUTSIDE for t in r["ner_tags"]))[:sentences]
    known = set(fp32.config.labels)
    documents = [r["tokens"] for r in rows]
    gold = [[t if t in known else OUTSIDE for t in r["ner_tags"]] for r in rows]

    def measure(name: str, path: Path, nodes: list[str]) -> dict:
        tags = word_tags_of(path, fp32.tokenizer, fp32.config, documents)
        return {"group": name, "nodes": nodes, "changed": changed_share(reference, tags, documents),
                "f1": entity_scores(gold, tags)["micro avg"]["f1-score"]}

    reference = word_tags_of(fp32.path, fp32.tokenizer, fp32.config, documents)
    groups = node_groups(fp32.path)
    everything = [n for nodes in groups.values() for n in nodes]
    results = [{"group": "none (fp32)", "nodes": [], "changed": 0.0,
                "f1": entity_scores(gold, reference)["micro avg"]["f1-score"]}]
    for name, nodes in [("all", everything), *sorted(groups.items())]:
        path = scratch / f"int8-{name}.onnx"
        quantise(fp32.path, path, per_channel=True, embeddings=False, calibration=feeds,
                 exclude=[n for n in everything if n not in nodes])
        results.append(measure(name, path, nodes))
        print(f"  {name}: {results[-1]['changed']:.4f} of candidate words change, F1 {results[-1]['f1']:.4f}",
              file=sys.stderr, flush=True)
    return results


def table(results: list[dict], sentences: int) -> str:
    lines = [f"int8 one group at a time, {sentences} validation sentences (tagged first):", "",
             "| group in int8 | nodes | candidate words whose tag changes vs fp32 | entity micro-F1 |",
             "|---|---:|---:|---:|"]
    for r in sorted(results, key=lambda r: (r["group"] not in ("none (fp32)", "all"), -r["changed"])):
        lines.append(f"| {r['group']} | {len(r['nodes'])} | {100 * r['changed']:.2f}% | {r['f1']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.int8_sensitivity", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="trained model folder or MLflow URI")
    p.add_argument("--validation", type=Path, required=True, help="FiNER-format jsonl")
    p.add_argument("--sentences", type=int, default=1500, help="validation sentences, those with a tag first")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="finer-int8-") as scratch:
        results = study(a.model, a.validation, a.sentences, Path(scratch))
    print(table(results, a.sentences))
    ranked = sorted((r for r in results if r["group"] not in ("none (fp32)", "all")), key=lambda r: -r["changed"])
    print("\nmost harmful first: " + ", ".join(r["group"] for r in ranked))
    return 0


if __name__ == "__main__":
    sys.exit(main())
