"""One inline-XBRL filing -> FiNER-format sentences.

Filers wrap the numbers of their own text in `<ix:nonFraction name="us-gaap:Concept">`, which is
how FiNER-139 itself was labelled, so a filing's narrative text with those facts as tags is
FiNER-format data. Narrative means what a reader sees as prose: not tables, not the hidden
`ix:header`, not `display:none` blocks, and (as in `shared/data/ixbrl/SOURCE.md`) only blocks of
at least 40 characters and 6 words, which drops headings, page footers and cover-page fragments.
"""
from __future__ import annotations

import csv
import gzip
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from lxml import etree

from finer.labels import OUTSIDE, finer_types
from finer.words import COUNT_WORDS, is_number, split_words

IX_NS = "http://www.xbrl.org/2013/inlineXBRL"
US_GAAP_NS = "http://fasb.org/us-gaap/"

MIN_BLOCK_CHARS = 40
MIN_BLOCK_WORDS = 6

# A new block starts at these elements: text on either side of them is not one sentence.
_BLOCK_TAGS = frozenset(
    "p div li ul ol dl dt dd h1 h2 h3 h4 h5 h6 table tr td th caption hr section article header"
    " footer aside nav main blockquote pre center address figure figcaption form fieldset body"
    " html".split()
)
_SKIP_TAGS = frozenset("table script style head title noscript template".split())
_HIDDEN_RE = re.compile(r"display\s*:\s*none", re.I)
# Zero-width characters are not whitespace to `re`; map them to spaces (same length, same offsets).
_INVISIBLE = str.maketrans({"\u200b": " ", "\u200c": " ", "\u200d": " ", "\ufeff": " "})


class FilingError(Exception):
    """A filing that cannot be used: reported as a skip with this message, never a crash."""


@dataclass(frozen=True)
class Fact:
    start: int  # character offsets into the block text
    end: int
    concept: str
    duration: bool = False  # an ix:nonNumeric duration ("four years"), tagged on "four"


@dataclass
class Block:
    text: str
    facts: list[Fact]


@dataclass
class FilingMeta:
    company: str
    cik: str
    form: str
    period: str
    source: str
    ticker: str = ""

    @property
    def company_key(self) -> str:
        """Filings of one company share this key (the split and de-duplication are per company)."""
        return self.cik or self.ticker or self.company or self.source

    def record(self) -> dict:
        return {"company": self.company, "cik": self.cik, "form": self.form,
                "period": self.period, "source": self.source}


@dataclass
class Filing:
    meta: FilingMeta
    sentences: list[dict]
    counts: Counter = field(default_factory=Counter)


# ---------------------------------------------------------------- reading


