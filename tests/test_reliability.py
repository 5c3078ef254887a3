"""Reliability and security of the served ensemble: bad input of every kind, poison requests among
valid ones, the front doors' limits, the operator APIs, a dead step or a crashed Triton under load.

Each case reproduces a finding of the production probe (issue 12) against the real server, over
both protocols where the protocol matters.
"""
from __future__ import annotations

import gzip
import http.client
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from client import FinerClient
from client.errors import FinerError, RequestTimeout
from finer.serving import ServingSpec
from server.triton import wait_until

PROTOCOLS = ("http", "grpc")
SENTENCE = "The company issued $300 million of 7.00% senior notes due 2030."
SPEC = ServingSpec()
INVALID = ("400", "StatusCode.INVALID_ARGUMENT")


def triton_client(served, protocol: str):
    if protocol == "http":
        return httpclient.InferenceServerClient(served.server.http_url.removeprefix("http://"), network_timeout=60)
    return grpcclient.InferenceServerClient(served.server.grpc_url)


def tensor(module, name: str, array: np.ndarray, datatype: str):
    inp = module.InferInput(name, list(array.shape), datatype)
    inp.set_data_from_numpy(array)
    return inp


def strings(values) -> np.ndarray:
    return np.array([v if isinstance(v, bytes) else v.encode() for v in values], dtype=np.object_)


def ids(rows: list[list[int]]) -> np.ndarray:
    return np.array(rows, dtype=np.int64)


def post_inputs(n_labels: int, **changes) -> list[tuple]:
    """finer_postprocess inputs for "rate 7.00" (two words), with some replaced."""
    inputs = {
        "TEXT": (strings(["rate 7.00"]), "BYTES"),
        "LABEL_IDS": (np.zeros((1, 4), np.int64), "INT64"),
        "LABEL_SCORES": (np.ones((1, 4), np.float32), "FP32"),
        "WORD_IDS": (np.array([[-1, 0, 1, -1]], np.int32), "INT32"),
        "WORD_SPANS": (np.array([[0, 0, 4], [0, 5, 9]], np.int32), "INT32"),
    }
    inputs.update(changes)
    return [(name, array, dtype) for name, (array, dtype) in inputs.items()]


def model_inputs(input_ids: np.ndarray, mask: np.ndarray | None = None, dtype: str = "INT64") -> list[tuple]:
    mask = np.ones_like(input_ids) if mask is None else mask
    return [("input_ids", input_ids, dtype), ("attention_mask", mask, "INT64")]


