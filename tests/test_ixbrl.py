"""Inline-XBRL filing -> FiNER sentences: narrative text only, whole numbers tagged."""
from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree

from finer.labels import finer_label_names, finer_types
from finer.words import split_words
from filings.ixbrl import FilingError, read_filing, split_sentences

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ixbrl"
ALPHA = FIXTURES / "alpha_10-K_2023-12-31.htm"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FILINGS = SHARED / "ixbrl" / "filings"


def tagged(sentences: list[dict]) -> list[tuple[str, str]]:
    return [(w, t) for s in sentences for w, t in zip(s["tokens"], s["ner_tags"]) if t != "O"]


@pytest.fixture(scope="module")
def alpha():
    return read_filing(ALPHA)


def test_whole_numbers_tagged_not_fragments(alpha):
    first = next(s for s in alpha.sentences if "1,893.6" in s["tokens"])
    pairs = list(zip(first["tokens"], first["ner_tags"]))
    assert ("$", "O") in pairs and ("million", "O") in pairs
    assert ("1,893.6", "B-DebtInstrumentFaceAmount") in pairs
    assert ("7.00", "B-DebtInstrumentInterestRateStatedPercentage") in pairs
    assert pairs[pairs.index(("7.00", "B-DebtInstrumentInterestRateStatedPercentage")) + 1] == ("%", "O")


def test_excluded_facts_never_appear(alpha):
    words = {w for s in alpha.sentences for w in s["tokens"]}
    assert "500" not in words  # table
    assert "750" not in words  # display:none block
    assert "9.99" not in words  # ix:header
    assert "Goodwill" not in words  # block shorter than 6 words
    assert alpha.counts["short_block_finer_facts"] == 1


def test_expected_tags_exactly(alpha):
    assert tagged(alpha.sentences) == [
        ("1,893.6", "B-DebtInstrumentFaceAmount"),
        ("7.00", "B-DebtInstrumentInterestRateStatedPercentage"),
        ("1.25", "B-DebtInstrumentBasisSpreadOnVariableRate1"),
        ("2.0", "B-AmortizationOfIntangibleAssets"),  # nested facts: one tag
        ("four", "B-ShareBasedCompensationArrangementByShareBasedPaymentAwardAwardVestingPeriod1"),
        ("7.31", "B-DebtInstrumentInterestRateEffectivePercentage"),  # inside ix:nonNumeric
        ("1.5", "B-LineOfCreditFacilityMaximumBorrowingCapacity"),  # inside ix:continuation
        ("twenty", "B-NumberOfReportableSegments"),
        ("five", "I-NumberOfReportableSegments"),
    ]
    labels = set(finer_label_names())
    assert all(t in labels for s in alpha.sentences for t in s["ner_tags"])
    counts = alpha.counts
    assert (counts["narrative_finer_facts"], counts["narrative_duration_facts"],
            counts["nested_finer_facts"]) == (8, 1, 1)


def test_non_finer_concepts_stay_outside(alpha):
    accrued = next(s for s in alpha.sentences if "42.0" in s["tokens"])
    assert set(accrued["ner_tags"]) == {"O"}  # us-gaap:AccruedLiabilitiesCurrent is no FiNER type
    stores = next(s for s in alpha.sentences if "120" in s["tokens"])
    assert stores["ner_tags"][stores["tokens"].index("120")] == "O"  # company extension concept


def test_durations_can_be_left_out():
    pairs = tagged(read_filing(ALPHA, durations=False).sentences)
    assert all(w != "four" for w, _ in pairs) and len(pairs) == 8


def test_words_are_finer_words_and_sentences_split_sensibly(alpha):
    texts = [" ".join(s["tokens"]) for s in alpha.sentences]
    for s in alpha.sentences:
        text = " ".join(s["tokens"])
        assert [w.text for w in split_words(text)] == s["tokens"]
    # split after "U.S." before "The", not after "Inc." / "No." / inside "7.00"
    assert any(t.endswith("Senior Notes in the U.S.") for t in texts)
    assert any(t.startswith("The notes ( Series No . 5 )") for t in texts)
    assert any("Page 12 Alpha Widgets 2023 Form 10-K continued" in t for t in texts)  # ix:exclude shows