def parse_filing(path: str | Path) -> etree._Element:
    """The root element of a .htm/.html/.htm.gz filing (gzip is detected by its magic bytes)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise FilingError(f"unreadable: {exc}") from None
    # Some copies carry blank lines before the XML declaration; `recover` repairs the odd
    # mismatched tag (one filing here) instead of losing the whole document.
    parser = etree.XMLParser(recover=True, huge_tree=True, resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring(raw.lstrip(), parser)
    except etree.XMLSyntaxError as exc:
        raise FilingError(f"not XHTML: {exc}") from None
    if root is None:
        raise FilingError("empty or not XHTML")
    return root


def _us_gaap_concept(el: etree._Element) -> str | None:
    """'Concept' of a fact named `<prefix>:Concept` whose prefix is bound to a us-gaap URI."""
    prefix, _, local = (el.get("name") or "").partition(":")
    if not local:
        return None
    uri = el.nsmap.get(prefix) or ""
    return local if uri.startswith(US_GAAP_NS) or (not uri and prefix == "us-gaap") else None


def _ix_name(el: etree._Element) -> str | None:
    tag = el.tag
    if isinstance(tag, str) and tag.startswith("{" + IX_NS + "}"):
        return tag[len(IX_NS) + 2:]
    return None


def narrative_blocks(root: etree._Element, types: frozenset[str], counts: Counter,
                     durations: bool = False) -> list[Block]:
    """Visible prose blocks of the document with the spans of their FiNER-type facts.

    `durations` also tags FiNER-type durations, which filers tag as `ix:nonNumeric` with a
    duration format ("four years" -> P4Y, FiNER types such as ...AwardVestingPeriod1): the tag
    covers the number words of the fact ("four"), not the unit.

    Nested `ix:nonFraction` (one printed number reported for several contexts) collapses onto the
    outermost FiNER fact: the words are tagged once. `ix:continuation` and `ix:nonNumeric` are
    transparent; `ix:exclude` only removes text from a fact's value, the reader still sees it, so
    it stays in the text.
    """
    blocks: list[Block] = []
    parts: list[str] = []
    facts: list[Fact] = []
    length = 0
    block_no = 0
    open_fact: list = []  # [element, start, concept, block_no] of the FiNER fact being read
    gaap_in_block = 0  # us-gaap nonFraction facts (nested included) seen in the current block

    def emit(text: str | None) -> None:
        nonlocal length
        if text:
            parts.append(text.translate(_INVISIBLE))
            length += len(text)

    def flush() -> None:
        nonlocal parts, facts, length, block_no, gaap_in_block
        if parts:
            text = "".join(parts)
            words = text.split()
            if len(words) >= MIN_BLOCK_WORDS and len(" ".join(words)) >= MIN_BLOCK_CHARS:
                blocks.append(Block(text, facts))
                counts["narrative_usgaap_facts"] += gaap_in_block
                counts["narrative_finer_facts"] += len(facts)
                counts["narrative_duration_facts"] += sum(f.duration for f in facts)
            else:
                counts["short_block_finer_facts"] += len(facts)
        parts, facts, length, gaap_in_block = [], [], 0, 0
        block_no += 1

    stack: list[tuple[etree._Element, bool]] = [(root, False)]
    while stack:
        el, closing = stack.pop()
        if not isinstance(el.tag, str):  # comment or processing instruction: only its tail shows
            emit(el.tail)
            continue
        local = etree.QName(el).localname.lower()
        ix = _ix_name(el)
        if closing:
            if open_fact and open_fact[0] is el:
                _, start, concept, opened_in = open_fact
                open_fact.clear()
                if opened_in != block_no:
                    counts["facts_across_blocks"] += 1
                elif ix == "nonNumeric":
                    span = _count_words_span("".join(parts), start, length)
                    if span:
                        facts.append(Fact(*span, concept, duration=True))
                    else:
                        counts["durations_without_number"] += 1
                elif length > start:
                    facts.append(Fact(start, length, concept))
            if local in _BLOCK_TAGS:
                flush()
            emit(el.tail)
            continue
        if ix == "header" or local in _SKIP_TAGS or _HIDDEN_RE.search(el.get("style") or ""):
            if local in _BLOCK_TAGS:
                flush()
            stack.append((el, True))  # keeps its tail and block break, not its content
            continue
        if local in _BLOCK_TAGS:
            flush()
        if ix == "nonFraction" or (durations and ix == "nonNumeric"
                                   and ":dur" in (el.get("format") or "")):
            concept = _us_gaap_concept(el)
            if concept is not None:
                gaap_in_block += ix == "nonFraction"
                if concept in types:
                    if open_fact:
                        counts["nested_finer_facts"] += 1
                    else:
                        open_fact[:] = [el, length, concept, block_no]
        emit(el.text)
        stack.append((el, True))
        stack.extend((child, False) for child in reversed(el))
    flush()
    return blocks


def _count_words_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Span from the first to the last number word of a duration ("four years" -> "four")."""
    counts = [w for w in split_words(text[start:end])
              if is_number(w.text.split("-")[0]) or w.text.split("-")[0].lower() in COUNT_WORDS]
    return (start + counts[0].start, start + counts[-1].end) if counts else None


# ---------------------------------------------------------------- sentences

