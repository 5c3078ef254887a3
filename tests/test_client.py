"""The thin client (`client.FinerClient`, `client.aio.AsyncFinerClient`) against the real embedded Triton.

Results are compared with the in-process PyTorch reference of the session's `served` fixture, and
every offset with the text it came from. Failure cases use real conditions: a closed port, a
socket that never answers, a server killed in the middle of a call.
"""
from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from client import Entity, FinerClient, FinerError, InvalidInput, ModelNotReady, RequestTimeout, ServerUnreachable
from client import plan as planner
from client.aio import AsyncFinerClient
from conftest import ROOT
from finer.pipeline import tokenize
from finer.windows import window_count
from finer.words import split_words
from server.triton import TritonServer, free_port
from tiny_model import SEED, WORDS

PROTOCOLS = ["grpc", "http"]
SENTENCES = [
    "The notes bear interest at a stated rate of 5.25% per annum.",
    "Borrowings under the revolving credit facility bear interest at LIBOR plus 1.75 %.",
    "The company has a maximum borrowing capacity of $500 million under the line of credit.",
    "The effective interest rate on the term loan was 6.1 % for the year ended December 31, 2023.",
]


def words(n: int, seed: int = SEED) -> str:
    rng = random.Random(seed)
    pool = WORDS + ["$", "%", ",", "."] + ["7.00", "1,893.6", "2023", "100", "0.5"]
    return " ".join(rng.choice(pool) for _ in range(n))


def paragraphs(n_chars: int) -> str:
    """Filing-like text: sentences in paragraphs separated by blank lines, about n_chars long."""
    rng = random.Random(SEED)
    out, size = [], 0
    while size < n_chars:
        para = " ".join(rng.choice(SENTENCES).replace("5.25", f"{rng.randint(1, 9)}.{rng.randint(0, 99):02d}")
                        for _ in range(rng.randint(2, 8)))
        out.append(para)
        size += len(para) + 2
    return "\n\n".join(out)[:n_chars]


def url(served, protocol: str) -> str:
    return served.server.grpc_url if protocol == "grpc" else served.server.http_url


def as_tuples(entities) -> list[tuple]:
    return [(e["text"], e["label"], e["start"], e["end"]) if isinstance(e, dict) else (e.text, e.label, e.start, e.end)
            for e in entities]


def assert_matches(found: list[Entity], expected: list[dict], text: str) -> None:
    assert all(isinstance(e, Entity) for e in found)
    assert as_tuples(found) == as_tuples(expected)
    assert [e.score for e in found] == pytest.approx([e["score"] for e in expected], abs=2e-3)
    assert all(text[e.start:e.end] == e.text for e in found)


def assert_offsets(found: list[Entity], text: str) -> None:
    assert all(text[e.start:e.end] == e.text for e in found)
    assert all(a.end <= b.start for a, b in zip(found, found[1:])), "entities overlap or are out of order"


@pytest.fixture(scope="module", params=PROTOCOLS)
def client(request, served):
    with FinerClient(url(served, request.param), request.param, timeout=30) as c:
        yield c


def closed_port_url() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens there


# --- planning (no server) ----------------------------------------------------------------------------

def test_split_document_covers_text_at_boundaries():
    text = paragraphs(40_000)
    pieces = planner.split_document(text, 6_000)
    assert "".join(p for _, p in pieces) == text
    assert [o for o, _ in pieces] == [sum(len(p) for _, p in pieces[:i]) for i in range(len(pieces))]
    assert all(3_000 <= len(p) <= 6_000 for _, p in pieces[:-1])
    assert all(p.endswith("\n\n") for _, p in pieces[:-1]), "paragraph boundaries come first"
    one_line = words(5_000)
    assert all(p.endswith(" ") for _, p in planner.split_document(one_line, 2_000)[:-1]), "else between words"
    solid = "x" * 10_001
    assert [len(p) for _, p in planner.split_document(solid, 5_000)] == [5_000, 5_000, 1]


def test_window_settings_come_from_the_server_config():
    config = {"name": "finer", "parameters": {k: {"string_value": v} for k, v in
                                               (("max_documents", "8"), ("max_windows", "4"), ("max_length", "64"),
                                                ("stride", "16"))}}
    limits = planner.Limits.from_config(config)
    assert (limits.max_length, limits.stride) == (64, 16)
    assert limits.piece_chars == 62 + 3 * (62 - 16)
    assert limits.windows("x" * 200) == window_count(200, max_length=64, stride=16)


