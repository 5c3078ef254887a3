"""Soak test: N clients of both protocols for M minutes against a fresh `python -m server`.

    python -m loadtest.soak --users 8 --minutes 10 [--repository model_repository]

Starts the server (front doors, supervisor, Triton) as its own process on free ports, so its
processes can be measured, then runs `--users` FinerClient threads, half gRPC and half HTTP, each
calling `tag()` in a loop on real filing sentences (the corpus if built, else the built-in ones).
Prints a table per minute (requests, failures, p50/p95 latency, resident memory of tritonserver
and of each Python stub) and the growth of each process's memory from the end of the first minute
(warm-up: allocators and caches fill) to the end. Exits 1 if any request failed or a process grew
by more than `--max-growth` percent.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from client import FinerClient
from loadtest.sentences import BUILTIN, DEFAULT_CORPUS, read_corpus
from loadtest.server_process import ServerExited, ServerProcess, rss_mb
from server.triton import DEFAULT_REPOSITORY


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    p.add_argument("--users", type=int, default=8, help="client threads, half gRPC and half HTTP")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS / "test.jsonl")
    p.add_argument("--max-growth", type=float, default=5.0, help="percent of resident memory a process may gain")
    return p.parse_args(argv)


class Clients:
    def __init__(self, users: int, http_url: str, grpc_url: str, texts: list[str]):
        self.records: list[tuple[float, str, float, bool]] = []  # (end time, protocol, seconds, ok)
        self.stop = threading.Event()
        self.texts = texts
        self.threads = [threading.Thread(target=self.loop, args=(("grpc", grpc_url) if i % 2 == 0 else ("http", http_url)) + (i,),
                                         daemon=True) for i in range(users)]

    def loop(self, protocol: str, url: str, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with FinerClient(url, protocol, timeout=30) as client:
            while not self.stop.is_set():
                text = self.texts[rng.integers(len(self.texts))]
                started = time.monotonic()
                try:
                    client.tag(text)
                    ok = True
                except Exception as e:  # noqa: BLE001 - a soak counts failures, it does not stop on them
                    ok = False
                    print(f"  failure ({protocol}): {type(e).__name__}: {str(e)[:160]}", flush=True)
                self.records.append((time.monotonic(), protocol, time.monotonic() - started, ok))


def minute_row(minute: int, records: list, memory: dict[str, float]) -> str:
    seconds = np.array([r[2] for r in records]) * 1000 if records else np.array([np.nan])
    failures = sum(not r[3] for r in records)
    stubs = sum(v for k, v in memory.items() if k not in ("tritonserver", "launcher"))
    return (f"| {minute:>3} | {len(records):>8} | {failures:>8} | {np.nanpercentile(seconds, 50):>7.1f} | "
            f"{np.nanpercentile(seconds, 95):>7.1f} | {memory.get('tritonserver', float('nan')):>11.1f} | {stubs:>9.1f} | "
            f"{memory.get('launcher', float('nan')):>12.1f} |")


def main(argv=None) -> int:
    args = parse_args(argv)
    texts = [r["text"] for r in read_corpus(args.corpus, 2000)] if args.corpus.is_file() else list(BUILTIN)
    server = ServerProcess(args.repository, ".cache/triton/soak.log")
    try:
        server.start()
    except ServerExited as e:
        server.stop()
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        procs = server.processes()
        print(f"soak: {args.users} users ({(args.users + 1) // 2} gRPC, {args.users // 2} HTTP), {args.minutes:g} min, "
              f"{len(texts)} sentences; processes: {', '.join(sorted(procs))}", flush=True)
        clients = Clients(args.users, f"127.0.0.1:{server.http_port}", server.grpc_url, texts)
        for t in clients.threads:
            t.start()
        print("| min | requests | failures | p50 ms  | p95 ms  | triton MiB  | stubs MiB | launcher MiB |\n"
              "|----:|---------:|---------:|--------:|--------:|------------:|----------:|-------------:|", flush=True)
        started, memory, minute = time.monotonic(), [], 0
        while minute < args.minutes:
            minute += 1
            time.sleep(max(0.0, started + 60 * min(minute, args.minutes) - time.monotonic()))
            now = time.monotonic()
            memory.append(rss_mb(procs))
            window = [r for r in list(clients.records) if started + 60 * (minute - 1) <= r[0] < now]
            print(minute_row(minute, window, memory[-1]), flush=True)
        clients.stop.set()
        for t in clients.threads:
            t.join(60)
    finally:
        server.stop()
    return report(clients.records, memory, args.max_growth)


def report(records: list, memory: list[dict[str, float]], max_growth: float) -> int:
    failures = sum(not r[3] for r in records)
    by_protocol = defaultdict(list)
    for r in records:
        by_protocol[r[1]].append(r[2] * 1000)
    print(f"\ntotal: {len(records)} requests, {failures} failures; "
          + ", ".join(f"{p} p50 {np.percentile(v, 50):.1f} ms / p95 {np.percentile(v, 95):.1f} ms"
                      for p, v in sorted(by_protocol.items())))
    first, last = memory[0], memory[-1]
    growth = {name: 100 * (last[name] - first[name]) / first[name] for name in first if first[name] > 0}
    print("resident memory, end of minute 1 -> end: " + "; ".join(
        f"{name} {first[name]:.0f} -> {last[name]:.0f} MiB ({growth[name]:+.1f}%)" for name in sorted(growth)))
    worst = max(growth.values(), default=0.0)
    ok = failures == 0 and worst < max_growth
    print(f"{'PASS' if ok else 'FAIL'}: {failures} failures, largest growth {worst:+.1f}% (limit {max_growth:g}%)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
