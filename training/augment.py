"""Number-value and benchmark-name augmentation of training sentences.

A model trained on a few hundred filings memorises values ("7.00" is a stated rate because that
company's notes pay 7.00%) and era-specific words (LIBOR in FiNER's 2016-20 filings, SOFR since
2022). Copies of the tagged sentences with each entity number replaced by another value of the
same entity type, and the benchmark rate renamed, teach the context instead.
"""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Sequence

from finer.labels import LabelScope, entity_type
from finer.words import is_number

# One-word reference rates; swapped among themselves (case kept: filers write LIBOR, Libor, SOFR).
BENCHMARKS = ("LIBOR", "SOFR", "EURIBOR", "SONIA", "CDOR", "BSBY", "SARON", "HIBOR", "TIBOR", "BBSY")
_BENCHMARK_KEYS = {b.lower() for b in BENCHMARKS}


def _entity_numbers(row: dict, wanted: set[str]) -> list[tuple[int, str]]:
    """(word index, type) of each single-number entity of the wanted types in `row`."""
    return [(i, entity_type(t)) for i, (w, t) in enumerate(zip(row["tokens"], row["ner_tags"]))
            if t.startswith("B-") and entity_type(t) in wanted and is_number(w)]


def value_pools(rows: Sequence[dict], scope: LabelScope) -> dict[str, list[str]]:
    """The numbers tagged with each type of the scope in `rows` (the values a copy may take)."""
    wanted = set(scope.types)
    pools: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        for i, kind in _entity_numbers(r, wanted):
            pools[kind].add(r["tokens"][i])
    return {t: sorted(v) for t, v in pools.items()}


def _benchmark(word: str, rng: random.Random) -> str:
    other = rng.choice([b for b in BENCHMARKS if b.lower() != word.lower()])
    return other if word.isupper() else other.capitalize()


def augment(rows: Sequence[dict], scope: LabelScope, copies: int, seed: int = 13) -> list[dict]:
    """`copies` altered copies of each sentence that holds a single-word entity number of the scope.
    Tags are unchanged: one word is replaced by one word."""
    if copies <= 0:
        return []
    rng = random.Random(seed)
    pools = value_pools(rows, scope)
    wanted = set(scope.types)
    out = []
    for r in rows:
        slots = [(i, kind) for i, kind in _entity_numbers(r, wanted) if len(pools.get(kind, ())) > 1]
        if not slots:
            continue
        for _ in range(copies):
            tokens = list(r["tokens"])
            for i, kind in slots:
                pool = pools[kind]
                tokens[i] = rng.choice([v for v in rng.sample(pool, min(3, len(pool))) if v != tokens[i]] or pool)
            for i, w in enumerate(tokens):
                if w.lower() in _BENCHMARK_KEYS:
                    tokens[i] = _benchmark(w, rng)
            out.append({**r, "tokens": tokens})
    return out