def test_plan_respects_both_limits():
    limits = planner.Limits(max_documents=8, max_windows=10)
    docs = ["short 1"] * 20 + [words(300)] * 5 + ["", paragraphs(50_000), "Words without any number (none)."]
    requests = planner.plan(docs, limits)
    assert all(len(r) <= 8 and sum(limits.windows(p.text) for p in r) <= 10 for r in requests)
    pieces = [p for r in requests for p in r]
    assert [len(p.text) for p in pieces] == sorted(len(p.text) for p in pieces), "short ones together: less padding"
    assert {p.document for p in pieces} == set(range(len(docs))) - {25, 27}, "nothing to tag: not sent"
    long_doc = sorted((p for p in pieces if p.document == 26), key=lambda p: p.offset)
    assert len(long_doc) > 1 and "".join(p.text for p in long_doc) == docs[26]


# --- tagging ---------------------------------------------------------------------------------------

def test_one_sentence_gives_entities_with_offsets(client, served):
    expected = served.reference(SENTENCES[:1])[0]
    found = client.tag(SENTENCES[0])
    assert expected, "the tiny model should predict entities"
    assert_matches(found, expected, SENTENCES[0])
    assert client.tag(SENTENCES[0].encode("utf-8")) == found, "UTF-8 bytes are decoded"


def test_batch_keeps_order_and_offsets(client, served):
    rng = random.Random(1)
    texts = [f"{i}: {rng.choice(SENTENCES)}" for i in range(150)]
    texts[7], texts[40], texts[41] = "", "Café revenue 📈 rose 12.5% to €3 million.", words(700)
    expected = served.reference(texts)
    found = client.tag(texts)
    assert len(found) == len(texts)
    for got, want, text in zip(found, expected, texts):
        assert_matches(got, want, text)


def test_text_without_a_number_costs_no_request(served):
    """Its words are all O whatever the model says (`finer.words.may_hold_entity`), so it is not sent."""
    import tritonclient.grpc as grpcclient

    def requests() -> int:
        with grpcclient.InferenceServerClient(served.server.grpc_url) as triton:
            return int(triton.get_inference_statistics("finer").model_stats[0].inference_count)

    with FinerClient(served.server.grpc_url) as client:
        client.limits()
        before = requests()
        assert client.tag(["The Notes are senior unsecured obligations.", "U.S. GAAP (the 10-K's notes)"]) == [[], []]
        assert requests() == before
        texts = ["No rate was set.", SENTENCES[0], "The Company's notes."]  # 'No' may be an entity (zero)
        for got, want, text in zip(client.tag(texts), served.reference(texts), texts):
            assert_matches(got, want, text)
        assert requests() == before + 1, "the two documents with a candidate word, in one request"


def test_long_document_is_split_and_offsets_shifted_back(client, served):
    text = paragraphs(20_000)
    limits = client.limits()
    pieces = planner.split_document(text, limits.piece_chars)
    assert len(pieces) >= 3
    expected = [dict(e, start=e["start"] + offset, end=e["end"] + offset)
                for (offset, piece), found in zip(pieces, served.reference([p for _, p in pieces])) for e in found]
    found = client.tag(text)
    assert_matches(found, expected, text)


def test_one_megabyte_document(served):
    text = paragraphs(1_000_000)
    assert len(text.encode("utf-8")) >= 1_000_000
    started = time.monotonic()
    with FinerClient(served.server.grpc_url, timeout=30) as client:
        found = client.tag(text)
    assert time.monotonic() - started < 30
    assert_offsets(found, text)
    assert len(found) > 5_000 and found[-1].end > len(text) - 5_000, "entities all along the text"
    first = planner.split_document(text, client.limits().piece_chars)[0][1]
    assert_matches([e for e in found if e.end <= len(first)], served.reference([first])[0], text)


def test_text_without_spaces_is_cut_anywhere(served):
    text = "7.00%" * 4_000  # 20,000 characters, no whitespace: one 'word' per number/sign
    with FinerClient(served.server.http_url, "http") as client:
        found = client.tag([text, "x"])[0]
    assert_offsets(found, text)
    assert found