# name -> (model, inputs(n_labels), text the answer must contain)
CASES = {
    # finer_model called directly
    "model-ids-over-vocabulary": ("finer_model", lambda n: model_inputs(ids([[2, 10**9, 3, 0]])), "[bad_input]"),
    "model-ids-negative": ("finer_model", lambda n: model_inputs(ids([[2, -1, 3, 0]])), "negative"),
    "model-ids-beyond-int32": ("finer_model", lambda n: model_inputs(ids([[2, 2**32 + 101, 3, 0]])), "[bad_input]"),
    "model-mask-longer-than-ids": ("finer_model", lambda n: model_inputs(ids([[2, 50, 3, 0]]), ids([[1] * 5])), ""),
    "model-batch-sizes-differ": ("finer_model", lambda n: model_inputs(ids([[2, 50], [2, 50]]), ids([[1, 1]])), ""),
    "model-float-ids": ("finer_model", lambda n: model_inputs(np.array([[2.0, 50.0]], np.float32), ids([[1, 1]]), "FP32"), ""),
    "model-missing-mask": ("finer_model", lambda n: model_inputs(ids([[2, 50]]))[:1], ""),
    "model-over-max-batch": ("finer_model", lambda n: model_inputs(ids([[2, 50]] * (SPEC.max_windows + 1))), ""),
    # finer_postprocess called directly with tensors that did not come from finer_preprocess
    "post-label-id-range": ("finer_postprocess", lambda n: post_inputs(n, LABEL_IDS=(np.full((1, 4), n, np.int64), "INT64")), "[bad_input]"),
    "post-scores-shape": ("finer_postprocess", lambda n: post_inputs(n, LABEL_SCORES=(np.ones((1, 3), np.float32), "FP32")), "[bad_input]"),
    "post-negative-span": ("finer_postprocess", lambda n: post_inputs(n, WORD_SPANS=(np.array([[0, -5, 4], [0, 5, 9]], np.int32), "INT32")), "[bad_input]"),
    "post-span-past-text": ("finer_postprocess", lambda n: post_inputs(n, WORD_SPANS=(np.array([[0, 0, 4], [0, 5, 99]], np.int32), "INT32")), "[bad_input]"),
    "post-span-document": ("finer_postprocess", lambda n: post_inputs(n, WORD_SPANS=(np.array([[0, 0, 4], [3, 5, 9]], np.int32), "INT32")), "[bad_input]"),
    "post-word-ids-range": ("finer_postprocess", lambda n: post_inputs(n, WORD_IDS=(np.array([[-1, 0, 7, -1]], np.int32), "INT32")), "[bad_input]"),
    "post-word-ids-shape": ("finer_postprocess", lambda n: post_inputs(n, WORD_IDS=(np.array([[-1, 0, 1]], np.int32), "INT32")), "[bad_input]"),
    "post-spans-shape": ("finer_postprocess", lambda n: post_inputs(n, WORD_SPANS=(np.array([[0, 0], [0, 5]], np.int32), "INT32")), "unexpected shape"),
    "post-unknown-labels": ("finer_postprocess", lambda n: post_inputs(n) + [("LABELS", strings(["NoSuchType"]), "BYTES")], "[bad_labels]"),
    # finer_preprocess called directly
    "pre-invalid-utf8": ("finer_preprocess", lambda n: [("TEXT", strings([b"\xff\xfe 7.00"]), "BYTES")], "[bad_text]"),
    "pre-over-max-text-bytes": ("finer_preprocess", lambda n: [("TEXT", strings(["a " * 20_000]), "BYTES")], "[too_big]"),
    "pre-too-many-documents": ("finer_preprocess", lambda n: [("TEXT", strings(["a"] * 65), "BYTES")], "[too_big]"),
    # the ensemble
    "ensemble-text-as-int32": ("finer", lambda n: [("TEXT", np.array([1, 2], np.int32), "INT32")], ""),
    "ensemble-missing-text": ("finer", lambda n: [("LABELS", strings(["debt"]), "BYTES")], ""),
    "ensemble-extra-input": ("finer", lambda n: [("TEXT", strings([SENTENCE]), "BYTES"), ("EXTRA", strings(["x"]), "BYTES")], ""),
    "ensemble-text-2d": ("finer", lambda n: [("TEXT", strings([SENTENCE]).reshape(1, 1), "BYTES")], ""),
    "ensemble-unknown-labels": ("finer", lambda n: [("TEXT", strings([SENTENCE]), "BYTES"), ("LABELS", strings(["nope"]), "BYTES")], "[bad_labels]"),
    "ensemble-over-max-text-bytes": ("finer", lambda n: [("TEXT", strings(["7.00 % " * 6_000]), "BYTES")], "[too_big]"),
    "labels-model-extra-input": ("finer_labels", lambda n: [("X", strings(["x"]), "BYTES")], ""),
}


@pytest.fixture(scope="module")
def first_pid(served):
    return served.server.process.pid


def assert_clean_refusal(error: InferenceServerException, expected: str) -> None:
    message = error.message()
    assert error.status() in INVALID, (error.status(), message)
    assert expected in message
    assert len(message) < 600 and "Traceback" not in message and "/work" not in message and ".py" not in message


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_with_a_short_reason(served, first_pid, protocol, case):
    model, make, expected = CASES[case]
    module = httpclient if protocol == "http" else grpcclient
    client = triton_client(served, protocol)
    inputs = [tensor(module, name, array, dtype) for name, array, dtype in make(len(served.config.labels))]
    with pytest.raises(InferenceServerException) as caught:
        client.infer(model, inputs)
    assert_clean_refusal(caught.value, expected)
    assert client.is_server_live() and served.server.process.pid == first_pid


