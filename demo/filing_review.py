"""The "Check a filing" tab: an inline-XBRL 10-K/10-Q, tagged through the server, against the filer's own tags.

The narrative sentences come from `filings.ixbrl.read_filing`, the corpus builder's own reader, so
the app sees the filing exactly as training and evaluation did. The filer's tags are every us-gaap
`ix:nonFraction` in that text (not only FiNER's 139 types): a number the filer tagged with any
concept is not "untagged". Only sentences holding a word an entity can sit on
(`finer.words.may_be_entity`) are sent; the others cannot hold one.

Each filer tag and each model entity gets one row in one of `CATEGORIES` (`MEANINGS` says what each
means), by the rules of `evaluation.errors.error_report`: agreed = correct, tagged differently = wrong
type or partial, untagged by the filer = spurious, missed by the model = missed.
"""
from __future__ import annotations

import csv
import gzip
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

from client import Entity, FinerClient
from finer.labels import entity_type, finer_types
from finer.spans import tag_spans
from finer.words import may_be_entity
from filings.ixbrl import IX_NS, FilingError, FilingMeta, parse_filing, read_filing

# The HTML of the largest filing in ../shared/data/ixbrl is 4.2 MB; big banks' 10-Ks reach 15 MB.
FILING_LIMIT_MB = 20
MAX_FILING_BYTES = FILING_LIMIT_MB * 2**20
FILING_SUFFIXES = (".htm", ".html", ".xhtml", ".htm.gz", ".html.gz", ".xhtml.gz")
UPLOAD_EXTENSIONS = sorted({"." + suffix.rsplit(".", 1)[1] for suffix in FILING_SUFFIXES})  # what the picker offers
# Sentences per tag() call: one call is planned into requests the server takes and sent concurrently.
# Calls of this size keep the server busy, let the progress bar move, and each ends well inside the
# client's timeout, which bounds a whole call (256 real sentences take about 3 s on 2 cores).
CHUNK_SENTENCES = 256

AGREED, DIFFERENT, UNTAGGED, MISSED = "agreed", "tagged differently", "untagged by the filer", "missed by the model"
CATEGORIES = (AGREED, DIFFERENT, UNTAGGED, MISSED)
MEANINGS = {
    AGREED: "the model tagged the same words with the filer's concept",
    DIFFERENT: "the model's entity overlaps the filer's tag with another concept or other words",
    UNTAGGED: "the model would tag a number the filer left untagged",
    MISSED: "the filer tagged a number with a type the model serves; the model did not",
}
REVIEW_ORDER = (DIFFERENT, UNTAGGED, MISSED, AGREED)  # the rows a filing team acts on come first
ROW_COLUMNS = ["category", "number", "filer's concept", "model's label", "score", "sentence"]


class FilingProblem(ValueError):
    """An upload the app cannot check; the message is shown in the page as it is."""


@dataclass(frozen=True)
class Sentence:
    tokens: list[str]  # FiNER words, as the corpus builder splits them
    tags: list[str]  # the filer's tags on them (IOB2, us-gaap concepts)

    @cached_property
    def text(self) -> str:
        """What is sent: the words joined by spaces, which the server splits into the same words."""
        return " ".join(self.tokens)

    @cached_property
    def starts(self) -> list[int]:
        starts, at = [], 0
        for token in self.tokens:
            starts.append(at)
            at += len(token) + 1
        return starts

    def words_of(self, entity: Entity) -> tuple[int, int]:
        """(first word, last word + 1) that the entity's characters cover."""
        covered = [i for i, s in enumerate(self.starts) if s < entity.end and s + len(self.tokens[i]) > entity.start]
        return covered[0], covered[-1] + 1

    def predicted_tags(self, entities: list[Entity]) -> list[str]:
        """The model's entities as IOB2 tags on this sentence's words."""
        tags = ["O"] * len(self.tokens)
        for e in entities:
            first, last = self.words_of(e)
            tags[first:last] = [f"B-{e.label}"] + [f"I-{e.label}"] * (last - first - 1)
        return tags

    def may_hold_entity(self) -> bool:
        return any(may_be_entity(t) for t in self.tokens)


@dataclass
class Review:
    meta: FilingMeta
    sentences: int  # narrative sentences in the filing
    sent: int  # of them, sent to the server
    seconds: float  # reading, tagging and comparing
    rows: list[list] = field(default_factory=list)  # ROW_COLUMNS
    outside_types: int = 0  # filer tags of concepts the model does not serve (only compared, never "missed")

    @property
    def counts(self) -> Counter:
        counts = Counter({c: 0 for c in CATEGORIES})
        counts.update(row[0] for row in self.rows)
        return counts


def check_upload(path: str | Path) -> Path:
    """The uploaded file if it may be a filing (name and size), else FilingProblem saying why."""
    path = Path(path)
    if not path.name.lower().endswith(FILING_SUFFIXES):
        raise FilingProblem(f"{path.name}: upload an inline-XBRL 10-K or 10-Q as .htm, .html or .htm.gz "
                            "(the filing's primary document from EDGAR).")
    size = html_size(path)
    if size == 0:
        raise FilingProblem(f"{path.name} is empty.")
    if size > MAX_FILING_BYTES:
        raise FilingProblem(f"{path.name} holds more than {FILING_LIMIT_MB} MB of HTML; the app checks filings up to "
                            f"{FILING_LIMIT_MB} MB (a 10-K is usually 1-10 MB).")
    return path


