"""The web app (`demo/`): its checks as plain functions, then the page itself in headless Chromium.

The browser tests drive `python -m demo` (a subprocess) pointed at the session's real Triton with the
tiny model (`served`), and compare what the page shows with what the client and the corpus builder's
functions give directly. Screenshots of each step land in `.cache/screenshots/` (a test artifact).
"""
from __future__ import annotations

import csv
import gzip
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from client import Entity, FinerClient
from conftest import ROOT
from demo.browser import chromium, check_filing, open_app, open_tab, refresh_status, running_app, tag_example, \
    tag_text, upload
from demo.filing_review import AGREED, CATEGORIES, DIFFERENT, MISSED, MAX_FILING_BYTES, UNTAGGED, FilingProblem, \
    Sentence, check_upload, compare, read_sentences, served_types
from demo.tagging import EXAMPLES, MAX_TEXT_CHARS, InputProblem, tag_text as tag_directly
from finer.words import split_words
from server.triton import free_port, wait_until
from evaluation.errors import error_report
from filings.ixbrl import read_filing

SHARED = ROOT.parent / "shared" / "data" / "ixbrl"
# The smallest real 10-K of the collection (258 KB of HTML, 234 narrative sentences, 11 FiNER facts).
SMALL_FILING = SHARED / "filings" / "CIK1828739" / "CIK1828739_10-K_2023-09-30.htm.gz"
ALPHA = ROOT / "tests" / "fixtures" / "ixbrl" / "alpha_10-K_2023-12-31.htm"  # synthetic: the tiny model agrees once
SCREENSHOTS = ROOT / ".cache" / "screenshots"
STATED_RATE = EXAMPLES[0]  # "... bore interest at a rate of 7.00% per annum."


# --- the app's own checks (no server, no browser) -----------------------------------------------------

@pytest.mark.parametrize("example", EXAMPLES, ids=[e.shows for e in EXAMPLES])
def test_examples_are_real_sentences_of_their_filings(example):
    path = next((SHARED / "filings").glob(f"*/{example.source}"))
    words = [w.text for w in split_words(example.text)]
    assert words in [s["tokens"] for s in read_filing(path).sentences]


def test_examples_cover_both_benchmark_eras_rates_amounts_and_durations():
    texts = " ".join(e.text for e in EXAMPLES)
    assert all(word in texts for word in ("LIBOR", "SOFR", "7.00%", "million", "years"))


