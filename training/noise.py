"""How noisy are the `O` labels on numbers? Filers tag some numbers of a sentence and not others.

    python -m training.noise --data .cache/corpus/ixbrl --scope debt

Counts, in sentences that hold a tagged number of the scope, the numbers left untagged (years such
as 2023 counted apart: they are rarely a fact). A high share means an `O` on a number is weak
evidence, which is what `--numeric_o_weight` in training acts on.
"""
from __future__ import annotations

import argparse
import re
import sys
from typing import Sequence

from finer.labels import LabelScope, entity_type
from finer.words import is_number

_YEAR_RE = re.compile(r"^(19|20)\d\d$")


def untagged_numbers(rows: Sequence[dict], scope: LabelScope) -> dict[str, float]:
    wanted = set(scope.types)
    s = dict(sentences=0, with_untagged=0, tagged=0, untagged=0, untagged_years=0, untagged_other_tags=0)
    for r in rows:
        tags = [(w, t) for w, t in zip(r["tokens"], r["ner_tags"]) if is_number(w)]
        if not any(entity_type(t) in wanted for _, t in tags):
            continue
        s["sentences"] += 1
        loose = False
        for w, t in tags:
            if entity_type(t) in wanted:
                s["tagged"] += 1
            elif t != "O":
                s["untagged_other_tags"] += 1  # tagged, but with a type outside the scope
            elif _YEAR_RE.match(w):
                s["untagged_years"] += 1
            else:
                s["untagged"] += 1
                loose = True
        s["with_untagged"] += loose
    s["share_sentences_with_untagged"] = s["with_untagged"] / max(1, s["sentences"])
    s["untagged_per_tagged"] = s["untagged"] / max(1, s["tagged"])
    return s


def main(argv: list[str] | None = None) -> int:
    from filings.sources import DataError, LoadReport, load_splits, resolve_source

    p = argparse.ArgumentParser(prog="python -m training.noise", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="hub")
    p.add_argument("--scope", default="debt")
    a = p.parse_args(argv)
    try:
        scope = LabelScope.parse(a.scope)
        splits = load_splits(resolve_source(a.data), LoadReport())
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("| split | sentences with a tagged number | of which with an untagged number | tagged | untagged (not years) | untagged years | other types |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in sorted(splits, key=lambda n: ("train", "validation", "test").index(n) if n in ("train", "validation", "test") else 3):
        s = untagged_numbers(splits[name], scope)
        print(f"| {name} | {s['sentences']} | {s['with_untagged']} ({s['share_sentences_with_untagged']:.0%}) | "
              f"{s['tagged']} | {s['untagged']} | {s['untagged_years']} | {s['untagged_other_tags']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