def test_ten_thousand_short_texts(served):
    texts = [f"Note {i}: the rate was {i % 97}.{i % 10} % in {2000 + i % 25}." for i in range(10_000)]
    with FinerClient(served.server.http_url, "http", concurrency=4) as client:
        started = time.monotonic()
        found = client.tag(texts)
        elapsed = time.monotonic() - started
        sample = random.Random(2).sample(range(len(texts)), 10)
        assert [found[i] for i in sample] == [client.tag(texts[i]) for i in sample], "order preserved"
    assert len(found) == len(texts) and elapsed < 60
    assert sum(map(len, found)) > 10_000
    for text, entities in zip(texts, found):
        assert_offsets(entities, text)


def test_requests_the_server_finds_too_big_are_halved(served, monkeypatch):
    """If the length bound is wrong (text with more sub-tokens than characters, other window settings),
    the server's INVALID_ARGUMENT 'windows > limit' makes the client split and resend."""
    texts = [words(1_200, seed=s) for s in range(6)] + [words(8_000)]
    lengths = [len(e.ids) for e in tokenize(served.tokenizer, [[w.text for w in split_words(t)] for t in texts])]
    needed = [window_count(n, max_length=served.config.max_length, stride=served.config.stride) for n in lengths]
    assert sum(needed[:6]) > 64 and needed[6] > 64, "the server must refuse them as one request"
    with FinerClient(served.server.grpc_url) as client:
        monkeypatch.setattr(planner, "TOKENS_PER_CHAR", 0.01)  # pretend every text fits in one window
        assert len(planner.plan(texts, client.limits())) == 1
        halved = []
        monkeypatch.setattr(planner, "halve", lambda r, real=planner.halve: halved.append(len(r)) or real(r))
        found = client.tag(texts)
    assert halved[0] == 7 and 1 in halved, "the request and then the 8,000-word document were split"
    reference = served.reference(texts[:6])
    for got, want, text in zip(found, reference, texts):
        assert_matches(got, want, text)
    assert_offsets(found[6], texts[6])


def test_health_and_metadata(client, served):
    assert client.health() == (True, True)
    meta = client.metadata()
    assert (meta.model, meta.max_documents, meta.max_windows) == ("finer", 64, 64)
    assert meta.steps == {"finer_preprocess": "1", "finer_model": "1", "finer_postprocess": "1"}
    assert meta.labels == served.config.labels  # from finer_labels: the served finer.json's list
    assert meta.model_card == (served.export.version / "MODEL_CARD.md").read_text()  # the version's own card
    assert meta.model_card.startswith("# Model card: finer_model") and "## Limitations" in meta.model_card


# --- bad input: refused before anything is sent (the client points at a closed port) ----------------

