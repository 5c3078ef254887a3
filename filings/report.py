"""The corpus builder's summary: sentences, entities per type and companies per split, and what was skipped."""
from __future__ import annotations

from collections import Counter

from finer.labels import DEBT_TYPES
from filings.ixbrl import MIN_BLOCK_CHARS, MIN_BLOCK_WORDS


def summary(stats: dict, top: int = 15) -> str:
    splits = stats["splits"]
    SPLITS = list(splits)  # noqa: N806 - the corpus's splits, in the order it wrote them
    lines = [f"corpus in {stats['out_dir']}  ({stats['wall_time_s']} s)", ""]
    row = "{:<48}" + "{:>12}" * len(SPLITS)
    lines.append(row.format("", *SPLITS))
    lines.append(row.format("companies", *(len(splits[s]["company_keys"]) for s in SPLITS)))
    lines.append(row.format("sentences (all)", *(splits[s]["sentences"] for s in SPLITS)))
    lines.append(row.format("sentences with a tag",
                            *(splits[s]["tagged_sentences"] for s in SPLITS)))
    lines.append(row.format("entities (B- tags)", *(splits[s]["entities"] for s in SPLITS)))
    lines.append(row.format("companies with a debt entity",
                            *(splits[s]["debt_companies"] for s in SPLITS)))
    lines.append(row.format("FiNER types present", *(len(splits[s]["entities_per_label"]) for s in SPLITS)))
    lines.append("debt types:")
    for t in DEBT_TYPES:
        lines.append(row.format("  " + t, *(splits[s]["debt_entities"][t] for s in SPLITS)))
    total = Counter()
    for s in SPLITS:
        total.update(splits[s]["entities_per_label"])
    lines.append(f"top {top} of {len(total)} labels:")
    for label, _ in total.most_common(top):
        name = label if len(label) <= 46 else label[:22] + "…" + label[-23:]
        lines.append(row.format("  " + name, *(splits[s]["entities_per_label"].get(label, 0)
                                               for s in SPLITS)))
    sent, facts = stats["sentences"], stats["facts"]
    lines.append("")
    lines.append(f"narrative FiNER facts tagged: {facts['narrative_finer_facts']} (durations "
                 f"{facts['narrative_duration_facts']}; nested facts on an already tagged number: "
                 f"{facts['nested_finer_facts']}; in blocks under {MIN_BLOCK_WORDS} words/"
                 f"{MIN_BLOCK_CHARS} chars: {facts['short_block_finer_facts']})")
    lines.append(f"filings: {stats['filings']['read']} read of {stats['filings']['found']} "
                 f"({stats['filings'].get('from_cache', 0)} from the cache); "
                 f"repeats dropped within a company: {sent['duplicates_dropped']} "
                 f"({sent['tagged_duplicates_dropped']} tagged)")
    for skip in stats["filings"]["skipped"]:
        lines.append(f"  skipped {skip['source']}: {skip['reason']}")
    for note in stats["split_notes"]:
        lines.append(f"  split note: {note}")
    return "\n".join(lines)
