"""The served `finer` ensemble on the real embedded Triton, over HTTP and gRPC, against PyTorch in-process."""
from __future__ import annotations

import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import ROOT, as_object_array, copy_repository, stub_processes
from finer.artifacts import STEP_FILES
from finer.pipeline import encode
from finer.words import split_words
from finer.serving import ServingSpec
from server.triton import free_port
from tiny_model import SEED, WORDS

SENTENCES = [
    "The notes bear interest at a stated rate of 5.25 % per annum.",
    "Borrowings under the revolving credit facility bear interest at LIBOR plus 1.75 %.",
    "The company has a maximum borrowing capacity of $ 500 million under the line of credit.",
    "The effective interest rate on the term loan was 6.1 % for the year ended December 31, 2023.",
]


def long_document(n_words: int = 1200) -> str:
    rng = random.Random(SEED)
    pool = WORDS + ["$", "%", ",", "."] + ["7.00", "1,893.6", "2023", "100", "0.5"]
    return " ".join(rng.choice(pool) for _ in range(n_words))


def assert_same(served: list[list[dict]], expected: list[list[dict]], texts: list[str]) -> None:
    assert len(served) == len(expected) == len(texts)
    for got, want, text in zip(served, expected, texts):
        assert [(e["text"], e["label"], e["start"], e["end"]) for e in got] == \
               [(e["text"], e["label"], e["start"], e["end"]) for e in want]
        assert [e["score"] for e in got] == pytest.approx([e["score"] for e in want], abs=2e-3)
        assert all(text[e["start"]:e["end"]] == e["text"] for e in got)


class Client:
    """`tag(texts)` over one protocol with tritonclient; errors surface as InferenceServerException."""

    def __init__(self, protocol: str, server):
        self.protocol = protocol
        self.module = httpclient if protocol == "http" else grpcclient
        url = server.http_url.removeprefix("http://") if protocol == "http" else server.grpc_url
        self.client = self.module.InferenceServerClient(url)

    def inputs(self, texts):
        inp = self.module.InferInput("TEXT", [len(texts)], "BYTES")
        inp.set_data_from_numpy(as_object_array(texts))
        return [inp]

    def tag(self, texts) -> list[list[dict]]:
        result = self.client.infer("finer", self.inputs(texts), outputs=[self.module.InferRequestedOutput("ENTITIES")])
        return [json.loads(x) for x in result.as_numpy("ENTITIES").reshape(-1)]

    def ready(self) -> bool:
        return self.client.is_server_ready() and self.client.is_model_ready("finer")


@pytest.fixture(scope="module", params=["http", "grpc"])
def client(request, served):
    c = Client(request.param, served.server)
    yield c
    c.client.close()


def test_startup_within_budget(served):
    assert served.startup_s < 60


def test_plain_sentences_match_pytorch(client, served):
    expected = served.reference(SENTENCES)
    assert sum(map(len, expected)) >= len(SENTENCES), "the tiny model should predict entities"
    assert_same(client.tag(SENTENCES), expected, SENTENCES)


def test_numbers_written_without_spaces(client, served):
    texts = ["Senior notes of $100 million bear interest at 7.00% per annum.", "Spread:1.25%;capacity $2.5billion."]
    served_entities = client.tag(texts)
    assert_same(served_entities, served.reference(texts), texts)
    words = {(w.start, w.end) for w in split_words(texts[0])}
    assert (texts[0].index("7.00"), texts[0].index("7.00") + 4) in words  # 7.00 stays whole, % apart
    for e in served_entities[0]:
        assert any(e["start"] == s for s, _ in words) and any(e["end"] == t for _, t in words)


def test_numbers_reach_the_model_as_shape_tokens(client, served):
    """The exported finer.json lists shape tokens; preprocess applies them with no help from the client."""
    from dataclasses import replace

    from finer.pipeline import encode

    assert served.config.number_shapes and "[X.XX]" in served.config.number_shapes
    texts = ["Senior notes of $100 million bear interest at 7.00% and 2.25% per annum."]
    words = [[w.text for w in split_words(texts[0])]]
    ids = encode(served.tokenizer, words, served.config).input_ids[0].tolist()
    assert served.tokenizer.token_to_id("[X.XX]") in ids and served.tokenizer.token_to_id("[XXX]") in ids
    unshaped = encode(served.tokenizer, words, replace(served.config, number_shapes=[])).input_ids[0].tolist()
    assert unshaped != ids
    assert_same(client.tag(texts), served.reference(texts), texts)


