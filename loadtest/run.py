"""Headless Locust against an already running server, with a per-protocol summary.

    python -m loadtest.run --users 4 --duration 30s --protocol both --out results/loadtest-<stamp>

Starts nothing but Locust (its own process, so gevent's patching stays out of this one): the
server must already answer (`make serve`). `--protocol both` runs HTTP, then gRPC, each with all the
users for the whole duration, so the two are measured under the same load. The results folder gets
the sentences sent, and per protocol Locust's CSV files (`<protocol>_stats.csv`, ...), its HTML
report (`<protocol>.html`) and log, plus `summary.md`/`summary.json`.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from loadtest.sentences import DEFAULT_CORPUS, read_corpus, write_sentences

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
USERS = {"http": "FinerHttpUser", "grpc": "FinerGrpcUser"}
MODEL = "finer"


class RunError(Exception):
    """A user-fixable problem, reported as one line."""


def seconds(duration: str) -> int:
    """Locust's run-time syntax (`30s`, `2m`, `1h30m`, `90`) in seconds."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?", duration.strip())
    if not duration.strip() or not parts:
        raise RunError(f"--duration {duration!r}: use e.g. 30s, 2m or 1m30s")
    h, m, s = (int(p or 0) for p in parts.groups())
    return h * 3600 + m * 60 + s


def check_http(host: str) -> None:
    url = f"{host.rstrip('/')}/v2/models/{MODEL}/ready"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            if r.status == 200:
                return
    except urllib.error.HTTPError as e:
        raise RunError(f"{url} answered {e.code}: `{MODEL}` is not ready yet; wait for `make serve` to finish loading") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise RunError(f"no server at {host} ({reason}): start one with `make serve` or pass --host") from None


def check_grpc(url: str) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(url)
    try:
        if not client.is_model_ready(MODEL, client_timeout=5):
            raise RunError(f"`{MODEL}` is not ready on gRPC {url}; wait for `make serve` to finish loading")
    except InferenceServerException as e:
        raise RunError(f"no gRPC server at {url} ({(e.message() or 'no answer').splitlines()[0][:160]}): "
                       "start one with `make serve` or pass --grpc-url") from None
    finally:
        client.close()


def run_locust(protocol: str, a, out: Path, sentences: Path) -> int:
    env = dict(os.environ, FINER_SENTENCES=str(sentences), FINER_GRPC_URL=a.grpc_url,
               PYTHONPATH=os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH")] if p))
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
               "--users", str(a.users), "--spawn-rate", str(a.spawn_rate or a.users), "--run-time", a.duration,
               "--host", a.host, "--csv", str(out / protocol), "--csv-full-history",
               "--html", str(out / f"{protocol}.html"), "--only-summary", "--stop-timeout", "10",
               USERS[protocol]]
    print(f"{protocol}: {a.users} users for {a.duration} ...", file=sys.stderr, flush=True)
    with open(out / f"{protocol}.log", "w") as log:
        try:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                  timeout=seconds(a.duration) + 120)
        except subprocess.TimeoutExpired:
            raise RunError(f"Locust did not stop within {seconds(a.duration) + 120} s; see {out / f'{protocol}.log'}") from None
    if not (out / f"{protocol}_stats.csv").is_file():
        tail = (out / f"{protocol}.log").read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise RunError(f"Locust wrote no statistics (exit code {done.returncode}): {tail[0][:200]}; see {out / f'{protocol}.log'}")
    return done.returncode