def test_split_sentences_rules():
    text = ("Apple Inc. issued 7.00% notes in the U.S. and Canada. See Note 7. Debt was repaid by "
            "J. M. Smucker Co. in 2023. Mr. Smith agreed. Item 1A. Risk Factors apply.")
    assert [text[s:e] for s, e in split_sentences(text)] == [
        "Apple Inc. issued 7.00% notes in the U.S. and Canada.",
        "See Note 7. Debt was repaid by J. M. Smucker Co. in 2023.",
        "Mr. Smith agreed.",
        "Item 1A. Risk Factors apply.",
    ]


def test_metadata_from_dei_facts(alpha):
    s = alpha.sentences[0]
    assert (s["company"], s["cik"], s["form"], s["period"], s["source"]) == (
        "Alpha Widgets, Inc.", "0000000001", "10-K", "2023-12-31", ALPHA.name)


def test_metadata_from_manifest_row_wins():
    row = {"company": "Alpha Manifest Co", "cik": "0000000042", "ticker": "AMC",
           "form": "10-K/A", "period_end": "2024-01-01"}
    s = read_filing(ALPHA, row).sentences[0]
    assert (s["company"], s["cik"], s["form"], s["period"]) == (
        "Alpha Manifest Co", "0000000042", "10-K/A", "2024-01-01")


def test_bad_files_raise_filing_error(tmp_path):
    plain = tmp_path / "plain.htm"
    plain.write_text("<html><body><p>No inline XBRL facts live in this ordinary page at all.</p>"
                     "</body></html>")
    corrupt = tmp_path / "broken.htm.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00garbage")
    empty = tmp_path / "empty.htm"
    empty.write_bytes(b"")
    for path, reason in ((plain, "no inline XBRL facts"), (corrupt, "unreadable"),
                         (empty, "not XHTML")):
        with pytest.raises(FilingError, match=reason):
            read_filing(path)


def test_gzip_reads_like_plain(tmp_path):
    gz = tmp_path / ALPHA.name.replace(".htm", ".htm.gz")
    gz.write_bytes(gzip.compress(ALPHA.read_bytes()))
    a, b = read_filing(ALPHA), read_filing(gz)
    assert [s["tokens"] for s in a.sentences] == [s["tokens"] for s in b.sentences]


# ---------------------------------------------------------------- a real filing

NS = {"ix": "http://www.xbrl.org/2013/inlineXBRL"}
NARRATIVE = '[not(ancestor::*[local-name()="table"])][not(ancestor::ix:header)]'


def _narrative(el) -> bool:
    """SOURCE.md's definition: the enclosing p/div has >= 40 characters and >= 6 words."""
    block = el.xpath('ancestor::*[local-name()="p" or local-name()="div"][1]')
    text = " ".join(block[0].xpath("string(.)").split()) if block else ""
    return len(text) >= 40 and len(text.split()) >= 6


def _finer(el) -> str | None:
    prefix, _, concept = el.get("name").partition(":")
    return concept if prefix == "us-gaap" and concept in set(finer_types()) else None


# TMO's 10-Q has 19 narrative FiNER nonFraction facts, none nested in another nonFraction, and
# 4 FiNER durations (ix:nonNumeric, format ixt-sec:duryear, text "18" etc.), so every fact is one
# tag. (In other filings a number reported for several periods is nested nonFraction facts on
# one printed number: those are tagged once, so there B- tags < facts.)
REAL = FILINGS / "TMO" / "TMO_10-Q_2023-07-01.htm.gz"


@pytest.mark.skipif(not REAL.exists(), reason=f"shared data not found at {REAL}")
def test_real_filing_tags_equal_direct_fact_count():
    tree = etree.parse(str(REAL))  # strict parse: this filing is well-formed
    facts = [el for el in tree.xpath("//ix:nonFraction" + NARRATIVE, namespaces=NS)
             if _finer(el) and _narrative(el)]
    assert not [el for el in facts if el.xpath("ancestor::ix:nonFraction", namespaces=NS)]
    durations = [el for el in tree.xpath('//ix:nonNumeric[contains(@format, ":dur")]' + NARRATIVE,
                                         namespaces=NS) if _finer(el) and _narrative(el)]
    assert len(facts) == 19 and len(durations) == 4

    def b_tags(filing):
        return Counter(t[2:] for s in filing.sentences for t in s["ner_tags"] if t.startswith("B-"))

    assert b_tags(read_filing(REAL, durations=False)) == Counter(_finer(el) for el in facts)
    assert b_tags(read_filing(REAL)) == Counter(_finer(el) for el in facts + durations)
