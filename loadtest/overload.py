"""Overload: many clients with large requests, far past what the server can do, against a fresh server.

    python -m loadtest.overload --clients 10,50 --seconds 60 [--repository model_repository]

Starts `python -m server` as its own process, then sends one large document (real filing sentences
joined up to `--document-bytes`, cut until the server takes it as one request) as raw inference
requests, half HTTP and half gRPC:

1. one client back to back for `--seconds`: the server's capacity (documents/s) for one client;
2. for each `--clients` N: N clients at once for `--seconds`; a refused client (`[overloaded]`)
   waits the server's hint with jitter, as `FinerClient` does.

A watcher asks the front door's readiness every 0.1 s throughout. Prints one row per phase:
requests answered, refused for load, any other answer, latency of the answered ones (p50/p95/max),
the slowest refusal, goodput (answered documents/s) and its share of the one-client capacity,
readiness answers other than 200, and Triton restarts (from the server's own log).
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from client.errors import retry_hint_s
from finer.serving import ERROR_OVERLOADED, ERROR_TOO_BIG, has_code
from loadtest.sentences import DEFAULT_CORPUS, read_corpus, read_sentences
from loadtest.server_process import ServerExited, ServerProcess
from server.triton import DEFAULT_REPOSITORY

INFER = "/inference.GRPCInferenceService/ModelInfer"
RESTARTED = "Triton restarted"  # what the supervisor logs after each restart (server.supervisor)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest.overload", description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    p.add_argument("--clients", default="10,50", help="comma-separated client counts, one phase each")
    p.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    p.add_argument("--document-bytes", type=int, default=32768, help="UTF-8 bytes of the document (the server's "
                                                                     "max_text_bytes is 32768)")
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS / "test.jsonl")
    p.add_argument("--out", type=Path, default=Path(".cache/overload"), help="the server's log and overload.json")
    return p.parse_args(argv)


def body_of(text: str) -> bytes:
    return json.dumps({"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": [text]}]}).encode()


def grpc_message(text: str) -> bytes:
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name="finer")
    tensor = request.inputs.add(name="TEXT", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(text.encode())
    return request.SerializeToString()


class Http:
    def __init__(self, url: str, timeout: float):
        self.connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=timeout)

    def send(self, body: bytes) -> tuple[str, str]:
        """('ok' | 'refused' | 'other', detail)."""
        try:
            self.connection.request("POST", "/v2/models/finer/infer", body, {"Content-Type": "application/json"})
            answer = self.connection.getresponse()
            payload = answer.read()
        except (OSError, http.client.HTTPException) as e:
            self.connection.close()
            return "other", f"{type(e).__name__}: {e}"
        if answer.status == 200:
            return "ok", ""
        detail = payload.decode(errors="replace")[:300]
        return ("refused" if answer.status == 429 and has_code(detail, ERROR_OVERLOADED) else "other"), \
            f"{answer.status} {detail}"

    def close(self) -> None:
        self.connection.close()


class Grpc:
    def __init__(self, url: str, timeout: float):
        import grpc

        self.grpc, self.timeout = grpc, timeout
        self.channel = grpc.insecure_channel(url)
        self.call = self.channel.unary_unary(INFER)

    def send(self, message: bytes) -> tuple[str, str]:
        try:
            self.call(message, timeout=self.timeout)
            return "ok", ""
        except self.grpc.RpcError as e:
            detail = f"{e.code().name} {e.details()}"[:300]
            refused = e.code() == self.grpc.StatusCode.RESOURCE_EXHAUSTED and has_code(detail, ERROR_OVERLOADED)
            return ("refused" if refused else "other"), detail

    def close(self) -> None:
        self.channel.close()


@dataclass
class Phase:
    clients: int
    seconds: float = 0.0
    answered: list = field(default_factory=list)  # latencies of the answered requests
    refused: list = field(default_factory=list)  # latencies of the refusals
    other: list = field(default_factory=list)  # (protocol, detail) of any other answer
    readiness: list = field(default_factory=list)  # readiness status codes seen
    restarts: int = 0

    def row(self, capacity: float | None) -> dict:
        answered = np.array(self.answered) if self.answered else np.array([np.nan])
        goodput = len(self.answered) / self.seconds if self.seconds else 0.0
        return {
            "clients": self.clients, "answered": len(self.answered), "refused": len(self.refused),
            "other": len(self.other), "p50_s": float(np.nanpercentile(answered, 50)),
            "p95_s": float(np.nanpercentile(answered, 95)), "max_s": float(np.nanmax(answered)),
            "slowest_refusal_s": max(self.refused, default=0.0), "goodput": goodput,
            "goodput_share": goodput / capacity if capacity else None,
            "not_ready": sum(1 for c in self.readiness if c != 200), "restarts": self.restarts,
            "other_examples": sorted({d for _, d in self.other})[:3],
        }


def watch_readiness(url: str, stop: threading.Event, codes: list) -> None:
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=5) as answer:
                codes.append(answer.status)
        except urllib.error.HTTPError as e:
            codes.append(e.code)
        except OSError:
            codes.append(0)
        stop.wait(0.1)


def restarts(log: Path) -> int:
    return log.read_text(errors="replace").count(RESTARTED) if log.is_file() else 0


def run_phase(server: ServerProcess, text: str, clients: int, seconds: float, timeout: float = 60.0) -> Phase:
    """`clients` threads (even: gRPC, odd: HTTP) sending `text` until `seconds` have passed."""
    phase = Phase(clients)
    payloads = {"http": body_of(text), "grpc": grpc_message(text)}
    stop, lock = threading.Event(), threading.Lock()
    before = restarts(server.output)

    def loop(i: int) -> None:
        protocol = "grpc" if i % 2 == 0 else "http"
        sender = Grpc(server.grpc_url, timeout) if protocol == "grpc" else Http(server.http_url, timeout)
        rng = random.Random(i)
        try:
            while not stop.is_set():
                started = time.monotonic()
                outcome, detail = sender.send(payloads[protocol])
                took = time.monotonic() - started
                with lock:
                    if outcome == "ok":
                        phase.answered.append(took)
                    elif outcome == "refused":
                        phase.refused.append(took)
                    else:
                        phase.other.append((protocol, detail))
                if outcome == "refused":
                    stop.wait(max(0.05, retry_hint_s(detail) * rng.uniform(0.5, 1.5)))
        finally:
            sender.close()

    watcher = threading.Thread(target=watch_readiness, args=(server.http_url, stop, phase.readiness), daemon=True)
    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(clients)]
    started = time.monotonic()
    watcher.start()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout + 5)
    phase.seconds = time.monotonic() - started
    watcher.join(10)
    phase.restarts = restarts(server.output) - before
    return phase


def fitting_document(server: ServerProcess, sentences: list[str], size: int) -> str:
    """Sentences joined up to `size` bytes, cut by a tenth until the server takes it as one request."""
    rng = random.Random(5)
    text = ""
    while len(text.encode()) < size:
        text += " " + sentences[rng.randrange(len(sentences))]
    text = text.encode()[:size].decode(errors="ignore").strip()
    sender = Http(server.http_url, 120)
    try:
        while True:
            outcome, detail = sender.send(body_of(text))
            if outcome == "ok":
                return text
            if not has_code(detail, ERROR_TOO_BIG):
                raise RuntimeError(f"the server refused the document: {detail}")
            text = text[: int(len(text) * 0.9)]
    finally:
        sender.close()


def table(rows: list[dict]) -> str:
    lines = ["| clients | answered | refused `[overloaded]` | other | p50 s | p95 s | max s | slowest refusal s "
             "| goodput docs/s | of 1-client capacity | readiness not 200 | restarts |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        share = f"{r['goodput_share']:.2f}x" if r["goodput_share"] is not None else "-"
        lines.append(f"| {r['clients']} | {r['answered']} | {r['refused']} | {r['other']} | {r['p50_s']:.2f} | "
                     f"{r['p95_s']:.2f} | {r['max_s']:.2f} | {r['slowest_refusal_s']:.2f} | {r['goodput']:.2f} | "
                     f"{share} | {r['not_ready']} | {r['restarts']} |")
    return "\n".join(lines)


def overload(server: ServerProcess, text: str, counts: list[int], seconds: float) -> list[dict]:
    """The one-client phase, then one phase per count; rows for `table`."""
    single = run_phase(server, text, 1, seconds)
    capacity = len(single.answered) / single.seconds
    rows = [single.row(capacity)]
    for n in counts:
        rows.append(run_phase(server, text, n, seconds).row(capacity))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    sentences = [r["text"] for r in read_corpus(args.corpus, 3000)] if args.corpus.is_file() else read_sentences(None)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with ServerProcess(args.repository, args.out / "server.log") as server:
            text = fitting_document(server, sentences, args.document_bytes)
            print(f"document: {len(text.encode()):,} bytes, {len(text.split()):,} words; "
                  f"{args.seconds:g} s per phase", flush=True)
            rows = overload(server, text, counts, args.seconds)
    except ServerExited as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    (args.out / "overload.json").write_text(json.dumps({"document_bytes": len(text.encode()), "rows": rows}, indent=1))
    print(table(rows))
    bad = [r for r in rows if r["other"] or r["not_ready"] or r["restarts"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