def test_text_refused_before_anything_is_sent():
    with FinerClient(f"127.0.0.1:{free_port()}", retries=0) as nowhere:
        for text, message in [("", "Paste some text"), ("  \n ", "Paste some text"),
                              ("7.00% " * (MAX_TEXT_CHARS // 6 + 1), "at most 100,000")]:
            with pytest.raises(InputProblem, match=message):
                tag_directly(nowhere, text)
        with pytest.raises(InputProblem, match="Choose at least one type"):
            tag_directly(nowhere, "The rate was 7.00%.", "chosen types", [])


def test_upload_checks(tmp_path):
    huge = tmp_path / "huge_10-K.htm"
    with open(huge, "wb") as fh:
        fh.truncate(50_000_000)  # a 50 MB upload (sparse: nothing is written)
    bomb = tmp_path / "bomb_10-K.htm.gz"
    with gzip.open(bomb, "wb") as fh:
        for _ in range(MAX_FILING_BYTES // 2**20 + 1):
            fh.write(b" " * 2**20)
    (tmp_path / "empty.htm").write_bytes(b"")
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.4")
    assert bomb.stat().st_size < 100_000, "small on disk, more than the limit inside"
    for name, message in [("huge_10-K.htm", "more than 20 MB"), ("bomb_10-K.htm.gz", "more than 20 MB"),
                          ("empty.htm", "is empty"), ("report.pdf", "upload an inline-XBRL 10-K or 10-Q")]:
        with pytest.raises(FilingProblem, match=message):
            check_upload(tmp_path / name)
    assert check_upload(SMALL_FILING) == SMALL_FILING


def test_not_a_filing_is_a_readable_refusal(tmp_path):
    (tmp_path / "notes.htm").write_text("<html><body><p>Revenue rose 7% to $12 million in 2023.</p></body></html>")
    (tmp_path / "noise.htm.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)
    with pytest.raises(FilingProblem, match="notes.htm cannot be checked: no inline XBRL facts"):
        read_sentences(tmp_path / "notes.htm")
    with pytest.raises(FilingProblem, match="noise.htm.gz cannot be checked: unreadable"):
        read_sentences(tmp_path / "noise.htm.gz")


def entity(sentence: Sentence, word: int, label: str, score: float = 0.9):
    start = sentence.starts[word]
    return Entity(sentence.tokens[word], label, start, start + len(sentence.tokens[word]), score)


STATED, SPREAD = "DebtInstrumentInterestRateStatedPercentage", "DebtInstrumentBasisSpreadOnVariableRate1"
EFFECTIVE, FACE = "DebtInstrumentInterestRateEffectivePercentage", "DebtInstrumentFaceAmount"


def test_compare_follows_the_error_report():
    words = "The 7.00 % notes , LIBOR plus 1.25 % , $ 500 million , 3 years , 4.5 % and 2023".split()
    tags = ["O"] * len(words)
    tags[1] = f"B-{STATED}"  # the model agrees
    tags[7] = f"B-{SPREAD}"  # the model says another type
    tags[11:13] = [f"B-{FACE}", f"I-{FACE}"]  # the model tags "500" alone
    tags[14] = "B-LongTermDebt"  # not a served type, the model silent: neither missed nor untagged
    tags[17] = f"B-{EFFECTIVE}"  # the model silent: missed
    sentence = Sentence(words, tags)
    assert sentence.text.split(" ") == words
    found = [entity(sentence, 1, STATED), entity(sentence, 7, EFFECTIVE, 0.6), entity(sentence, 11, FACE),
             entity(sentence, 20, STATED, 0.4)]  # "2023": the filer did not tag it
    rows, outside = compare(sentence, found, frozenset({STATED, SPREAD, EFFECTIVE, FACE}))
    assert [tuple(r[:4]) for r in rows] == [
        (AGREED, "7.00", STATED, STATED),
        (DIFFERENT, "1.25", SPREAD, EFFECTIVE),
        (DIFFERENT, "500 million (model: 500)", FACE, FACE),
        (MISSED, "4.5", EFFECTIVE, ""),
        (UNTAGGED, "2023", "", STATED),
    ]
    assert outside == 1
    report = error_report([words], [tags], [sentence.predicted_tags(found)])["outcomes"]
    assert report == {"correct": 1, "wrong type": 1, "partial": 1, "missed": 2, "spurious": 1}


def test_demo_imports_neither_torch_nor_transformers():
    code = ("import sys, demo.app, demo.filing_review, demo.browser; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_gradio_is_in_the_demo_extra_only():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "gradio==6.17.3" in extras["demo"] and any(p.startswith("lxml") for p in extras["demo"])
    assert not any(p.startswith("gradio") for p in extras["client"])


# --- the page, in headless Chromium, against the real server -------------------------------------------

@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def app(served, tmp_path_factory):
    with running_app(served.server.grpc_url, "grpc", tmp_path_factory.mktemp("demo") / "app.log") as base:
        yield base


@pytest.fixture
def page(browser, app, request):
    page = open_app(browser, app)
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:",
                                                                                   "blob:")) else None)
    yield page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    page.close()
    assert outside == [], "the page must not reach beyond the app"


def marks(page) -> list[dict]:
    return page.eval_on_selector_all("#tag-highlighted mark", """ms => ms.map(m => ({
        text: m.querySelector('.finer-value').textContent, label: m.dataset.label, start: +m.dataset.start,
        end: +m.dataset.end, shown: m.querySelector('.finer-label').textContent}))""")


def table_rows(page, selector: str) -> list[list[str]]:
    """The rows a Gradio Dataframe renders (virtualised: the visible ones, all of them for a short table)."""
    return page.eval_on_selector_all(f"{selector} .virtual-row", """rows => rows.map(r =>
        [...r.querySelectorAll('.body-cell')].map(c => c.innerText.trim()))""")


def message(page, selector: str) -> str:
    return page.inner_text(selector).strip()


def test_example_highlights_the_servers_entities(page, served):
    tag_example(page, STATED_RATE)
    shown = marks(page)
    rate = next(m for m in shown if m["text"].startswith("7"))
    assert rate["text"] == "7.00" and STATED_RATE.text[rate["start"]:rate["end"]] == "7.00"
    with FinerClient(served.server.grpc_url) as client:
        direct = client.tag(STATED_RATE.text)
    assert [(m["text"], m["label"], m["start"], m["end"]) for m in shown] == [(e.text, e.label, e.start, e.end)
                                                                              for e in direct]
    assert all(m["shown"] == f"{e.label} {e.score:.2f}" for m, e in zip(shown, direct)), "label and score visible"
    assert table_rows(page, "#tag-table") == [[e.text, e.label, str(e.start), str(e.end), f"{e.score:g}"]
                                              for e in direct]
    assert " ms" in message(page, "#tag-message") and "Tagged 92 characters" in message(page, "#tag-message")


def test_threshold_and_label_filter(page, served):
    text = EXAMPLES[4].text  # an amount and a duration: the tiny model gives them two types
    with FinerClient(served.server.grpc_url) as client:
        everything = client.tag(text)
        one_type = everything[0].label
        only = client.tag(text, labels=[one_type])
        debt = client.tag(text, labels="debt")
    assert len(everything) >= 2 and len({e.label for e in everything}) >= 2, "the tiny model tags both rates"
    tag_text(page, text)
    assert len(marks(page)) == len(everything)
    cut = max(e.score for e in everything) + 0.01
    page.fill("#tag-threshold input[type=number]", f"{cut:.2f}")
    page.press("#tag-threshold input[type=number]", "Enter")
    page.wait_for_function("() => document.querySelectorAll('#tag-highlighted mark').length === 0")
    assert f"({len(everything)} below the score threshold" in message(page, "#tag-message")
    page.fill("#tag-threshold input[type=number]", "0")
    page.press("#tag-threshold input[type=number]", "Enter")
    page.get_by_label("debt").check()
    tag_text(page, text)
    assert [(m["label"], m["start"]) for m in marks(page)] == [(e.label, e.start) for e in debt]
    page.get_by_label("chosen types").check()
    page.locator("#tag-types input").fill(one_type)
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    tag_text(page, text)
    assert [(m["label"], m["start"]) for m in marks(page)] == [(e.label, e.start) for e in only]


def test_bad_text_gets_a_message_and_the_app_stays_up(page):
    tag_text(page, "")
    assert "Paste some text first" in message(page, "#tag-message")
    started = time.monotonic()
    tag_text(page, "The rate was 7.00% per annum. " * 35_000)  # a 1 MB paste
    assert "this tab takes at most 100,000" in message(page, "#tag-message")
    assert time.monotonic() - started < 30
    tag_example(page, STATED_RATE)
    assert any(m["text"] == "7.00" for m in marks(page))


def expected_counts(client: FinerClient, path: Path) -> Counter:
    """The review's counts, straight from the corpus builder's sentences, the client and the error report."""
    _, sentences = read_sentences(path)
    candidates = [s for s in sentences if s.may_hold_entity()]
    found = dict(zip(map(id, candidates), client.tag([s.text for s in candidates])))
    predicted = [s.predicted_tags(found.get(id(s), [])) for s in sentences]
    report = error_report([s.tokens for s in sentences], [s.tags for s in sentences], predicted, examples=10**6)
    outcomes, served = Counter(report["outcomes"]), served_types(client)
    missed = sum(kind in served for kind, _, _ in report["examples"].get("missed", []))
    return Counter({AGREED: outcomes["correct"], DIFFERENT: outcomes["wrong type"] + outcomes["partial"],
                    UNTAGGED: outcomes["spurious"], MISSED: missed})


@pytest.mark.parametrize("filing", [SMALL_FILING, ALPHA], ids=["real", "synthetic"])
def test_filing_review_counts_equal_a_direct_count(page, served, filing):
    check_filing(page, filing)
    shown = {c: int(page.inner_text(f'#filing-counts tr[data-category="{c}"] td.count')) for c in CATEGORIES}
    with FinerClient(served.server.grpc_url) as client:
        expected = expected_counts(client, filing)
    assert shown == dict(expected)
    assert shown[UNTAGGED] > 0 and shown[DIFFERENT] > 0, "filer tags and model entities both"
    summary = message(page, "#filing-message")
    assert f"{filing.name}:" in summary and f"{len(read_sentences(filing)[1]):,} narrative sentences" in summary
    with page.expect_download() as download:
        page.click("#filing-csv")
    with open(download.value.path(), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert Counter(r["category"] for r in rows) == +expected
    assert {r["filing"] for r in rows} == {filing.name}


def test_bad_uploads_get_a_message_and_the_app_stays_up(page, tmp_path):
    (tmp_path / "notes.htm").write_text("<html><body><p>Revenue rose 7% to $12 million in 2023.</p></body></html>")
    (tmp_path / "noise.htm.gz").write_bytes(bytes(range(256)) * 64)
    check_filing(page, tmp_path / "notes.htm")
    assert "notes.htm cannot be checked: no inline XBRL facts" in message(page, "#filing-message")
    check_filing(page, tmp_path / "noise.htm.gz")
    assert "noise.htm.gz cannot be checked" in message(page, "#filing-message")
    huge = tmp_path / "huge.htm"
    with open(huge, "wb") as fh:
        fh.truncate(50_000_000)
    open_tab(page, "Check a filing")
    upload(page, huge)
    page.get_by_text("exceed the maximum allowed size of 20").wait_for()  # Gradio refuses it before uploading
    tag_example(page, STATED_RATE)
    assert any(m["text"] == "7.00" for m in marks(page))


def test_server_down_is_a_message(browser, tmp_path):
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    with running_app(nowhere, "http", tmp_path / "app.log") as base:
        page = open_app(browser, base)
        open_tab(page, "Server status")
        assert "Cannot reach the server" in message(page, "#status-text")
        assert nowhere in message(page, "#status-text")
        tag_example(page, STATED_RATE)
        assert "The server could not tag the text" in message(page, "#tag-message")
        assert "cannot reach Triton" in message(page, "#tag-message")
        check_filing(page, SMALL_FILING)
        assert "The server could not tag the filing" in message(page, "#filing-message")
        refresh_status(page)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "server-down.png"), full_page=True)
        assert "Cannot reach the server" in message(page, "#status-text")


def test_status_shows_the_served_model(page, served):
    refresh_status(page)
    text = message(page, "#status-text")
    assert "live and ready" in text and "finer version 1" in text and "finer_model 1" in text
    assert "64 documents and 64 windows per request" in text
    assert "Model card: finer_model" in text and "Intended use" in text  # the served version's card, rendered
    types = sorted({t[2:] for t in served.config.labels if t != "O"})
    assert sorted(row[0] for row in table_rows(page, "#status-labels")) == types


# A large real 10-K (3.39 MB of HTML, 828 sentences with a number): its check takes seconds even with the tiny model.
LARGE_FILING = SHARED / "filings" / "J" / "J_10-K_2023-09-29.htm.gz"


def test_server_restarted_mid_check_is_a_message_then_the_app_works_again(browser, tiny_export, tmp_path):
    """Triton is killed while a filing is being tagged: the page says so, and once the supervisor
    has restarted it the same page tags again."""
    import os
    import signal

    from server.service import FinerServer

    server = FinerServer(tiny_export.repository, free_port(), free_port(), free_port(), log_file=tmp_path / "server.log",
                         backend_dir=tmp_path / "backends", canary_interval_s=0.5)
    with server, running_app(server.grpc_url, "grpc", tmp_path / "app.log") as base:
        page = open_app(browser, base)
        open_tab(page, "Check a filing")
        upload(page, LARGE_FILING)
        page.wait_for_selector(f'#filing-upload td.filename[aria-label="{LARGE_FILING.name}"]')
        admitted = server.admission.admitted
        page.click("#filing-button")
        # Kill as soon as the app's first request has reached the server: the check is still tagging
        # (a fixed sleep let a fast machine finish the whole check before the kill).
        assert wait_until(lambda: server.admission.admitted > admitted, 60, 0.005) is not None
        os.killpg(server.process.pid, signal.SIGKILL)
        page.wait_for_function(
            "() => document.querySelector('#filing-message')?.innerText.includes('could not tag the filing')",
            timeout=60_000)
        assert "cannot reach Triton" in message(page, "#filing-message") or "not ready" in message(page, "#filing-message")
        deadline = time.monotonic() + 60
        while server.supervisor.restarts < 1 or not server.supervisor.ready:
            assert time.monotonic() < deadline, "the supervisor did not restart Triton"
            time.sleep(0.2)
        tag_example(page, STATED_RATE)
        assert any(m["text"] == "7.00" for m in marks(page))
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "server-restarted.png"), full_page=True)
        page.close()