# Abbreviations that never end a sentence here (titles, "No. 5", months, "e.g.").
_NEVER_FINAL = frozenset(
    "mr mrs ms dr prof no nos vs v jan feb mar apr jun jul aug sep sept oct nov dec approx e.g i.e"
    " fig ref para vol pp cf ex art ch".split()
)
# Abbreviations that may end a sentence ("... in the U.S. The ..."): split only before a word
# that typically opens one.
_MAY_BE_FINAL = frozenset("inc corp co ltd llc bros jr sr etc st n.v s.a".split())
_STARTERS = frozenset(
    """the we our in as this these those that there it its for during at on if such additionally
    however also accordingly see refer each all any under with while when based beginning effective
    following prior since subsequent total net interest a an amounts certain other management
    approximately further furthermore moreover therefore thus although after before from upon
    because given none""".split()
)
# "Item 1A. Risk Factors", "Note 7. Debt": a number after these is a heading or reference.
_REFERENCES = frozenset(
    "item items note notes part section article schedule exhibit no nos rule level tier phase"
    " chapter step page pages form topic asc class series type".split()
)
_DOTTED_RE = re.compile(r"^(?:\w+-)?(?:[A-Za-z]\.){2,}$")  # U.S., L.P., non-U.S.
_BOUNDARY_RE = re.compile(r"[.!?]+[\"'”’)\]]*(\s+)(?=[\"“‘(\[]*[A-Z])")
_NEXT_WORD_RE = re.compile(r"[\"“‘(\[]*([A-Za-z]+)")


def _before(text: str, pos: int) -> str:
    """The word before `pos`, lower-cased."""
    words = text[:pos].split()
    return words[-1].strip("\"“‘([").lower() if words else ""


def _is_boundary(text: str, end: int, after: int) -> bool:
    """Is the period etc. ending at `end` (next word at `after`) a sentence end?"""
    prev = text[:end].rsplit(None, 1)[-1].lstrip("\"“‘([")
    if not prev.endswith("."):
        return True  # '!' or '?' or a closing quote/bracket after the period
    stem = prev[:-1]
    low = stem.lower()
    if low in _NEVER_FINAL or re.fullmatch(r"[A-Za-z]", stem):  # initials: "J. M. Smucker"
        return False
    reference = re.fullmatch(r"\d+[A-Za-z]?", stem) and _before(text, end - len(prev)) in _REFERENCES
    if low in _MAY_BE_FINAL or _DOTTED_RE.match(prev) or reference:
        # "U.S.", "Inc.", "Note 7." ... end a sentence only before a usual opening word
        nxt = _NEXT_WORD_RE.match(text, after)
        return bool(nxt) and nxt.group(1).lower() in _STARTERS
    return True


def split_sentences(text: str, facts: list[Fact] = ()) -> list[tuple[int, int]]:
    """Sentence spans of `text`; never inside a fact, never on decimals (`7.00`), `U.S.`, `No.`."""
    spans, start = [], 0
    for m in _BOUNDARY_RE.finditer(text):
        end, after = m.start(1), m.end(1)
        if any(f.start < end < f.end for f in facts) or not _is_boundary(text, end, after):
            continue
        spans.append((start, end))
        start = after
    spans.append((start, len(text)))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def tag_words(text: str, facts: list[Fact]) -> tuple[list[str], list[str]]:
    """FiNER words of `text` and their IOB2 tags: B- on the first word a fact covers, I- after."""
    tokens, tags, started = [], [], set()
    for word in split_words(text):
        tag = OUTSIDE
        for i, fact in enumerate(facts):  # a sentence holds a handful of facts at most
            if word.start < fact.end and word.end > fact.start:
                tag = ("I-" if i in started else "B-") + fact.concept
                started.add(i)
                break
        tokens.append(word.text)
        tags.append(tag)
    return tokens, tags


def block_sentences(block: Block) -> list[tuple[list[str], list[str]]]:
    out = []
    for s, e in split_sentences(block.text, block.facts):
        facts = [Fact(f.start - s, f.end - s, f.concept, f.duration) for f in block.facts
                 if f.start < e and f.end > s]
        tokens, tags = tag_words(block.text[s:e], facts)
        if tokens:
            out.append((tokens, tags))
    return out


# ---------------------------------------------------------------- metadata


