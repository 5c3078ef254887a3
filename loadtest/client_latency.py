"""Latency of the thin client (`client.FinerClient`), both protocols: one sentence per call and
1,000 sentences in one call. Prints a Markdown table.

    python -m loadtest.client_latency                                   # servers on 8001 / 8000
    python -m loadtest.client_latency --serve model_repository          # start the embedded server
    python -m loadtest.client_latency --grpc-url host:8001 --http-url host:8000 --batch 1000

Sentences are real filing sentences from the corpus (`.cache/corpus/ixbrl/test.jsonl`, see
loadtest.sentences) when it exists, else the built-in ones repeated.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from client import FinerClient, FinerError
from loadtest.sentences import BUILTIN, read_corpus

CORPUS = Path(".cache/corpus/ixbrl/test.jsonl")


def sentences(n: int, corpus: Path) -> list[str]:
    texts = [r["text"] for r in read_corpus(corpus, n)] if corpus.is_file() else []
    texts = texts or list(BUILTIN)
    return [texts[i % len(texts)] for i in range(n)]


def measure(client: FinerClient, single: list[str], batch: list[str]) -> dict:
    for text in single[:10]:  # warm connections and the server's paths
        client.tag(text)
    times = []
    for text in single:
        started = time.perf_counter()
        client.tag(text)
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    found = client.tag(batch)
    batch_s = time.perf_counter() - started
    assert len(found) == len(batch)
    return {"median_ms": statistics.median(times) * 1e3, "p90_ms": statistics.quantiles(times, n=10)[-1] * 1e3,
            "batch_s": batch_s, "batch_per_s": len(batch) / batch_s, "entities": sum(map(len, found))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.client_latency", description=__doc__.split("\n\n")[0])
    p.add_argument("--grpc-url", default="127.0.0.1:8001")
    p.add_argument("--http-url", default="127.0.0.1:8000")
    p.add_argument("--serve", metavar="REPOSITORY", help="start the embedded Triton on this model repository (free ports)")
    p.add_argument("--single", type=int, default=100, help="one-sentence calls to time (default 100)")
    p.add_argument("--batch", type=int, default=1000, help="sentences in the one big call (default 1000)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight within a call (default 4)")
    p.add_argument("--corpus", type=Path, default=CORPUS)
    args = p.parse_args(argv)

    server = None
    if args.serve:
        from server.service import FinerServer
        from server.triton import free_port

        server = FinerServer(args.serve, free_port(), free_port(), free_port(),
                              log_file=Path(".cache/triton/client_latency.log"))
        server.start()
        server.wait_ready()
        args.grpc_url, args.http_url = server.grpc_url, server.http_url
    try:
        texts = sentences(args.single + args.batch, args.corpus)
        single, batch = texts[: args.single], texts[args.single:]
        rows = []
        for protocol, url in (("grpc", args.grpc_url), ("http", args.http_url)):
            with FinerClient(url, protocol, concurrency=args.concurrency, timeout=120) as client:
                meta = client.metadata()
                rows.append((protocol, measure(client, single, batch)))
    except FinerError as e:
        print(f"client_latency: error: {e}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()

    chars = sum(map(len, batch)) / max(1, len(batch))
    print(f"model: {meta.model} (finer_model version {meta.steps.get('finer_model', '?')}), "
          f"{len(single)} single calls, {len(batch)} sentences in one call (mean {chars:.0f} characters), "
          f"concurrency {args.concurrency}")
    print()
    print(f"| protocol | 1 sentence: median ms | p90 ms | {len(batch)} sentences in one call: s | sentences/s |")
    print("|---|---:|---:|---:|---:|")
    for protocol, r in rows:
        print(f"| {protocol} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | {r['batch_s']:.2f} | {r['batch_per_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
