"""Locust users for the served `finer` ensemble, one per protocol, sending real filing sentences.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000          # web UI on :8089
    FINER_GRPC_URL=127.0.0.1:8001 locust -f loadtest/locustfile.py ...     # gRPC address (default: --host's, port 8001)
    python -m loadtest.run --users 4 --duration 30s --protocol both        # headless, with a summary

Each user is a closed loop (no think time): mostly one sentence per request, drawn at random from
`FINER_SENTENCES` (written by `loadtest.run` from the corpus; built-in filing sentences without
it), so the corpus's length mix reaches the server; now and then a long document (consecutive
sentences, over 500 words, several windows). Both users call Triton through tritonclient and fire
Locust's request event themselves: response time is the whole call, and an error from the server,
or a reply without one JSON array per document, counts as a failure.
"""
from __future__ import annotations

# Locust first: it monkey-patches the standard library for gevent before ssl/urllib3 are imported.
from locust import User, constant, events, task  # isort: skip

import json
import os
import random
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import grpc.experimental.gevent

# gRPC's C core must use gevent before the first channel, or calls block the whole Locust process.
grpc.experimental.gevent.init_gevent()

import numpy as np  # noqa: E402
import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

try:
    from loadtest.sentences import long_document, read_sentences
except ImportError:  # `locust -f loadtest/locustfile.py` from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from loadtest.sentences import long_document, read_sentences

MODEL = "finer"
TEXTS = read_sentences(os.environ.get("FINER_SENTENCES"))
TIMEOUT_S = float(os.environ.get("FINER_TIMEOUT_S", "60"))


@events.init.add_listener
def _describe(environment, **_):
    source = os.environ.get("FINER_SENTENCES") or "built-in sentences"
    print(f"finer load test: {len(TEXTS)} texts from {source}", file=sys.stderr)


def text_input(texts: list[str], module):
    tensor = module.InferInput("TEXT", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode("utf-8") for t in texts], dtype=np.object_))
    return tensor


def check_entities(out, documents: int) -> int:
    """Bytes of the reply; ValueError unless it holds one JSON array per document."""
    if out is None or len(out) != documents:
        raise ValueError(f"ENTITIES has {0 if out is None else len(out)} elements for {documents} documents")
    size = 0
    for item in out:
        if not isinstance(json.loads(item), list):
            raise ValueError("an ENTITIES element is not a JSON array")
        size += len(item)
    return size


class RequestFailed(Exception):
    """What Locust's failure table shows: the server's or client's own message."""


def describe(error: Exception) -> str:
    message = error.message() if isinstance(error, InferenceServerException) else str(error)
    return f"{type(error).__name__}: {message or 'no message'}"[:300]


class FinerUser(User):
    abstract = True
    wait_time = constant(0)
    protocol = ""

    def on_start(self):
        self.rng = random.Random()
        self.client = self.connect()

    def on_stop(self):
        self.client.close()

    def connect(self):
        raise NotImplementedError

    def call(self, texts: list[str]):
        raise NotImplementedError

    @task(19)
    def sentence(self):
        self.request("sentence", [self.rng.choice(TEXTS)])

    @task(1)
    def document(self):
        self.request("document (500+ words)", [long_document(TEXTS, self.rng)])

    def request(self, name: str, texts: list[str]) -> None:
        size, error = 0, None
        start = time.perf_counter()
        try:
            size = check_entities(self.call(texts), len(texts))
        except Exception as e:  # noqa: BLE001 - every error is a failed request in Locust's stats
            error = RequestFailed(describe(e))
        self.environment.events.request.fire(
            request_type=self.protocol, name=name, response_time=(time.perf_counter() - start) * 1000,
            response_length=size, exception=error, context={},
        )


class FinerHttpUser(FinerUser):
    """KServe v2 over HTTP (tritonclient.http, itself gevent-based)."""

    protocol = "http"

    def connect(self):
        host = self.host or "http://127.0.0.1:8000"
        url = urlsplit(host if "://" in host else f"http://{host}")
        return httpclient.InferenceServerClient(url.netloc, ssl=url.scheme == "https",
                                                connection_timeout=TIMEOUT_S, network_timeout=TIMEOUT_S)

    def call(self, texts):
        result = self.client.infer(MODEL, [text_input(texts, httpclient)],
                                   outputs=[httpclient.InferRequestedOutput("ENTITIES")])
        return result.as_numpy("ENTITIES")


class FinerGrpcUser(FinerUser):
    """KServe v2 over gRPC; FINER_GRPC_URL, else --host's name with port 8001."""

    protocol = "grpc"

    def connect(self):
        url = os.environ.get("FINER_GRPC_URL") or f"{urlsplit(self.host or 'http://127.0.0.1').hostname}:8001"
        return grpcclient.InferenceServerClient(url)

    def call(self, texts):
        result = self.client.infer(MODEL, [text_input(texts, grpcclient)],
                                   outputs=[grpcclient.InferRequestedOutput("ENTITIES")], client_timeout=TIMEOUT_S)
        return result.as_numpy("ENTITIES")