def infer_model(client, module, input_ids: np.ndarray):
    result = client.infer("finer_model", [tensor(module, n, a, d) for n, a, d in model_inputs(input_ids)])
    return result.as_numpy("label_scores")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_poison_request_fails_alone(served, first_pid, protocol):
    """12 valid requests and one with an id outside the vocabulary, at once, three times: the dynamic
    batcher merges them, and only the bad one may fail."""
    module = httpclient if protocol == "http" else grpcclient
    good, bad = ids([[2, 50, 51, 3]]), ids([[2, 10**9, 51, 3]])
    expected = infer_model(triton_client(served, protocol), module, good)

    def send(i):
        try:  # a client per call, made in its thread: tritonclient's HTTP client is bound to its thread
            return infer_model(triton_client(served, protocol), module, bad if i == 6 else good)
        except InferenceServerException as e:
            return e

    for _ in range(3):
        with ThreadPoolExecutor(13) as pool:
            answers = list(pool.map(send, range(13)))
        assert isinstance(answers[6], InferenceServerException)
        assert_clean_refusal(answers[6], "[bad_input]")
        for i, answer in enumerate(answers):
            if i != 6:
                assert not isinstance(answer, Exception), answer
                np.testing.assert_allclose(answer, expected, atol=1e-5)
    assert served.server.process.pid == first_pid


