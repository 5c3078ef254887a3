"""Padding waste of length buckets, measured on the corpus: which buckets the windows should pad to.

    python -m loadtest.padding --version model_repository/finer_model/1 [--corpus .cache/corpus/ixbrl/test.jsonl]

Every window is padded to the smallest bucket that holds the longest window of its request (equal
shapes are what Triton's batcher merges). This tokenises a sample of the corpus's sentences that
can hold an entity (those the client sends), then for each candidate bucket set reports, for one
sentence per request (a Locust user, the web app's paste) and for `client.plan`'s packing of all
of them into requests (a batch job, a filing check): the share of padded positions, and attention's
quadratic cost (sum of length squared) relative to no padding at all.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from finer.serving import ServingSpec
from finer.windows import bucket_length
from loadtest.sentences import DEFAULT_CORPUS, read_corpus

CANDIDATES = [(32, 64, 128), (16, 32, 64, 128), (24, 48, 80, 128), (32, 48, 64, 96, 128), (16, 24, 32, 48, 64, 96, 128)]


def window_lengths(version: Path, texts: list[str]) -> list[list[int]]:
    """Each text's window lengths (special tokens included) as finer_preprocess makes them."""
    from finer.pipeline import TaggerConfig, encode, load_tokenizer
    from finer.words import split_words

    config, tokenizer = TaggerConfig.load(version), load_tokenizer(version / "tokenizer.json")
    out = []
    for text in texts:
        encoded = encode(tokenizer, [[w.text for w in split_words(text)]], config)
        out.append([int(m.sum()) for m in encoded.attention_mask])
    return out


def cost(requests: list[list[int]], buckets) -> tuple[float, float]:
    """(padded share of positions, sum of L^2 padded / sum of L^2 unpadded) over the requests."""
    real = padded = real_sq = padded_sq = 0
    for lengths in requests:
        length = bucket_length(max(lengths), buckets)
        real += sum(lengths)
        padded += length * len(lengths)
        real_sq += sum(n * n for n in lengths)
        padded_sq += length * length * len(lengths)
    return 1 - real / padded, padded_sq / real_sq


def packed(per_text: list[list[int]], texts: list[str]) -> list[list[int]]:
    """The window lengths of each request `client.plan` makes of all the texts."""
    from client.plan import Limits, plan

    spec = ServingSpec()
    index = {t: i for i, t in enumerate(texts)}
    requests = plan(texts, Limits(spec.max_documents, spec.max_windows))
    return [[n for piece in request for n in per_text[index[piece.text]]] for request in requests]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.padding", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", type=Path, required=True, help="an exported finer_model version folder (its tokenizer)")
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS / "test.jsonl")
    p.add_argument("--sentences", type=int, default=4000)
    a = p.parse_args(argv)
    from finer.words import may_be_entity

    rows = [r for r in read_corpus(a.corpus, a.sentences * 3) if any(map(may_be_entity, r["tokens"]))][: a.sentences]
    texts = list(dict.fromkeys(r["text"] for r in rows))
    per_text = window_lengths(a.version, texts)
    lengths = np.array([n for ws in per_text for n in ws])
    print(f"{len(texts)} sentences with a number from {a.corpus}, {len(lengths)} windows; sub-tokens per window: "
          f"p50 {np.percentile(lengths, 50):.0f}, p90 {np.percentile(lengths, 90):.0f}, p99 {np.percentile(lengths, 99):.0f}, "
          f"max {lengths.max()}\n")
    singles, batch = [[n] for ws in per_text for n in ws], packed(per_text, texts)
    print("| buckets | 1 sentence/request: padded share | attention cost x | packed by client.plan: padded share | attention cost x |")
    print("|---|---:|---:|---:|---:|")
    for buckets in CANDIDATES:
        s, b = cost(singles, buckets), cost(batch, buckets)
        print(f"| {'/'.join(map(str, buckets))} | {100 * s[0]:.1f}% | {s[1]:.2f} | {100 * b[0]:.1f}% | {b[1]:.2f} |")
    served = ServingSpec().buckets
    share = Counter(bucket_length(n, served) for n in lengths)
    print(f"\nwindows per served bucket ({'/'.join(map(str, served))}): "
          + ", ".join(f"{k}: {100 * v / len(lengths):.1f}%" for k, v in sorted(share.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