def load_manifest(path: str | Path) -> dict[str, dict]:
    """`manifest.tsv` rows keyed by file name (`AAPL_10-K_2024-09-28.htm.gz`)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        missing = {"file", "company"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        return {Path(row["file"]).name: row for row in reader}


_DATE_FORMATS = ("%Y-%m-%d", "%B %d, %Y", "%B %d,%Y", "%b %d, %Y", "%b. %d, %Y", "%d %B %Y",
                 "%m/%d/%Y")
# TICKER_FORM_PERIOD, the naming of shared/data/ixbrl/filings
_NAME_RE = re.compile(r"^(?P<ticker>[A-Za-z.]+)_(?P<form>10-[KQ][^_]*)_(?P<period>\d{4}-\d{2}-\d{2})")


def _iso_date(text: str) -> str:
    text = " ".join(text.split())
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            pass
    return text


def _dei(root: etree._Element) -> dict[str, str]:
    found: dict[str, str] = {}
    for el in root.iter(f"{{{IX_NS}}}nonNumeric"):
        name = (el.get("name") or "").partition(":")[2]
        if name in ("EntityRegistrantName", "DocumentType", "DocumentPeriodEndDate",
                    "EntityCentralIndexKey", "TradingSymbol") and name not in found:
            found[name] = " ".join("".join(el.itertext()).split())
    return found


# 10-K, 10-Q and their variants (10-KT transition reports, 10-K405, amendments /A).
_PERIODIC_FORM_RE = re.compile(r"^10-?[KQ]", re.I)


def filing_meta(path: Path, root: etree._Element, manifest_row: dict | None) -> FilingMeta:
    """From the manifest when listed, else the filing's dei facts, else the file name."""
    if manifest_row:
        return FilingMeta(manifest_row["company"], manifest_row.get("cik", ""),
                          manifest_row.get("form", ""), manifest_row.get("period_end", ""),
                          path.name, manifest_row.get("ticker", ""))
    dei = _dei(root)
    named = _NAME_RE.match(path.name)
    cik = dei.get("EntityCentralIndexKey", "")
    return FilingMeta(
        company=dei.get("EntityRegistrantName") or (named["ticker"] if named else path.name),
        cik=cik.zfill(10) if cik.isdigit() else cik,
        form=dei.get("DocumentType") or (named["form"] if named else ""),
        period=_iso_date(dei["DocumentPeriodEndDate"]) if "DocumentPeriodEndDate" in dei
        else (named["period"] if named else ""),
        source=path.name,
        ticker=dei.get("TradingSymbol") or (named["ticker"] if named else ""),
    )


# ---------------------------------------------------------------- one filing


def read_filing(path: str | Path, manifest_row: dict | None = None,
                types: frozenset[str] | None = None, durations: bool = True) -> Filing:
    """All narrative sentences of one filing, tagged with its FiNER-type `ix:nonFraction` facts.

    Raises FilingError for a file that is unreadable or holds no inline-XBRL facts.
    """
    path = Path(path)
    root = parse_filing(path)
    counts: Counter = Counter()
    counts["nonfraction_facts"] = sum(1 for _ in root.iter(f"{{{IX_NS}}}nonFraction"))
    if counts["nonfraction_facts"] == 0 and next(root.iter(f"{{{IX_NS}}}nonNumeric"), None) is None:
        raise FilingError("no inline XBRL facts (not an iXBRL filing?)")
    meta = filing_meta(path, root, manifest_row)
    if meta.form and not _PERIODIC_FORM_RE.match(meta.form):
        raise FilingError(f"form {meta.form}: not a 10-K or 10-Q (FiNER's sentences come from annual and quarterly reports)")
    blocks = narrative_blocks(root, types or frozenset(finer_types()), counts, durations)
    sentences = []
    for block in blocks:
        for tokens, tags in block_sentences(block):
            sentences.append({"tokens": tokens, "ner_tags": tags, **meta.record()})
    counts["blocks"] = len(blocks)
    counts["sentences"] = len(sentences)
    counts["entities"] = sum(t.startswith("B-") for s in sentences for t in s["ner_tags"])
    return Filing(meta, sentences, counts)