def test_long_document_uses_windows(client, served):
    text = long_document()
    assert len(split_words(text)) > 1000
    windows = encode(served.tokenizer, [[w.text for w in split_words(text)]], served.config).input_ids
    assert len(windows) > 1
    expected = served.reference([text])
    assert len(expected[0]) > 20
    assert_same(client.tag([text]), expected, [text])


def test_multi_document_request(client, served):
    texts = [SENTENCES[0], "", "Café revenue 📈 rose 12.5% to €3 million.", long_document(300), SENTENCES[2]]
    assert_same(client.tag(texts), served.reference(texts), texts)


@pytest.mark.parametrize("text", ["", " \n\t  ", "the company and its agreement", "\x00rate\x07 was\x1b[31m 5 %\x7f"],
                         ids=["empty", "whitespace", "no-numbers", "control-chars"])
def test_odd_text_gets_entities(client, served, text):
    assert_same(client.tag([text]), served.reference([text]), [text])
    if not text.strip():
        assert client.tag([text]) == [[]]


def test_zero_documents(client):
    assert client.tag([]) == []


@pytest.mark.parametrize("case", ["invalid-utf8", "over-max-text-bytes", "too-many-documents", "too-many-windows"])
def test_bad_requests_fail_clearly_and_server_stays_ready(client, case):
    texts, message = {
        "invalid-utf8": ([b"fine", b"caf\xe9 \xff 7.00 %"], "TEXT[1] is not valid UTF-8"),
        "over-max-text-bytes": (["the rate was 7.00 % . " * 2_000], "bytes > max_text_bytes 32768"),
        "too-many-documents": (["a"] * 65, "65 documents > max_documents 64"),
        "too-many-windows": (["a " * 3000] * 3, "windows together > limit 64"),
    }[case]
    with pytest.raises(InferenceServerException) as caught:
        client.tag(texts)
    assert message in caught.value.message()
    assert caught.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    assert client.ready()


def test_ensemble_publishes_limits(client):
    config = client.client.get_model_config("finer")
    params = (config["parameters"] if client.protocol == "http" else
              {k: {"string_value": v.string_value} for k, v in config.config.parameters.items()})
    assert params["max_documents"]["string_value"] == "64"
    assert params["max_windows"]["string_value"] == "64"


def test_concurrent_requests_are_batched_and_split_back(served, tmp_path):
    """The backend merges what the dynamic batcher hands it and splits the answers back. The shipped
    delay (100 us) rarely catches partners for a tiny model on an idle machine, so this server waits
    50 ms: the test is about the merging, not about when it happens."""
    import re

    from server.triton import TritonServer, free_port

    repository = Path(shutil.copytree(served.export.repository, tmp_path / "repo"))
    config = repository / "finer_model" / "config.pbtxt"
    config.write_text(re.sub(r"max_queue_delay_microseconds: \d+", "max_queue_delay_microseconds: 50000",
                             config.read_text()))
    texts = [f"{s} Rate {i}.{i}% on ${i} million." for i, s in enumerate(SENTENCES * 8)]
    expected = served.reference(texts)
    with TritonServer(repository, free_port(), free_port(), free_port(), log_file=tmp_path / "server.log",
                      backend_dir=tmp_path / "backends") as server:
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        c = Client("grpc", server)
        before = grpc.get_inference_statistics("finer_model").model_stats[0]  # warm-up runs count too
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda t: c.tag([t])[0], texts))
        after = grpc.get_inference_statistics("finer_model").model_stats[0]
        c.client.close()
        grpc.close()
    assert_same(results, expected, texts)
    requests = after.inference_count - before.inference_count
    runs = after.execution_count - before.execution_count
    assert requests == len(texts) and runs < requests, f"{runs} model runs for {requests} windows"


