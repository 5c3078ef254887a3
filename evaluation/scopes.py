"""Derive the `debt-family` label scope from the data: the debt tags and their confusable neighbours.

    python -m evaluation.scopes --data .cache/corpus/ixbrl --model runs/serve/model \
        --finer-sample ../shared/data/finer139-train-sample/finer_train_batched_500.jsonl

A debt-only model has no label for the other numbers of a debt note (a rate at period end, a
weighted-average rate, a commitment fee, a face amount, an amount drawn), so it reads them as the
nearest debt tag. The family gives them labels of their own: every FiNER type that a debt-only
model (`--model`) reads as a debt tag at least `--min-confusions` times on the validation split
and the sample's train part, or with at least `--min-count` entities inside the training sentences
that hold a debt tag: the numbers a debt model must tell apart from its own. Written to finer/data/scopes.json (`LabelScope.parse` reads
it), with the counts and the command, so the list is regenerated, never edited by hand.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from finer.labels import DEBT_TYPES, SCOPES_FILE, entity_type
from filings.sources import DataError, LoadReport, load_splits, resolve_source
from filings.finer_sample import load_sample

FAMILY = "debt-family"


def neighbour_counts(rows: list[dict]) -> Counter:
    """Entities of each non-debt type in the sentences that hold a debt tag."""
    counts: Counter = Counter()
    for r in rows:
        types = [entity_type(t) for t in r["ner_tags"] if t.startswith("B-")]
        if any(t in DEBT_TYPES for t in types):
            counts.update(t for t in types if t not in DEBT_TYPES)
    return counts


def confusion_counts(model_dir: str, rows: list[dict]) -> Counter:
    """Entities of each non-debt type that the debt model `model_dir` tags as a debt type (first word)."""
    from finer.pipeline import TaggerConfig, plain_tokenizer
    from finer.spans import tag_spans
    from evaluation.evaluate import predict
    from training.models import load_model, torch_logits

    rows = [r for r in rows if any(t.startswith("B-") and entity_type(t) not in DEBT_TYPES for t in r["ner_tags"])]
    model, tokenizer = load_model(model_dir)
    pred = predict(torch_logits(model), plain_tokenizer(tokenizer.backend_tokenizer), rows,
                   TaggerConfig.load(model_dir), desc="confusions of the debt model")
    counts: Counter = Counter()
    for r, p in zip(rows, pred):
        for kind, first, _ in tag_spans(r["ner_tags"]):
            counts[kind] += kind not in DEBT_TYPES and entity_type(p[first]) in DEBT_TYPES
    return +counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation.scopes", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="FiNER-format data ('hub' or a folder); its train split is read")
    p.add_argument("--finer-sample", default="", help="FiNER question-batch file; its train part is read too")
    p.add_argument("--model", default="", help="a debt-scope model folder whose confusions are counted")
    p.add_argument("--min-count", type=int, default=20)
    p.add_argument("--min-confusions", type=int, default=5)
    p.add_argument("--out", default=str(SCOPES_FILE))
    a = p.parse_args(argv)
    try:
        splits = load_splits(resolve_source(a.data), LoadReport())
        rows, held_out = splits["train"], splits["validation"]
    except (DataError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if a.finer_sample:
        sample = load_sample(a.finer_sample)["train"]
        rows, held_out = rows + sample, held_out + sample
    counts = neighbour_counts(rows)
    confused = confusion_counts(a.model, held_out) if a.model else Counter()
    family = sorted({t for t, n in counts.items() if n >= a.min_count}
                    | {t for t, n in confused.items() if n >= a.min_confusions},
                    key=lambda t: (-confused[t], -counts[t], t))
    command = " ".join(["python -m evaluation.scopes", *(argv if argv is not None else sys.argv[1:])])
    out = Path(a.out)
    scopes = json.loads(out.read_text()) if out.is_file() else {}
    scopes[FAMILY] = {"types": [*DEBT_TYPES, *family], "command": command, "min_count": a.min_count,
                      "min_confusions": a.min_confusions,
                      "neighbour_counts": dict(counts.most_common(len(family) + 10)),
                      "confusion_counts": dict(confused.most_common(len(family) + 10))}
    out.write_text(json.dumps(scopes, indent=1) + "\n")
    print(f"{FAMILY}: the 4 debt types and {len(family)} neighbours (read as debt by the model / in debt sentences):")
    for t in family:
        print(f"  {confused[t]:>5} {counts[t]:>5}  {t}")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