def read_stats(path: Path, protocol: str) -> list[dict]:
    """Rows of a Locust `_stats.csv`: one per request name plus the protocol's total."""
    rows = []
    with path.open(newline="") as fh:
        for r in csv.DictReader(fh):
            name = "all requests" if r["Name"] == "Aggregated" else r["Name"]
            rows.append({"protocol": protocol, "request": name, "requests": int(r["Request Count"]),
                         "failures": int(r["Failure Count"]), "rps": float(r["Requests/s"]),
                         "p50_ms": float(r["50%"]), "p95_ms": float(r["95%"]), "p99_ms": float(r["99%"]),
                         "avg_ms": float(r["Average Response Time"])})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| protocol | request | requests | failures | requests/s | p50 ms | p95 ms | p99 ms |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['protocol']} | {r['request']} | {r['requests']} | {r['failures']} | {r['rps']:.1f} "
                     f"| {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=4, help="concurrent users per protocol (default: %(default)s)")
    p.add_argument("--spawn-rate", type=float, default=None, help="users started per second (default: all at once)")
    p.add_argument("--duration", default="30s", help="per protocol, Locust syntax: 30s, 2m (default: %(default)s)")
    p.add_argument("--protocol", choices=["http", "grpc", "both"], default="both")
    p.add_argument("--host", default="http://127.0.0.1:8000", help="HTTP address of Triton (default: %(default)s)")
    p.add_argument("--grpc-url", default=os.environ.get("FINER_GRPC_URL", "127.0.0.1:8001"),
                   help="gRPC address of Triton (default: $FINER_GRPC_URL or %(default)s)")
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS / "test.jsonl"),
                   help="FiNER-format jsonl to draw sentences from; built-in sentences if missing (default: %(default)s)")
    p.add_argument("--sentences", type=int, default=2000, help="sentences drawn from --corpus (default: %(default)s)")
    p.add_argument("--out", default=None, help="results folder (default: results/loadtest-<timestamp>)")
    a = p.parse_args(argv)
    out = Path(a.out or f"results/loadtest-{datetime.now():%Y%m%d-%H%M%S}")
    protocols = ["http", "grpc"] if a.protocol == "both" else [a.protocol]
    try:
        if a.users < 1:
            raise RunError(f"--users {a.users}: need at least 1")
        seconds(a.duration)
        if "://" not in a.host:
            a.host = f"http://{a.host}"
        if not urlsplit(a.host).hostname:
            raise RunError(f"--host {a.host}: give an address such as http://127.0.0.1:8000")
        if "http" in protocols:
            check_http(a.host)
        if "grpc" in protocols:
            check_grpc(a.grpc_url)
        out.mkdir(parents=True, exist_ok=True)
        if Path(a.corpus).is_file():
            texts = [r["text"] for r in read_corpus(a.corpus, a.sentences)]
            print(f"{len(texts)} sentences from {a.corpus}", file=sys.stderr)
        else:
            from loadtest.sentences import BUILTIN

            texts = list(BUILTIN)
            print(f"no corpus at {a.corpus} (build it with `make corpus`): using {len(texts)} built-in sentences",
                  file=sys.stderr)
        sentences = write_sentences(out / "sentences.jsonl", texts)
        codes, rows = {}, []
        for protocol in protocols:
            codes[protocol] = run_locust(protocol, a, out, sentences)
            rows += read_stats(out / f"{protocol}_stats.csv", protocol)
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = table(rows)
    (out / "summary.md").write_text(f"{a.users} users, {a.duration} per protocol, host {a.host}, gRPC {a.grpc_url}\n\n{summary}\n")
    (out / "summary.json").write_text(json.dumps({"users": a.users, "duration": a.duration, "host": a.host,
                                                  "grpc_url": a.grpc_url, "exit_codes": codes, "rows": rows}, indent=1))
    print(summary)
    print(f"\nwritten: {out}/ (" + ", ".join(f"{p}.html, {p}_stats.csv" for p in protocols) + ", summary.md)")
    failed = [r for r in rows if r["request"] == "all requests" and r["failures"]]
    if failed:
        print("failures: " + ", ".join(f"{r['protocol']} {r['failures']}" for r in failed)
              + f" (see the Failures section of the HTML report or <protocol>_failures.csv)", file=sys.stderr)
    return 1 if failed or any(codes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