def html_size(path: Path) -> int:
    """Bytes of HTML in the file, gzip or not, counted only up to just past the limit (a small .gz may hold GBs)."""
    with open(path, "rb") as fh:
        if fh.read(2) != b"\x1f\x8b":
            return path.stat().st_size
    size = 0
    try:
        with gzip.open(path, "rb") as fh:
            while size <= MAX_FILING_BYTES and (chunk := fh.read(1 << 20)):
                size += len(chunk)
    except (OSError, EOFError, zlib.error):
        pass  # a broken gzip: parse_filing reports it as unreadable
    return size


def filer_concepts(path: Path) -> frozenset[str]:
    """Every concept the filer tagged a number with (local names), on top of FiNER's types."""
    root = parse_filing(path)
    names = {(el.get("name") or "").partition(":")[2] for el in root.iter(f"{{{IX_NS}}}nonFraction")}
    return frozenset(finer_types()) | (names - {""})


def read_sentences(path: Path) -> tuple[FilingMeta, list[Sentence]]:
    """The filing's narrative sentences with the filer's tags; FilingProblem if it cannot be read."""
    try:
        filing = read_filing(path, types=filer_concepts(path))
    except FilingError as e:
        raise FilingProblem(f"{path.name} cannot be checked: {e}.") from None
    return filing.meta, [Sentence(s["tokens"], s["ner_tags"]) for s in filing.sentences]


def tag_sentences(client: FinerClient, sentences: list[Sentence],
                  progress: Callable[[int, int], None] | None = None) -> list[list[Entity]]:
    """The server's entities of each sentence, in order; `progress(done, total)` after each call."""
    found: list[list[Entity]] = []
    for at in range(0, len(sentences), CHUNK_SENTENCES):
        found.extend(client.tag([s.text for s in sentences[at:at + CHUNK_SENTENCES]]))
        if progress:
            progress(len(found), len(sentences))
    return found


def compare(sentence: Sentence, entities: list[Entity], served: frozenset[str]) -> tuple[list[list], int]:
    """(rows, filer tags outside `served`) of one sentence; `entities` already above the threshold."""
    words = sentence.tokens
    gold = tag_spans(sentence.tags)
    predicted = {sentence.words_of(e): e for e in entities}
    rows, outside = [], 0

    def row(category, gold_span, entity):
        filer = " ".join(words[gold_span[1]:gold_span[2]]) if gold_span else ""
        number = filer or entity.text
        if filer and entity and entity.text != filer:
            number += f" (model: {entity.text})"
        rows.append([category, number, gold_span[0] if gold_span else "", entity.label if entity else "",
                     round(entity.score, 4) if entity else "", sentence.text])

    for span in gold:
        kind, a, b = span
        overlapping = [e for (x, y), e in predicted.items() if x < b and a < y]
        same_words = predicted.get((a, b))
        if same_words is not None:
            row(AGREED if same_words.label == kind else DIFFERENT, span, same_words)
        elif overlapping:
            row(DIFFERENT, span, overlapping[0])
        elif kind in served:
            row(MISSED, span, None)
        else:
            outside += 1
    for (x, y), e in predicted.items():
        if not any(x < b and a < y for _, a, b in gold):
            row(UNTAGGED, None, e)
    return rows, outside


def served_types(client: FinerClient) -> frozenset[str]:
    """The entity types the served model can return (FiNER's 139 if the repository does not say)."""
    labels = client.metadata().labels
    return frozenset(entity_type(t) for t in labels if entity_type(t)) if labels else frozenset(finer_types())


def check_filing(client: FinerClient, path: str | Path, threshold: float = 0.0,
                 progress: Callable[[int, int], None] | None = None) -> Review:
    """The whole review of one uploaded filing. FilingProblem for a bad upload, FinerError from the client."""
    started = time.perf_counter()
    path = check_upload(path)
    meta, sentences = read_sentences(path)
    served = served_types(client)
    candidates = [i for i, s in enumerate(sentences) if s.may_hold_entity()]
    entities = dict(zip(candidates, tag_sentences(client, [sentences[i] for i in candidates], progress)))
    review = Review(meta, len(sentences), len(candidates), 0.0)
    for i, sentence in enumerate(sentences):
        kept = [e for e in entities.get(i, []) if e.score >= threshold]
        if kept or any(t != "O" for t in sentence.tags):
            rows, outside = compare(sentence, kept, served)
            review.rows.extend(rows)
            review.outside_types += outside
    review.rows.sort(key=lambda row: REVIEW_ORDER.index(row[0]))
    review.seconds = time.perf_counter() - started
    return review


def write_csv(review: Review, folder: Path) -> Path:
    """The review's rows as `<filing>-review.csv` in `folder`, with the filing's name on each row."""
    name = review.meta.source.split(".")[0] or "filing"
    path = folder / f"{name}-review.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filing", *ROW_COLUMNS])
        writer.writerows([review.meta.source, *row] for row in review.rows)
    return path
