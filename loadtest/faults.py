"""Fault drill: how the served ensemble takes what took it down before, timed, as one table.

    python -m loadtest.faults [--repository model_repository]

Starts `server.service.FinerServer` on free ports and, with one client per protocol calling
`tag()` in a loop, kills the preprocess stub, then tritonserver itself; for each it reports how
long until readiness said 503, until Triton was ready again, and until each protocol's client had
its first answer after that. Then it sends the bodies that crashed or stalled Triton 2.51 (a
120 kB body nested 60,000 deep, a body announcing 200 MB, a poison request among 12 valid ones)
and reports each answer and how long it took.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from client import FinerClient
from server.service import FinerServer
from server.triton import DEFAULT_REPOSITORY, free_port, wait_until

SENTENCE = "The company issued $300 million of 7.00% senior notes due 2030."


def ready_code(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/v2/health/ready", timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def until(condition, timeout: float = 120.0) -> float:
    """The moment `condition()` first held (time.monotonic())."""
    if wait_until(condition, timeout, 0.02) is None:
        raise SystemExit(f"error: not within {timeout:.0f} s")
    return time.monotonic()


class Callers:
    """One client per protocol calling tag() in a loop; the time of every answer."""

    def __init__(self, server: FinerServer):
        self.answers = {"grpc": [], "http": []}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.loop, args=(p, u), daemon=True)
                        for p, u in (("grpc", server.grpc_url), ("http", server.http_url))]
        for t in self.threads:
            t.start()

    def loop(self, protocol: str, url: str) -> None:
        with FinerClient(url, protocol, timeout=5, retries=1) as client:
            while not self.stop.is_set():
                try:
                    client.tag(SENTENCE)
                    self.answers[protocol].append(time.monotonic())
                except Exception:  # noqa: BLE001 - the drill measures when answers resume
                    time.sleep(0.02)

    def first_after(self, protocol: str, moment: float) -> float:
        return until(lambda: any(t > moment for t in self.answers[protocol]))


def drill(server: FinerServer, callers: Callers, kill) -> list[float]:
    """Seconds from the kill to: readiness 503, ready again, first gRPC answer, first HTTP answer."""
    restarts = server.supervisor.restarts
    killed = time.monotonic()
    kill()
    unready = until(lambda: ready_code(server.http_url) == 503)
    ready = until(lambda: server.supervisor.restarts > restarts and ready_code(server.http_url) == 200)
    return [unready - killed, ready - killed] + [callers.first_after(p, ready) - ready for p in ("grpc", "http")]


def post(url: str, body: bytes) -> tuple[int, float]:
    started = time.monotonic()
    request = urllib.request.Request(url + "/v2/models/finer/infer", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            status = answer.status
    except urllib.error.HTTPError as e:
        status = e.code
    return status, time.monotonic() - started


def announced_body(url: str) -> tuple[int, float]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    started = time.monotonic()
    connection.putrequest("POST", "/v2/models/finer/infer")
    connection.putheader("Content-Length", str(200 * 2**20))
    connection.endheaders()
    status = connection.getresponse().status
    connection.close()
    return status, time.monotonic() - started


def poison(url: str) -> tuple[str, float]:
    def body(second_id: int) -> bytes:
        ids = [2, second_id, 3, 0]
        return json.dumps({"inputs": [
            {"name": "input_ids", "shape": [1, 4], "datatype": "INT64", "data": ids},
            {"name": "attention_mask", "shape": [1, 4], "datatype": "INT64", "data": [1, 1, 1, 0]}]}).encode()

    def send(i: int) -> tuple[int, float]:
        request = urllib.request.Request(url + "/v2/models/finer_model/infer", body(10**9 if i == 6 else 50))
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, time.monotonic()
        except urllib.error.HTTPError as e:
            return e.code, time.monotonic()

    started = time.monotonic()
    with ThreadPoolExecutor(13) as pool:
        answers = list(pool.map(send, range(13)))
    codes = [a[0] for a in answers]
    return (f"poison {codes[6]}, {sum(c == 200 for i, c in enumerate(codes) if i != 6)}/12 valid answered 200",
            max(a[1] for a in answers) - started)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    args = p.parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="finer-faults-"))
    server = FinerServer(args.repository, free_port(), free_port(), free_port(), log_file=logs / "server.log",
                         backend_dir=Path(".cache/triton/backends"))
    with server:
        callers = Callers(server)
        until(lambda: callers.answers["grpc"] and callers.answers["http"], 60)

        def kill_stub():
            (stub,) = [c for c in psutil.Process(server.process.pid).children()
                       if "finer_preprocess" in " ".join(c.cmdline())]
            stub.kill()

        rows = [("SIGKILL finer_preprocess stub", drill(server, callers, kill_stub)),
                ("SIGKILL tritonserver", drill(server, callers, lambda: os.killpg(server.process.pid, signal.SIGKILL)))]
        callers.stop.set()
        depth = 60_000
        nested = ('{"inputs":[{"name":"TEXT","shape":[1],"datatype":"BYTES","data":' + "[" * depth + '"x"'
                  + "]" * depth + "}]}").encode()
        bodies = [("body nested 60,000 deep (120 kB)", post(server.http_url, nested)),
                  ("body announcing 200 MB", announced_body(server.http_url)),
                  ("id 1e9 among 12 valid requests", poison(server.http_url))]
        alive = ready_code(server.http_url) == 200
    interval = server.supervisor.interval_s
    print(f"canary every {interval:g} s, restart after 2 failed canaries or at once when tritonserver exits\n")
    print("| fault | readiness 503 after | ready again after | first gRPC answer after ready | first HTTP answer after ready |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | " + " | ".join(f"{s:.2f} s" for s in seconds) + " |")
    print("\n| request | answer | in |\n|---|---|---:|")
    for name, (answer, seconds) in bodies:
        print(f"| {name} | {answer} | {seconds * 1000:.0f} ms |")
    print(f"\nserver ready after the drill: {alive}")
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