def raw_post(url: str, body: bytes, headers: dict | None = None, path: str = "/v2/models/finer/infer"):
    """(status, parsed JSON answer) from the HTTP front door at `url`."""
    request = urllib.request.Request(url + path, body,
                                     {"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def text_body(texts: list[str], name: str = "TEXT") -> bytes:
    return json.dumps({"inputs": [{"name": name, "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}).encode()


def test_deeply_nested_json_is_refused_before_triton_parses_it(served, first_pid):
    depth = 60_000  # about 120 kB: crashed Triton 2.51's HTTP frontend (SIGSEGV)
    body = ('{"inputs":[{"name":"TEXT","shape":[1],"datatype":"BYTES","data":' + "[" * depth + '"x"' + "]" * depth
            + "}]}").encode()
    status, answer = raw_post(served.server.http_url, body)
    assert status == 400 and "nests deeper" in answer["error"]
    assert raw_post(served.server.http_url, text_body([SENTENCE]))[0] == 200
    assert served.server.process.pid == first_pid


@pytest.mark.parametrize("body, headers, status, reason", [
    (b'{"inputs": [', {}, 400, "not valid JSON"),
    (b"\xff\xfe{}", {}, 400, "not valid JSON"),
    (gzip.compress(text_body([SENTENCE])), {"Content-Encoding": "gzip"}, 415, "uncompressed"),
    (text_body([SENTENCE]), {"Inference-Header-Content-Length": "999999"}, 400, "does not fit"),
    (text_body([SENTENCE], name="T" * 20_000), {}, 400, "20000 characters"),
    (text_body(["7.00 % " * 150_000]), {}, 413, "max_body_bytes"),
], ids=["malformed", "not-utf8", "compressed", "binary-header-too-long", "long-input-name", "1mb-text"])
def test_front_door_refuses_bodies_triton_should_not_parse(served, first_pid, body, headers, status, reason):
    got, answer = raw_post(served.server.http_url, body, headers)
    assert got == status and reason in answer["error"]
    assert len(json.dumps(answer)) < 600
    assert served.server.process.pid == first_pid


def test_a_client_that_asks_for_no_encoding_gets_plain_json(served):
    """What `curl -d ...` does (no Accept-Encoding): the answer must not come back gzipped."""
    host, port = served.server.http_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", "/v2/models/finer/infer", skip_accept_encoding=True)
    body = text_body([SENTENCE])
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    answer = connection.getresponse()
    assert answer.status == 200 and answer.getheader("Content-Encoding") in (None, "identity")
    assert json.loads(answer.read())["outputs"][0]["name"] == "ENTITIES"
    connection.close()


def test_oversized_body_is_refused_from_its_header_alone(served):
    """A client announcing 200 MB gets 413 at once, without sending (or the server reading) it."""
    host, port = served.server.http_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    started = time.monotonic()
    connection.putrequest("POST", "/v2/models/finer/infer")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(200 * 2**20))
    connection.endheaders()
    connection.send(b'{"inputs": [')
    answer = connection.getresponse()
    assert answer.status == 413 and b"[too_big]" in answer.read()
    assert time.monotonic() - started < 5
    connection.close()


def test_chunked_body_over_the_limit_is_cut_off(served):
    chunks = (b'{"inputs": [{"name": "TEXT", "data": ["' + b"a" * 65536 for _ in range(16))
    request = urllib.request.Request(served.server.http_url + "/v2/models/finer/infer", chunks,
                                     {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 413


def test_grpc_does_not_echo_a_huge_tensor_name(served):
    client = grpcclient.InferenceServerClient(served.server.grpc_url)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("finer", [tensor(grpcclient, "T" * 20_000, strings([SENTENCE]), "BYTES")])
    # Triton refuses the name; its answer quoting it is either cut here or too big for gRPC metadata
    assert caught.value.status() in ("StatusCode.INVALID_ARGUMENT", "StatusCode.RESOURCE_EXHAUSTED")
    assert len(caught.value.message()) < 1200 and client.is_server_ready()


def test_grpc_message_over_the_limit_is_refused(served):
    client = grpcclient.InferenceServerClient(served.server.grpc_url)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("finer", [tensor(grpcclient, "TEXT", strings(["7.00 % " * 150_000]), "BYTES")])
    assert caught.value.status() == "StatusCode.RESOURCE_EXHAUSTED" and "[too_big]" in caught.value.message()
    assert client.is_server_ready()


HTTP_OPERATOR_CALLS = [
    ("GET", "/v2/logging", None), ("POST", "/v2/logging", b'{"log_verbose_level": 1}'),
    ("GET", "/v2/trace/setting", None), ("POST", "/v2/trace/setting", b'{"trace_level": ["TIMESTAMPS"]}'),
    ("POST", "/v2/models/finer/trace/setting", b'{"trace_level": ["TIMESTAMPS"]}'),
    ("GET", "/v2/systemsharedmemory/status", None),
    ("POST", "/v2/systemsharedmemory/region/x/register", b'{"key": "/x", "offset": 0, "byte_size": 64}'),
    ("POST", "/v2/repository/index", b"{}"), ("POST", "/v2/repository/models/finer/unload", b"{}"),
]


@pytest.mark.parametrize("method, path, body", HTTP_OPERATOR_CALLS, ids=[f"{m} {p}" for m, p, _ in HTTP_OPERATOR_CALLS])
def test_operator_apis_are_refused_over_http(served, method, path, body):
    request = urllib.request.Request(served.server.http_url + path, body, method=method)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 403 and b"finer-admin-key" in caught.value.read()


def test_operator_apis_are_refused_over_grpc(served):
    client = grpcclient.InferenceServerClient(served.server.grpc_url)
    calls = [client.get_log_settings, lambda: client.update_log_settings({"log_verbose_level": 1}),
             client.get_trace_settings, client.get_system_shared_memory_status,
             lambda: client.register_system_shared_memory("x", "/x", 64),
             client.get_model_repository_index, lambda: client.unload_model("finer")]
    for call in calls:
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() == "StatusCode.PERMISSION_DENIED"
    # and a wrong key is no key; inference, metadata and statistics stay open
    with pytest.raises(InferenceServerException):
        client.get_log_settings(headers={"finer-admin-key": "guess"})
    assert client.is_model_ready("finer") and client.get_inference_statistics("finer")


def test_open_apis_stay_open(served):
    for path in ["/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/finer", "/v2/models/finer/config",
                 "/v2/models/finer/ready", "/v2/models/finer/stats"]:
        with urllib.request.urlopen(served.server.http_url + path, timeout=10) as answer:
            assert answer.status == 200, path


def test_trickling_reply_cannot_outlast_the_deadline():
    """A server that sends its reply one byte at a time: tag() still ends at its timeout."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(4)
    stop = threading.Event()

    def trickle():
        connection, _ = hole.accept()
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
        while not stop.wait(0.3):
            try:
                connection.sendall(b" ")
            except OSError:
                break
        connection.close()

    threading.Thread(target=trickle, daemon=True).start()
    started = time.monotonic()
    with FinerClient(f"127.0.0.1:{hole.getsockname()[1]}", "http", timeout=2, retries=0) as client:
        with pytest.raises(RequestTimeout):
            client.tag(SENTENCE)
    elapsed = time.monotonic() - started
    stop.set()
    hole.close()
    assert elapsed < 3.5


def test_the_server_survived_the_battery(served, first_pid):
    assert served.server.process.pid == first_pid
    with FinerClient(served.server.grpc_url) as client:
        assert [e.to_dict() for e in client.tag(SENTENCE)] == served.reference([SENTENCE])[0]


# --- supervision ------------------------------------------------------------------------------

class Load:
    """Clients of both protocols calling tag() in a loop, recording (time, outcome)."""

    def __init__(self, server, per_protocol: int = 2):
        self.outcomes: list[tuple[float, str, object]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.loop, args=(p, server), daemon=True)
                        for p in PROTOCOLS for _ in range(per_protocol)]

    def loop(self, protocol, server):
        url = server.grpc_url if protocol == "grpc" else server.http_url
        with FinerClient(url, protocol, timeout=5, retries=1) as client:
            while not self.stop.is_set():
                try:
                    client.tag(SENTENCE)
                    self.outcomes.append((time.monotonic(), protocol, None))
                except Exception as e:  # noqa: BLE001 - recorded, asserted below
                    self.outcomes.append((time.monotonic(), protocol, e))
                    time.sleep(0.05)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(15)

    def first_success_after(self, moment: float, protocol: str) -> float | None:
        return next((t for t, p, e in list(self.outcomes) if p == protocol and e is None and t > moment), None)


def wait_for(condition, timeout: float, step: float = 0.1) -> float:
    """The moment `condition()` first held (time.monotonic())."""
    if wait_until(condition, timeout, step) is None:
        raise AssertionError(f"not within {timeout} s")
    return time.monotonic()


def ready_code(server) -> int:
    try:
        with urllib.request.urlopen(server.http_url + "/v2/health/ready", timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def test_dead_stub_and_crashed_triton_are_restarted_under_load(tiny_export, tmp_path, caplog):
    from server.service import FinerServer
    from server.triton import free_port

    caplog.set_level("INFO", logger="finer.server")
    server = FinerServer(tiny_export.repository, free_port(), free_port(), free_port(), log_file=tmp_path / "server.log",
                         backend_dir=tmp_path / "backends", admin_key="operator-key", canary_interval_s=0.5)
    with server, Load(server) as load:
        regions = server.triton.stale_regions()
        assert regions, "the Python stubs' shared-memory regions carry the server's prefix"
        wait_for(lambda: load.first_success_after(0, "grpc") and load.first_success_after(0, "http"), 30)

        # 1. SIGKILL the preprocess stub: Triton alone would fail every request forever while ready.
        (stub,) = [p for p in psutil.Process(server.process.pid).children()
                   if "finer_preprocess" in " ".join(p.cmdline())]
        stub.kill()
        killed = time.monotonic()
        unready = wait_for(lambda: ready_code(server) == 503, 15, 0.05)
        assert unready - killed < 2.0, f"readiness said 200 for {unready - killed:.1f} s after the stub died"
        wait_for(lambda: server.supervisor.restarts == 1, 60)
        assert ready_code(server) == 200 or wait_for(lambda: ready_code(server) == 200, 15, 0.05) - killed < 15
        ready_at = wait_for(lambda: ready_code(server) == 200, 30, 0.05)
        for protocol in PROTOCOLS:
            recovered = wait_for(lambda: load.first_success_after(ready_at, protocol), 10, 0.05)
            assert recovered - ready_at < 2.0, f"{protocol} clients used the restarted server {recovered - ready_at:.1f} s late"
        assert set(server.triton.stale_regions()).isdisjoint(regions), "the dead server's regions were removed"

        # 2. SIGKILL tritonserver itself.
        os.killpg(server.process.pid, signal.SIGKILL)
        wait_for(lambda: server.supervisor.restarts == 2, 60)
        ready_again = wait_for(lambda: ready_code(server) == 200, 30, 0.05)
        wait_for(lambda: load.first_success_after(ready_again, "grpc") and load.first_success_after(ready_again, "http"), 10)

        # the operator key opens what stays shut to everyone else
        request = urllib.request.Request(server.http_url + "/v2/logging", headers={"finer-admin-key": "operator-key"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert "log_verbose_level" in json.loads(answer.read())

    errors = [e for t, p, e in load.outcomes if e is not None]
    assert errors and all(isinstance(e, FinerError) for e in errors), {type(e).__name__ for e in errors}
    assert not [e for t, p, e in load.outcomes if e is not None and t < killed], "no failures before the kill"
    reasons = [r.getMessage() for r in caplog.records if r.name == "finer.server" and r.getMessage().startswith("unhealthy")]
    # The pulse sees the stub gone (or under load Triton itself aborts on it first).
    assert len(reasons) == 2 and ("finer_preprocess" in reasons[0] and "died" in reasons[0]
                                  or "tritonserver exited (code -6)" in reasons[0]), reasons
    assert "tritonserver exited (code -9)" in reasons[1], reasons
    assert (tmp_path / "server.log.1").is_file(), "the crashed server's log is kept beside the new one"


def test_front_door_alone_in_front_of_a_triton(tiny_export, tmp_path):
    """`python -m server.front` beside a Triton it does not manage, as in docker-compose: the same
    limits and gate, and readiness that follows the canary (no restarts: the orchestrator's job)."""
    import subprocess
    import sys

    from server.triton import TritonServer, free_port

    triton = TritonServer(tiny_export.repository, free_port(), free_port(), free_port(),
                          log_file=tmp_path / "triton.log", backend_dir=tmp_path / "backends")
    http_port, grpc_port = free_port(), free_port()
    env = {**os.environ, "FINER_ADMIN_KEY": triton.internal_key}  # as compose gives both the same key
    with triton:
        front = subprocess.Popen([sys.executable, "-m", "server.front", "--triton-http", triton.http_url,
                                  "--triton-grpc", triton.grpc_url, "--repository", str(tiny_export.repository),
                                  "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--canary-interval", "0.5"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        class Front:
            http_url, grpc_url = f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}"

        try:
            wait_for(lambda: ready_code(Front) == 200, 30)
            for protocol in PROTOCOLS:
                with FinerClient(Front.grpc_url if protocol == "grpc" else Front.http_url, protocol) as client:
                    assert [e.text for e in client.tag(SENTENCE)]
            assert raw_post(Front.http_url, text_body(["7.00 % " * 150_000]))[0] == 413
            refused = urllib.request.Request(Front.http_url + "/v2/logging")
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(refused, timeout=10)
            admitted = urllib.request.Request(Front.http_url + "/v2/logging", headers={"finer-admin-key": triton.internal_key})
            with urllib.request.urlopen(admitted, timeout=10) as answer:
                assert answer.status == 200
            (stub,) = [p for p in psutil.Process(triton.process.pid).children() if "finer_postprocess" in " ".join(p.cmdline())]
            stub.kill()
            wait_for(lambda: ready_code(Front) == 503, 15, 0.1)
        finally:
            front.terminate()
            output = front.communicate(timeout=30)[0]
    assert front.returncode == 0 and "not healthy" in output, output