@pytest.mark.parametrize("texts, message", [
    (None, "not NoneType"),
    (42, "not int"),
    (["fine", None], "texts[1] is NoneType"),
    (["fine", 3.5], "texts[1] is float"),
    ([b"fine", b"caf\xe9 7.00 %"], "texts[1] is not valid UTF-8 (byte 3"),
    (b"\xff", "the text is not valid UTF-8"),
    (["lone \ud800 surrogate"], "texts[0] has a character UTF-8 cannot encode"),
    ({"a": "b"}, "not dict"),
], ids=["none", "int", "none-item", "float-item", "bad-utf8-item", "bad-utf8-bytes", "surrogate", "dict"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_input_is_refused_before_sending(protocol, texts, message):
    with FinerClient(closed_port_url(), protocol, retries=0) as client:
        with pytest.raises(InvalidInput) as caught:
            client.tag(texts)
    assert message in str(caught.value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_empty_input_needs_no_server(protocol):
    with FinerClient(closed_port_url(), protocol, retries=0) as client:
        assert client.tag([]) == []
        assert client.tag(["", ""]) == [[], []]
        assert client.tag("") == []


@pytest.mark.parametrize("settings", [{"protocol": "ftp"}, {"timeout": 0}, {"concurrency": 0}, {"url": "https://x:1"}])
def test_bad_settings(settings):
    with pytest.raises(InvalidInput):
        FinerClient(**settings)


# --- server problems ----------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_down_raises_unreachable_after_retries(protocol):
    started = time.monotonic()
    with FinerClient(closed_port_url(), protocol, retries=3) as client:
        with pytest.raises(ServerUnreachable) as caught:
            client.tag(SENTENCES)
        assert client.health() == (False, False)
    elapsed = time.monotonic() - started
    assert 0.7 <= elapsed < 5, "three retries after 0.1 + 0.2 + 0.4 s, then give up"
    assert "4 attempts" in str(caught.value) and "python -m server" in str(caught.value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrong_model_name(served, protocol):
    with FinerClient(url(served, protocol), protocol, model="finer_nope") as client:
        assert client.health() == (True, False)
        started = time.monotonic()
        with pytest.raises(ModelNotReady) as caught:
            client.tag(SENTENCES[0])
    assert time.monotonic() - started < 2, "not retried"
    assert "finer_nope" in str(caught.value) and "--model" in str(caught.value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_that_never_answers_times_out_without_retry(protocol):
    with socket.socket() as hole:  # accepts connections (kernel backlog), never answers
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        started = time.monotonic()
        with FinerClient(f"127.0.0.1:{hole.getsockname()[1]}", protocol, timeout=1, retries=3) as client:
            with pytest.raises(RequestTimeout) as caught:
                client.tag(SENTENCES[0])
        assert time.monotonic() - started < 2.5
    assert "within 1 s" in str(caught.value)


def test_server_dying_mid_call_raises_typed_errors(tiny_export, tmp_path):
    """A separate server is killed (SIGKILL, like a crash) while long calls of both protocols run."""
    server = TritonServer(tiny_export.repository, free_port(), free_port(), free_port(),
                          log_file=tmp_path / "server.log", backend_dir=tmp_path / "backends")
    server.start()
    try:
        server.wait_ready(120)
        text = paragraphs(600_000)
        outcome = {}

        def call(protocol, address):
            started = time.monotonic()
            try:
                with FinerClient(address, protocol, timeout=20, retries=2) as client:
                    outcome[protocol] = client.tag(text)
            except BaseException as e:
                outcome[protocol] = e
            outcome[protocol + "_s"] = time.monotonic() - started

        threads = [threading.Thread(target=call, args=("grpc", server.grpc_url), daemon=True),
                   threading.Thread(target=call, args=("http", server.http_url), daemon=True)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        assert not outcome, "the calls should still be running when the server dies"
        os.killpg(server.process.pid, signal.SIGKILL)
        for t in threads:
            t.join(25)
        assert not any(t.is_alive() for t in threads), "a call hangs after the server died"
        for protocol in PROTOCOLS:
            assert isinstance(outcome[protocol], ServerUnreachable), outcome[protocol]
            assert outcome[protocol + "_s"] < 22
    finally:
        server.stop()


# --- asyncio client -----------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_async_client(served, protocol):
    texts = [f"{i}: {SENTENCES[i % 4]}" for i in range(100)] + [paragraphs(15_000)]
    expected = served.reference(texts[:100])
    with FinerClient(url(served, protocol), protocol) as sync:
        long_expected = sync.tag(texts[-1])

    async def run():
        async with AsyncFinerClient(url(served, protocol), protocol, concurrency=3) as client:
            health, meta = await client.health(), await client.metadata()
            one = await client.tag(SENTENCES[0])
            many, again = await asyncio.gather(client.tag(texts), client.tag(texts[:10]))
            with pytest.raises(InvalidInput):
                await client.tag(["ok", None])
            assert await client.tag([]) == []
            return health, meta, one, many, again

    health, meta, one, many, again = asyncio.run(run())
    assert health == (True, True) and meta.max_windows == 64 and meta.labels == served.config.labels
    assert_matches(one, served.reference(SENTENCES[:1])[0], SENTENCES[0])
    for got, want, text in zip(many, expected, texts):
        assert_matches(got, want, text)
    assert many[-1] == long_expected and again == many[:10]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_async_errors_are_typed(served, protocol):
    async def run(address, **kw):
        async with AsyncFinerClient(address, protocol, **kw) as client:
            return await client.health(), await client.tag("x 1")

    started = time.monotonic()
    with pytest.raises(ServerUnreachable):
        asyncio.run(run(closed_port_url(), retries=2))
    assert time.monotonic() - started < 3
    with pytest.raises(ModelNotReady):
        asyncio.run(run(url(served, protocol), model="finer_nope"))


# --- packaging ----------------------------------------------------------------------------------------

def test_client_imports_no_torch_or_training():
    code = ("import sys, client, client.aio, client.cli; "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'training')); "
            "print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_errors_share_a_base():
    assert all(issubclass(e, FinerError) for e in (ServerUnreachable, ModelNotReady, InvalidInput, RequestTimeout))
