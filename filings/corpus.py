"""Build a FiNER-format corpus from a folder of inline-XBRL filings, split by company.

    python -m filings.corpus --filings ../shared/data/ixbrl --out .cache/corpus/ixbrl

Writes train/validation/test.jsonl (one sentence per line: tokens, ner_tags as label names,
company, cik, form, period, source) and stats.json. Companies repeat paragraphs across their
filings, so exact repeats within a company are dropped and every company lands in one split only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from finer.labels import DEBT_TYPES, OUTSIDE, finer_types
from filings.cache import FilingCache
from filings.ixbrl import Filing, FilingError, load_manifest, read_filing

DEFAULT_OUT = Path(".cache/corpus/ixbrl")
# Converted filings, shared by every build (keyed by content, so corpora with other settings or
# folders reuse what matches and never what does not).
DEFAULT_CACHE = Path(".cache/corpus/filings")
# 12% test: at least 300 debt entities from at least 30 companies on the 555 shared filings.
DEFAULT_SPLIT = (0.78, 0.10, 0.12)
SPLITS = ("train", "validation", "test")
PATTERNS = ("*.htm", "*.htm.gz", "*.html", "*.html.gz")


class CorpusError(Exception):
    """A user-facing problem (bad folder, nothing usable): one line, no traceback."""


# A type held by at least this many companies is seeded into every split, so each can score it.
MIN_HOLDERS_PER_SPLIT = 3


@dataclass
class Company:
    key: str
    name: str
    sentences: int = 0
    tagged: int = 0
    types: Counter = field(default_factory=Counter)  # entities per FiNER type

    @property
    def debt(self) -> Counter:
        """Entities per debt type (those present)."""
        return Counter({t: self.types[t] for t in DEBT_TYPES if self.types[t]})


# ---------------------------------------------------------------- reading in parallel


def find_filings(filings_dir: Path) -> list[Path]:
    found = {p for pattern in PATTERNS for p in filings_dir.rglob(pattern) if p.is_file()}
    return sorted(found)


def find_manifest(filings_dir: Path) -> Path | None:
    for folder in (filings_dir, filings_dir.parent):
        if (folder / "manifest.tsv").is_file():
            return folder / "manifest.tsv"
    return None


def _read_one(job: tuple[str, dict | None, bool]) -> tuple[str, Filing | None, str]:
    path, row, durations = job
    try:
        return path, read_filing(path, row, durations=durations), ""
    except FilingError as exc:
        return path, None, str(exc)
    except Exception as exc:  # a corrupt file must cost one skip, not the whole build
        return path, None, f"{type(exc).__name__}: {exc}"


def read_all(paths: list[Path], manifest: dict, workers: int, progress: bool,
             durations: bool = True, cache: FilingCache | None = None):
    """(path, Filing or None, skip reason) per file, in path order whatever the worker timing.

    With a cache, a filing converted before (same bytes, same reader code, same settings) is
    loaded instead of parsed, and each newly parsed one is stored as soon as it is done, so an
    interrupted build resumes where it stopped."""
    jobs, results = [], []
    for p in paths:
        job = (str(p), manifest.get(p.name), durations)
        hit = cache.get(job) if cache else None
        if hit is not None:
            results.append((job[0], *hit))
        else:
            jobs.append(job)
    jobs.sort(key=lambda j: -Path(j[0]).stat().st_size)  # big files first: better load balance
    # disable=None: no bar when stderr is not a terminal (logs, CI)
    bar = tqdm(total=len(paths), initial=len(results), desc="filings", unit="file",
               disable=None if progress else True)

    def done(job, result):
        results.append(result)
        if cache:
            cache.put(job, result[1], result[2])
        bar.update()

    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            done(job, _read_one(job))
    elif jobs:
        by_path = {j[0]: j for j in jobs}
        with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            for result in pool.imap_unordered(_read_one, jobs):
                done(by_path[result[0]], result)
    bar.close()
    return sorted(results, key=lambda r: r[0])


# ---------------------------------------------------------------- split by company


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def assign_splits(companies: dict[str, Company], fractions: tuple[float, ...],
                  seed: int) -> tuple[dict[str, str], list[str]]:
    """Company -> split. Deterministic: companies are taken in seeded-hash order.

    1. Each FiNER type held by at least MIN_HOLDERS_PER_SPLIT companies (debt types always;
       rarest first) is seeded into train, test and validation (in that priority) with its
       smallest holder, while holders last, so every split can score it.
    2. Any split still empty gets the next company.
    3. The rest go one by one to the split furthest below its share (relative shortfall summed
       over tagged sentences, all sentences, companies holding a debt entity and the entities
       of each debt type).
    Returns the assignment and notes on what could not be met.
    """
    active = [s for s, f in zip(SPLITS, fractions) if f > 0]
    share = dict(zip(SPLITS, fractions))
    order = sorted(companies, key=lambda k: _rank(seed, k))
    if len(order) < len(active):
        raise CorpusError(f"{len(order)} companies cannot fill {len(active)} splits by company; "
                          "add filings of more companies or set a split fraction to 0")
    assign: dict[str, str] = {}
    notes: list[str] = []
    priority = [s for s in ("train", "test", "validation") if s in active]
    types = sorted({t for c in companies.values() for t in c.types} | set(DEBT_TYPES))
    holders_of = {t: [k for k in order if companies[k].types[t]] for t in types}
    seeded = [t for t in types if t in DEBT_TYPES or len(holders_of[t]) >= MIN_HOLDERS_PER_SPLIT]
    for kind in sorted(seeded, key=lambda t: (len(holders_of[t]), t)):
        for split in priority:
            if any(assign.get(k) == split for k in holders_of[kind]):
                continue
            free = [k for k in holders_of[kind] if k not in assign]
            if not free:
                notes.append(f"{kind}: no company left for {split}")
                continue
            # the smallest holder: presence in every split without tipping the balance
            assign[min(free, key=lambda k: companies[k].types[kind])] = split
    for split in active:
        if split not in assign.values():
            assign[next(k for k in order if k not in assign)] = split

    def measures(c: Company) -> Counter:
        return Counter(tagged=c.tagged, sentences=c.sentences, debt_holders=int(bool(c.debt)), **c.debt)

    totals = sum((measures(c) for c in companies.values()), Counter())
    have = {s: Counter() for s in active}
    for key, split in assign.items():
        have[split].update(measures(companies[key]))
    for key in order:
        if key in assign:
            continue
        # relative shortfall: a 10% split missing half its share counts as much as an 80% one
        split = max(active, key=lambda s: sum(max(0.0, 1 - have[s][m] / (share[s] * n))
                                              for m, n in totals.items() if n))
        assign[key] = split
        have[split].update(measures(companies[key]))
    return assign, notes


# ---------------------------------------------------------------- build


def _parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0:
        raise CorpusError(f"--split {text!r}: give three non-negative fractions, e.g. 0.8,0.1,0.1")
    total = sum(parts)
    return tuple(p / total for p in parts)


def build_corpus(filings_dir: str | Path, out_dir: str | Path = DEFAULT_OUT, *,
                 split: tuple[float, float, float] | str = DEFAULT_SPLIT, seed: int = 13,
                 workers: int = 2, manifest: str | Path | None = None,
                 durations: bool = True, progress: bool = True,
                 cache_dir: str | Path | None = None) -> dict:
    """Read every filing under `filings_dir`, write the split corpus to `out_dir`, return stats.

    With `cache_dir` (the CLI's default: DEFAULT_CACHE), converted filings are kept there and
    reused by the next build, so an interrupted or repeated build parses only what is new.

    Raises CorpusError when the folder is missing/empty or nothing usable was found.
    """
    started = time.perf_counter()
    filings_dir, out_dir = Path(filings_dir), Path(out_dir)
    fractions = _parse_fractions(split) if isinstance(split, str) else _parse_fractions(
        ",".join(str(x) for x in split))
    if not filings_dir.is_dir():
        raise CorpusError(f"{filings_dir}: not a folder (point --filings at a folder of "
                          ".htm/.htm.gz filings)")
    try:
        paths = find_filings(filings_dir)
    except OSError as exc:
        raise CorpusError(f"{filings_dir}: cannot read folder: {exc}") from None
    if not paths:
        raise CorpusError(f"{filings_dir}: no filings found (looked for {', '.join(PATTERNS)})")
    manifest_path = Path(manifest) if manifest else find_manifest(filings_dir)
    try:
        rows = load_manifest(manifest_path) if manifest_path else {}
    except (OSError, ValueError) as exc:
        raise CorpusError(f"{manifest_path}: unreadable manifest ({exc}); fix it or pass "
                          "--manifest of a valid one") from None

    filing_cache = FilingCache(cache_dir) if cache_dir else None
    results = read_all(paths, rows, workers, progress, durations, filing_cache)
    skipped = [{"source": Path(p).name, "reason": reason} for p, f, reason in results if f is None]
    filings = [f for _, f, _ in results if f is not None]
    if not any(f.sentences for f in filings):
        reasons = "; ".join(f"{s['source']}: {s['reason']}" for s in skipped[:3])
        raise CorpusError(f"{filings_dir}: no usable filing among {len(paths)} files"
                          + (f" ({reasons})" if reasons else " (no narrative text found)"))

    # Exact repeats within a company (same words, same tags) are dropped, first copy kept.
    seen: dict[str, set] = defaultdict(set)
    companies: dict[str, Company] = {}
    kept: dict[str, list[dict]] = defaultdict(list)
    counts: Counter = Counter()
    for filing in filings:
        key = filing.meta.company_key
        company = companies.setdefault(key, Company(key, filing.meta.company))
        counts.update(filing.counts)
        for sent in filing.sentences:
            tagged = any(t != OUTSIDE for t in sent["ner_tags"])
            fingerprint = (tuple(sent["tokens"]), tuple(sent["ner_tags"]))
            if fingerprint in seen[key]:
                counts["duplicates_dropped"] += 1
                counts["tagged_duplicates_dropped"] += tagged
                continue
            seen[key].add(fingerprint)
            kept[key].append(sent)
            company.sentences += 1
            company.tagged += tagged
            company.types.update(t[2:] for t in sent["ner_tags"] if t.startswith("B-"))
    companies = {k: c for k, c in companies.items() if c.sentences}

    assign, notes = assign_splits(companies, fractions, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    split_stats = {}
    for split in SPLITS:
        keys = sorted((k for k, s in assign.items() if s == split),
                      key=lambda k: companies[k].name.lower())
        entities: Counter = Counter()
        n = n_tagged = 0
        with open(out_dir / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for key in keys:
                for sent in kept[key]:
                    fh.write(json.dumps(sent, ensure_ascii=False) + "\n")
                    b_tags = [t[2:] for t in sent["ner_tags"] if t.startswith("B-")]
                    entities.update(b_tags)
                    n += 1
                    n_tagged += any(t != OUTSIDE for t in sent["ner_tags"])
        split_stats[split] = {
            "sentences": n,
            "tagged_sentences": n_tagged,
            "entities": sum(entities.values()),
            "debt_entities": {t: entities[t] for t in DEBT_TYPES},
            "debt_companies": sum(1 for k in keys if companies[k].debt),
            "entities_per_label": dict(entities.most_common()),
            "companies": [companies[k].name for k in keys],
            "company_keys": keys,
        }

    stats = {
        "filings_dir": str(filings_dir.resolve()),
        "out_dir": str(out_dir),
        "manifest": str(manifest_path) if manifest_path else None,
        "seed": seed,
        "durations": durations,
        "split_fractions": dict(zip(SPLITS, fractions)),
        "split_method": (
            "by company (cik, else ticker, else name): companies ordered by sha256(seed:key); "
            "each debt type seeded, rarest first, into train, test, validation with its smallest "
            "holder, then every FiNER type held by at least "
            f"{MIN_HOLDERS_PER_SPLIT} companies likewise; the rest greedily to the split furthest "
            "below its share (relative shortfall summed over tagged sentences, all sentences, "
            "companies holding a debt entity and each debt type's entities)"),
        "split_notes": notes,
        "filings": {"found": len(paths), "read": len(filings), "skipped": skipped,
                    "from_cache": filing_cache.hits if filing_cache else 0},
        "facts": {k: counts[k] for k in ("nonfraction_facts", "narrative_usgaap_facts",
                                          "narrative_finer_facts",
                                          "narrative_duration_facts", "nested_finer_facts",
                                          "short_block_finer_facts", "facts_across_blocks",
                                          "durations_without_number")},
        "sentences": {
            "read": counts["sentences"],
            "entities_read": counts["entities"],
            "duplicates_dropped": counts["duplicates_dropped"],
            "tagged_duplicates_dropped": counts["tagged_duplicates_dropped"],
            "kept": sum(s["sentences"] for s in split_stats.values()),
            "tagged_kept": sum(s["tagged_sentences"] for s in split_stats.values()),
        },
        "finer_types_seen": len({t for s in split_stats.values() for t in s["entities_per_label"]}),
        "finer_types_total": len(finer_types()),
        "splits": split_stats,
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m filings.corpus",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--filings", required=True, type=Path,
                        help="folder searched recursively for *.htm, *.htm.gz, *.html")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--split", default=",".join(map(str, DEFAULT_SPLIT)),
                        help="train,validation,test fractions (default %(default)s)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--manifest", type=Path,
                        help="manifest.tsv with company/cik/form/period_end (default: found "
                             "in or above --filings; else the filings' dei facts)")
    parser.add_argument("--no-durations", dest="durations", action="store_false",
                        help="tag ix:nonFraction facts only; by default FiNER-type durations "
                             "(ix:nonNumeric, e.g. 'four years' vesting) are tagged too, on "
                             "their number words")
    parser.add_argument("--top", type=int, default=15, help="labels listed in the summary")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help="converted filings reused across builds (default %(default)s)")
    parser.add_argument("--no-cache", dest="cache_dir", action="store_const", const=None,
                        help="parse every filing again and store nothing")
    args = parser.parse_args(argv)
    try:
        stats = build_corpus(args.filings, args.out, split=args.split, seed=args.seed,
                             workers=args.workers, manifest=args.manifest,
                             durations=args.durations, cache_dir=args.cache_dir)
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from filings.report import summary

    print(summary(stats, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
