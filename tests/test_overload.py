"""Under load the server bends: admission control, a canary that load cannot starve, the private side.

Against the real server: many clients far past capacity are answered or refused `[overloaded]`,
never restarted; the client waits out a full server; Triton is reachable only through the front
doors; and the odd requests of the reliability probe get a clear 4xx with a code.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from client import FinerClient, ServerOverloaded
from client.replicas import CUT_EVERY_S, Pace
from loadtest.overload import fitting_document, run_phase
from loadtest.sentences import read_sentences
from loadtest.server_process import ServerProcess
from server.admission import MEASURE_S, Admission

SENTENCE = "The company issued $300 million of 7.00% senior notes due 2030."


def post(url: str, body: bytes, path: str = "/v2/models/finer/infer", headers: dict | None = None):
    """(status, JSON answer, headers) from the HTTP front door."""
    request = urllib.request.Request(url + path, body, {"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read() or b"{}"), answer.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), e.headers


def text_body(text: str) -> bytes:
    return json.dumps({"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": [text]}]}).encode()


# --- admission and pace, in process --------------------------------------------------------------
def test_admission_refuses_beyond_its_budget_and_measures_capacity():
    admission = Admission(floor=10_000, request_bytes=1000)
    big = admission.admit(50_000)
    assert big is not None, "an idle server takes any request"
    assert admission.admit(10) is None, "nothing more while the work in flight is over the budget"
    message, retry_after = admission.refusal()
    assert "[overloaded]" in message and "retry after" in message and retry_after >= 1
    time.sleep(MEASURE_S + 0.1)
    admission.done(big)
    assert admission.capacity == pytest.approx(51_000 / (MEASURE_S + 0.1), rel=0.3)
    assert admission.budget() == max(10_000, int(admission.capacity * admission.queue_s))
    small = [admission.admit(100) for _ in range(5)]
    assert all(small) and admission.in_flight == 5 and admission.busy(60)
    for ticket in small:
        admission.done(ticket)
    assert admission.in_flight == 0 and admission.cost == 0 and not admission.busy(60)
    assert admission.stats()["refused"] == 1


def test_admission_bounds_the_requests_in_flight():
    admission = Admission(floor=10**9, max_requests=3)
    tickets = [admission.admit(1) for _ in range(3)]
    assert all(tickets) and admission.admit(1) is None


def test_pace_halves_on_refusals_and_regains_one_per_streak():
    pace = Pace(8)
    pace.overloaded()
    pace.overloaded()  # the same burst of refusals: one cut
    assert pace.limit == 4 and pace.cuts == 1
    for _ in range(4):
        pace.answered()
    assert pace.limit == 5
    time.sleep(CUT_EVERY_S)
    pace.overloaded()
    assert pace.limit == 2
    for _ in range(100):
        pace.answered()
    assert pace.limit == 8, "never above the most it was given"


# --- the real server under overload --------------------------------------------------------------
def test_clients_far_past_capacity_are_answered_or_refused_and_nothing_restarts(tiny_export, tmp_path):
    with ServerProcess(tiny_export.repository, tmp_path / "server.log") as server:
        text = fitting_document(server, read_sentences(None), 32768)
        single = run_phase(server, text, 1, 6)
        capacity = len(single.answered) / single.seconds
        crowd = run_phase(server, text, 40, 12)
    row = crowd.row(capacity)
    assert row["refused"] > 0, "40 clients of the largest document must be past capacity"
    assert row["other"] == 0, row["other_examples"]
    assert row["restarts"] == 0 and row["not_ready"] == 0 and len(crowd.readiness) > 50, row
    assert row["slowest_refusal_s"] < 1.0, "a refusal is answered at once"
    assert row["max_s"] < 15.0, "an admitted request waits about a second of work, not the whole crowd"
    assert row["goodput"] >= 0.8 * capacity, (row["goodput"], capacity)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_client_waits_out_a_full_server(served, protocol):
    admission = served.server.admission
    url = served.server.http_url if protocol == "http" else served.server.grpc_url
    heard = []
    full = admission.admit(admission.budget())  # the server holds all the work it admits
    threading.Timer(1.5, admission.done, [full, False]).start()
    with FinerClient(url, protocol, timeout=30, on_overload=heard.append) as client:
        entities = client.tag(SENTENCE)
    assert entities and heard and all(isinstance(e, ServerOverloaded) and "[overloaded]" in str(e) for e in heard)
    assert all(0.1 <= e.retry_after_s <= 30 for e in heard)

    full = admission.admit(admission.budget())
    try:
        with FinerClient(url, protocol, timeout=1.5) as client:
            started = time.monotonic()
            with pytest.raises(ServerOverloaded):
                client.tag(SENTENCE)
            assert time.monotonic() - started < 2.5, "refusals are retried within the call's timeout only"
    finally:
        admission.done(full, False)


def test_a_refusal_carries_its_code_and_a_retry_hint(served):
    admission = served.server.admission
    full = admission.admit(admission.budget())
    try:
        status, answer, headers = post(served.server.http_url, text_body(SENTENCE))
        assert status == 429 and "[overloaded]" in answer["error"] and int(headers["Retry-After"]) >= 1
        client = grpcclient.InferenceServerClient(served.server.grpc_url)
        inp = grpcclient.InferInput("TEXT", [1], "BYTES")
        inp.set_data_from_numpy(np.array([SENTENCE.encode()], dtype=object))
        with pytest.raises(InferenceServerException) as caught:
            client.infer("finer", [inp])
        assert caught.value.status() == "StatusCode.RESOURCE_EXHAUSTED" and "[overloaded]" in caught.value.message()
        # health and metadata are never refused for load
        assert client.is_server_ready() and client.get_model_metadata("finer")
        with urllib.request.urlopen(served.server.http_url + "/v2/health/ready", timeout=5) as ready:
            assert ready.status == 200
    finally:
        admission.done(full, False)
    assert post(served.server.http_url, text_body(SENTENCE))[0] == 200


# --- the private side ----------------------------------------------------------------------------
def test_triton_listens_only_on_a_private_socket_and_no_secret_is_on_its_command_line(served):
    triton = served.server.triton
    process = psutil.Process(triton.process.pid)
    listening = {c.laddr.port for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
    assert listening == {triton.metrics_port}, "HTTP and gRPC are Unix sockets; only the read-only metrics port is TCP"
    assert triton.socket_dir.stat().st_mode & 0o777 == 0o700
    cmdline = " ".join(process.cmdline())
    assert "restricted" not in cmdline and "key" not in cmdline.lower(), cmdline


SYSTEM_PYTHON = "/usr/bin/python3"  # one that user nobody may run (the venv's lives under root's home)


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(SYSTEM_PYTHON),
                    reason="switching to user nobody needs root and a system python3")
def test_another_local_user_reaches_triton_only_through_the_front_doors(served):
    probe = ("import socket, sys\n"
             "def reach(family, address):\n"
             "    s = socket.socket(family, socket.SOCK_STREAM)\n"
             "    try:\n"
             "        s.connect(address); return 'connected'\n"
             "    except OSError as e:\n"
             "        return type(e).__name__\n"
             f"print(reach(socket.AF_UNIX, {str(served.server.triton.http_url.removeprefix('unix:'))!r}))\n"
             f"print(reach(socket.AF_UNIX, {str(served.server.triton.grpc_url.removeprefix('unix:'))!r}))\n"
             f"print(reach(socket.AF_INET, ('127.0.0.1', {served.server.http_port})))\n")

    def as_nobody():
        os.setgid(65534)
        os.setuid(65534)

    out = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30,
                         preexec_fn=as_nobody, cwd="/").stdout.split()
    assert out == ["PermissionError", "PermissionError", "connected"], out


# --- the small findings: a clear 4xx with a code -----------------------------------------------------
def test_a_lone_surrogate_in_json_is_bad_text(served):
    status, answer, _ = post(served.server.http_url, text_body("rate \ud800 7.00 %"))
    assert status == 400 and "[bad_text]" in answer["error"], answer
    assert post(served.server.http_url, text_body("rate \u00e9 7.00 %"))[0] == 200, "real non-ASCII text is fine"


def test_an_overlong_request_line_is_one_log_line_not_a_traceback(served, caplog):
    caplog.set_level("DEBUG", logger="aiohttp.server")
    with socket.create_connection(("127.0.0.1", served.server.http_port), timeout=10) as s:
        s.sendall(b"GET /v2/health/ready?" + b"x" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = s.recv(200)
    assert answer.split(b" ")[1] == b"400", answer[:80]
    time.sleep(0.2)
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records and not any(r.exc_info or "\n" in r.getMessage() for r in records), \
        [r.getMessage()[:200] for r in records]


@pytest.fixture()
def keyed(tiny_export, tmp_path):
    from server.service import FinerServer
    from server.triton import free_port

    with FinerServer(tiny_export.repository, free_port(), free_port(), free_port(), log_file=tmp_path / "server.log",
                     backend_dir=tmp_path / "backends", admin_key="operator-key", canary_interval_s=0.5) as server:
        yield server


def test_operator_and_restart_errors_are_coded_and_never_name_the_private_side(keyed):
    key = {"finer-admin-key": "operator-key"}
    for body in [{"key": "/no-such-region", "offset": 0, "byte_size": 64},
                 {"key": "/dev/null", "offset": 0, "byte_size": 2**40}]:
        status, answer, _ = post(keyed.http_url, json.dumps(body).encode(),
                                 "/v2/systemsharedmemory/region/r/register", key)
        assert status == 400 and "[bad_input]" in answer["error"], answer
    client = grpcclient.InferenceServerClient(keyed.grpc_url)
    with pytest.raises(InferenceServerException) as caught:
        client.register_system_shared_memory("r", "/no-such-region", 64, headers=key)
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT" and "[bad_input]" in caught.value.message()

    private = str(keyed.triton.socket_dir)
    os.killpg(keyed.process.pid, signal.SIGKILL)
    messages, until = [], time.monotonic() + 4
    while time.monotonic() < until:
        try:
            client.infer("finer", [])
        except InferenceServerException as e:
            messages.append(e.message())
        time.sleep(0.05)
    assert messages and not [m for m in messages if private in m or "unix:" in m or "failed to connect" in m], \
        sorted(set(messages))[:5]
