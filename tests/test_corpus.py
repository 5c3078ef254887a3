"""Corpus builder: by-company, deterministic split; skips and user errors reported, not raised."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from finer.labels import DEBT_TYPES
from filings.corpus import SPLITS, CorpusError, build_corpus, main

EFFECTIVE, SPREAD, STATED, CREDIT = (
    "DebtInstrumentInterestRateEffectivePercentage", "DebtInstrumentBasisSpreadOnVariableRate1",
    "DebtInstrumentInterestRateStatedPercentage", "LineOfCreditFacilityMaximumBorrowingCapacity")
# Effective and spread rates are rare, as in real filings: three holders each.
HOLDERS = {EFFECTIVE: (1, 2, 3), SPREAD: (3, 4, 5), STATED: tuple(range(1, 10)),
           CREDIT: (2, 5, 6, 7, 8)}

FILING = """<?xml version="1.0" encoding="utf-8"?>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:ix="http://www.xbrl.org/2013/inlineXBRL"
 xmlns:us-gaap="http://fasb.org/us-gaap/2023" xmlns:dei="http://xbrl.sec.gov/dei/2023"><body>
<div style="display:none"><ix:header><ix:hidden>
<ix:nonNumeric name="dei:EntityCentralIndexKey" contextRef="c">{cik}</ix:nonNumeric>
<ix:nonNumeric name="dei:EntityRegistrantName" contextRef="c">{name}</ix:nonNumeric>
<ix:nonNumeric name="dei:DocumentType" contextRef="c">{form}</ix:nonNumeric>
<ix:nonNumeric name="dei:DocumentPeriodEndDate" contextRef="c">June 30, 2024</ix:nonNumeric>
</ix:hidden></ix:header></div>
<p>{name} repeats this paragraph about its widget business in every filing it makes.</p>
<p>This {form} of {name} has a paragraph of its own that no other filing repeats.</p>
{facts}
</body></html>
"""
FACT = ('<p>Under its agreements {name} reports a figure of <ix:nonFraction name="us-gaap:{concept}"'
        ' contextRef="c" unitRef="pure" decimals="4" scale="-2">{value}</ix:nonFraction> percent'
        ' for the period.</p>')


def write_company(folder: Path, n: int) -> None:
    """Company n: a 10-K with its debt facts and a 10-Q; one paragraph is in both."""
    name = f"Company {n} Holdings"
    facts = "\n".join(FACT.format(name=name, concept=c, value=f"{n}.{i}")
                      for i, c in enumerate(DEBT_TYPES) if n in HOLDERS[c])
    for form, body in (("10-K", facts), ("10-Q", "")):
        path = folder / f"C{n}" / f"C{n}_{form}_2024-06-30.htm"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(FILING.format(cik=f"{n:010d}", name=name, form=form, facts=body))


@pytest.fixture()
def filings(tmp_path) -> Path:
    folder = tmp_path / "filings"
    for n in range(1, 10):
        write_company(folder, n)
    return folder


def read_split(out: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


def test_split_by_company_with_every_debt_type(filings, tmp_path):
    stats = build_corpus(filings, tmp_path / "out", workers=1, progress=False)
    ciks = {}
    for split in SPLITS:
        rows = read_split(tmp_path / "out", split)
        assert rows, f"{split} is empty"
        ciks[split] = {r["cik"] for r in rows}
        assert all(stats["splits"][split]["debt_entities"][t] > 0 for t in DEBT_TYPES), split
        assert set(stats["splits"][split]["company_keys"]) == ciks[split]
    assert not (ciks["train"] & ciks["validation"] or ciks["train"] & ciks["test"]
                or ciks["validation"] & ciks["test"])
    assert set().union(*ciks.values()) == {f"{n:010d}" for n in range(1, 10)}
    # the paragraph each company repeats in its 10-Q is dropped once per company
    assert stats["sentences"]["duplicates_dropped"] == 9
    assert stats["sentences"]["kept"] == sum(len(read_split(tmp_path / "out", s)) for s in SPLITS)
    rec = read_split(tmp_path / "out", "train")[0]
    assert set(rec) == {"tokens", "ner_tags", "company", "cik", "form", "period", "source"}
    assert rec["period"] == "2024-06-30" and rec["source"].endswith(".htm")


def test_split_is_deterministic_and_pool_matches_serial(filings, tmp_path):
    build_corpus(filings, tmp_path / "a", workers=1, progress=False)
    build_corpus(filings, tmp_path / "b", workers=2, progress=False)
    for split in SPLITS:
        assert (tmp_path / "a" / f"{split}.jsonl").read_bytes() == \
            (tmp_path / "b" / f"{split}.jsonl").read_bytes()


def test_seed_changes_the_assignment_not_the_sentences(filings, tmp_path):
    a = build_corpus(filings, tmp_path / "a", workers=1, progress=False, seed=13)
    b = build_corpus(filings, tmp_path / "b", workers=1, progress=False, seed=14)
    keys = lambda s: [tuple(s["splits"][x]["company_keys"]) for x in SPLITS]  # noqa: E731
    assert keys(a) != keys(b)
    assert a["sentences"]["kept"] == b["sentences"]["kept"]


def test_cache_reuses_converted_filings_and_resumes(filings, tmp_path):
    cache = tmp_path / "cache"
    first = build_corpus(filings, tmp_path / "a", workers=1, progress=False, cache_dir=cache)
    assert first["filings"]["from_cache"] == 0 and len(list(cache.iterdir())) == 18
    again = build_corpus(filings, tmp_path / "b", workers=2, progress=False, cache_dir=cache)
    assert again["filings"]["from_cache"] == 18
    for split in SPLITS:
        assert (tmp_path / "a" / f"{split}.jsonl").read_bytes() == (tmp_path / "b" / f"{split}.jsonl").read_bytes()
    # an edited filing is parsed again, and only it
    edited = filings / "C3" / "C3_10-Q_2024-06-30.htm"
    edited.write_text(edited.read_text().replace("no other filing repeats", "no other filing repeats, revised"))
    assert build_corpus(filings, tmp_path / "c", workers=1, progress=False, cache_dir=cache)["filings"]["from_cache"] == 17
    # an interrupted build: entries lost or cut short are parsed again, the rest reused
    entries = sorted(cache.iterdir())
    entries[0].unlink()
    entries[1].write_bytes(entries[1].read_bytes()[:10])
    resumed = build_corpus(filings, tmp_path / "d", workers=1, progress=False, cache_dir=cache)
    assert resumed["filings"]["from_cache"] == 16 and resumed["sentences"] == again["sentences"]


def test_split_holds_every_type_with_enough_holders(filings, tmp_path):
    stats = build_corpus(filings, tmp_path / "out", workers=1, progress=False)
    for split in SPLITS:  # every debt type has >= 3 holding companies here, so each split scores it
        assert all(stats["splits"][split]["debt_entities"][t] for t in DEBT_TYPES), split
        assert stats["splits"][split]["debt_companies"] >= 1


def test_bad_files_are_counted_skips(filings, tmp_path):
    import gzip

    (filings / "plain.html").write_text("<html><body><p>Nothing tagged here.</p></body></html>")
    (filings / "broken.htm.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    whole = gzip.compress((filings / "C1" / "C1_10-K_2024-06-30.htm").read_bytes())
    (filings / "truncated.htm.gz").write_bytes(whole[: len(whole) // 2])
    (filings / "C1" / "C1_10-K_2024-06-30.htm").rename(filings / "C1" / "C1_8-K_2024-06-30.htm")
    eight_k = filings / "C1" / "C1_8-K_2024-06-30.htm"
    eight_k.write_text(eight_k.read_text().replace(">10-K<", ">8-K<"))
    stats = build_corpus(filings, tmp_path / "out", workers=1, progress=False)
    reasons = {s["source"]: s["reason"] for s in stats["filings"]["skipped"]}
    assert set(reasons) == {"plain.html", "broken.htm.gz", "truncated.htm.gz", "C1_8-K_2024-06-30.htm"}
    assert "no inline XBRL facts" in reasons["plain.html"]
    assert "form 8-K: not a 10-K or 10-Q" in reasons["C1_8-K_2024-06-30.htm"]
    assert stats["filings"] == {**stats["filings"], "found": 21, "read": 17}


def test_manifest_beside_the_filings_gives_metadata(filings, tmp_path):
    (filings / "manifest.tsv").write_text(
        "file\tcompany\tcik\tticker\tform\tperiod_end\n"
        "filings/C1/C1_10-K_2024-06-30.htm\tOne Manifest Corp\t0000000001\tONE\t10-K\t2024-06-29\n")
    build_corpus(filings, tmp_path / "out", workers=1, progress=False)
    rows = [r for s in SPLITS for r in read_split(tmp_path / "out", s)]
    from_manifest = [r for r in rows if r["source"] == "C1_10-K_2024-06-30.htm"]
    assert from_manifest and all(r["company"] == "One Manifest Corp"
                                 and r["period"] == "2024-06-29" for r in from_manifest)


def test_bad_manifest_is_a_clear_error(filings, tmp_path):
    (filings / "manifest.tsv").write_text("name\tcik\nfoo\t1\n")
    with pytest.raises(CorpusError, match="missing column"):
        build_corpus(filings, tmp_path / "out", workers=1, progress=False)


def test_too_few_companies_is_a_clear_error(tmp_path):
    folder = tmp_path / "two"
    for n in (1, 2):
        write_company(folder, n)
    with pytest.raises(CorpusError, match="2 companies cannot fill 3 splits"):
        build_corpus(folder, tmp_path / "out", workers=1, progress=False)
    stats = build_corpus(folder, tmp_path / "out", split="0,0,1", workers=1, progress=False)
    assert stats["splits"]["test"]["sentences"] > 0 and stats["splits"]["train"]["sentences"] == 0


def test_cli_summary_and_exit_codes(filings, tmp_path, capsys):
    assert main(["--filings", str(filings), "--out", str(tmp_path / "out"), "--workers", "1", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "sentences with a tag" in out and EFFECTIVE in out and "companies" in out

    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.htm").write_text("<html><body><p>no facts</p></body></html>")
    for folder, message in ((tmp_path / "missing", "not a folder"), (empty, "no filings found"),
                            (junk, "no usable filing")):
        assert main(["--filings", str(folder), "--out", str(tmp_path / "o"), "--workers", "1", "--no-cache"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err