def test_plain_json_post(served):
    """What `curl -d @body.json .../v2/models/finer/infer` does."""
    body = {"inputs": [{"name": "TEXT", "shape": [2], "datatype": "BYTES", "data": SENTENCES[:2]}]}
    request = urllib.request.Request(f"{served.server.http_url}/v2/models/finer/infer",
                                     json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    (output,) = answer["outputs"]
    assert output["name"] == "ENTITIES" and output["shape"] == [2]
    assert_same([json.loads(x) for x in output["data"]], served.reference(SENTENCES[:2]), SENTENCES[:2])


def test_labels_model_answers_with_no_inputs(served):
    request = urllib.request.Request(f"{served.server.http_url}/v2/models/finer_labels/infer", b'{"inputs": []}',
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        outputs = {o["name"]: o["data"] for o in json.loads(response.read())["outputs"]}
    assert outputs["LABELS"] == served.config.labels and outputs["VERSION"] == ["1"]


# --- the launcher CLI -------------------------------------------------------------------------------

def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "server", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def ports() -> list[str]:
    return ["--http-port", str(free_port()), "--grpc-port", str(free_port()), "--metrics-port", str(free_port())]


def test_cli_serves_until_sigterm_and_leaves_no_stubs(tiny_export, tmp_path):
    repository = tiny_export.repository
    http = free_port()
    cli = subprocess.Popen(
        [sys.executable, "-m", "server", "--model-repository", str(repository), "--http-port", str(http),
         "--grpc-port", str(free_port()), "--metrics-port", str(free_port()), "--log-file", str(tmp_path / "log")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = []
        while not any("Ctrl-C" in line for line in lines):
            line = cli.stdout.readline()
            assert line, f"launcher ended early: {cli.stderr.read()}"
            lines.append(line)
        assert f"http://127.0.0.1:{http}/v2/models/finer/infer" in "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/finer/ready", timeout=5) as r:
            assert r.status == 200
        tree = psutil.Process(cli.pid).children(recursive=True)
        stubs = [p for p in tree if "triton_python_backend_stub" in " ".join(p.cmdline())]
        # preprocess, postprocess, labels, and each finer_model instance (the Python-based onnxruntime)
        assert len(stubs) == 3 + ServingSpec().model_instances
    finally:
        cli.send_signal(signal.SIGTERM)
        out, err = cli.communicate(timeout=60)
    assert cli.returncode == 0, err
    assert "stopped" in out
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_cli_missing_model_says_run_export(tmp_path):
    repository = copy_repository(tmp_path / "repo")
    result = run_cli("--model-repository", str(repository), *ports())
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "make export" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_port_in_use(tiny_export):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--model-repository", str(tiny_export.repository), "--http-port", str(port),
                         "--grpc-port", str(free_port()), "--metrics-port", str(free_port()))
    assert result.returncode == 1
    assert f"127.0.0.1:{port} is not free" in result.stderr and "--http-port" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.filterwarnings("ignore")  # the TorchScript exporter's deprecation and tracer notes
def test_cli_load_failure_gives_reason_and_log_tail(tiny_export, tmp_path):
    """A model.onnx exported without export.build (no label_ids / label_scores outputs): the official
    ONNX Runtime backend refuses it, so must we, with the reason in one line."""
    import torch

    repository = copy_repository(tmp_path / "repo")
    for step in STEP_FILES:  # the steps of a good export; only the ONNX model is broken
        shutil.copytree(tiny_export.repository / step / "1", repository / step / "1")
    version = repository / "finer_model" / "1"
    version.mkdir()
    for name in ("tokenizer.json", "finer.json"):
        (version / name).write_bytes((tiny_export.version / name).read_bytes())
    ids = torch.ones(1, 8, dtype=torch.long)
    axes = {0: "batch", 1: "length"}
    torch.onnx.export(tiny_export.torch_model(), (ids, ids), str(version / "model.onnx"), dynamo=False,
                      input_names=["input_ids", "attention_mask"], output_names=["logits"], opset_version=18,
                      dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": axes})
    started = time.monotonic()
    result = run_cli("--model-repository", str(repository), "--log-file", str(tmp_path / "log"), *ports(), timeout=120)
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: Triton exited") and "failed to load 'finer_model'" in first, result.stderr
    assert "config output 'label_ids' is not in model.onnx" in first
    assert "last lines of" in result.stderr and "Traceback" not in first
    assert time.monotonic() - started < 60
    assert stub_processes(str(repository)) == []
