"""What tagging costs as the work grows: one sentence ... a whole 10-K, then 100 filings as a batch job.

    python -m loadtest.doc_cost --repository model_repository --filing ../shared/data/ixbrl/filings/J/J_10-K_2023-09-29.htm.gz \
        --filings ../shared/data/ixbrl --count 100 --benchmarks BENCHMARKS.md

Starts `python -m server` on the repository (its own process, free ports), then:
1. `FinerClient.tag()` over gRPC on documents cut from one filing's narrative sentences (the batch
   reader's, `client.batch.passages`): 1, 10, 100 and 1,000 sentences as one text, and the whole
   filing. Small documents are tagged several times; each row gives seconds per call, sentences/s,
   words/s, entities, and the resident memory of this client and of the server after the row.
2. The whole filing tagged by 4 clients at once, each answer compared with the one it got alone
   (a served answer must not depend on what Triton batches it with).
3. `client.batch` (what `finer-tag --files` runs) on the first `--count` filings of `--filings`
   (sorted by path): time, filings/min, passages sent, entities, and the peak resident memory of
   the client and the server, sampled every 0.5 s.
Writes `<out>/doc_cost.md` and `doc_cost.json`; `--benchmarks` also replaces the doc-cost section.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil

from finer import artifacts
from loadtest.report import describe_machine, machine, update_benchmarks
from loadtest.server_process import ServerExited, ServerProcess, rss_mb

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILING = ROOT.parent / "shared/data/ixbrl/filings/J/J_10-K_2023-09-29.htm.gz"
SIZES = (1, 10, 100, 1000)
USERS_AT_ONCE = 4
MARKS = ("<!-- doc-cost:start -->", "<!-- doc-cost:end -->")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def mib(proc: psutil.Process) -> float:
    return proc.memory_info().rss / 2**20


class Peak(threading.Thread):
    """Peak resident memory of this process and of the server, sampled until stopped."""

    def __init__(self, server: ServerProcess, every_s: float = 0.5):
        super().__init__(daemon=True)
        self.every_s = every_s
        self.me, self.server = psutil.Process(), server.processes()  # the server's processes, found once
        self.client = self.serving = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every_s):
            self.sample()

    def sample(self) -> None:
        self.client = max(self.client, mib(self.me))
        self.serving = max(self.serving, sum(rss_mb(self.server).values()))

    def stop(self) -> "Peak":
        self.done.set()
        self.join(10)
        self.sample()
        return self


def by_length(client, sentences: list[str], server: ServerProcess) -> tuple[list[dict], list]:
    """Rows of part 1: documents of growing length cut from `sentences`, each tagged as one text; and
    the entities of the last, the whole document."""
    me = psutil.Process()
    rows = []
    sizes = [n for n in SIZES if n < len(sentences)] + [len(sentences)]
    for n in sizes:
        text = " ".join(sentences[:n])
        words = len(text.split())
        repeats = max(1, min(20, 200 // n))
        client.tag(text)  # warm: the first call of a size also reads the server's limits
        started = time.perf_counter()
        for _ in range(repeats):
            entities = client.tag(text)
        seconds = (time.perf_counter() - started) / repeats
        rows.append({"sentences": n, "words": words, "characters": len(text), "calls": repeats,
                     "seconds_per_call": seconds, "sentences_per_s": n / seconds,
                     "words_per_s": words / seconds, "entities": len(entities),
                     "client_mib": mib(me), "server_mib": sum(server.rss_mb().values())})
        _log(f"  {n} sentences: {seconds:.3f} s per call, {n / seconds:.1f} sentences/s, {len(entities)} entities")
    return rows, entities


def among_others(url: str, text: str, alone: list, users: int = USERS_AT_ONCE) -> dict:
    """Part 2: the whole document tagged by `users` clients at once (Triton batches their windows
    together), each answer compared with the one it got alone."""
    from concurrent.futures import ThreadPoolExecutor

    from client import FinerClient

    def tag(_):
        with FinerClient(url, "grpc", timeout=600) as client:
            return client.tag(text)

    started = time.perf_counter()
    with ThreadPoolExecutor(users) as pool:
        answers = list(pool.map(tag, range(users)))
    seconds = time.perf_counter() - started
    result = {"users": users, "seconds": seconds, "alone": len(alone), "entities": [len(a) for a in answers],
              "identical": sum(a == alone for a in answers)}
    _log(f"  {users} users at once: {result['entities']} entities, {result['identical']} of {users} identical "
         f"to the document alone ({len(alone)})")
    return result


def batch_job(filings: list[Path], server: ServerProcess, scratch: Path) -> dict:
    """Part 3: client.batch over `filings` (linked into one folder), as `finer-tag --files` runs it."""
    from client.batch import Batch
    from client.replicas import Replicas

    folder = scratch / "filings"
    folder.mkdir()
    for i, path in enumerate(filings):
        (folder / f"{i:03d}_{path.name}").symlink_to(path.resolve())
    peak = Peak(server)
    peak.start()
    with Replicas([server.grpc_url], "grpc", timeout=120) as replicas:
        batch = Batch(folder, scratch / "out", replicas, concurrency=2)
        todo = batch.todo()
        done = [0]

        def progress():
            done[0] += 1
            if done[0] % 10 == 0:
                _log(f"  {done[0]}/{len(todo)} filings, {batch.summary.entities} entities")

        summary = batch.run(todo, progress)
    peak.stop()
    return {**summary.to_dict("1 server"), "client_peak_mib": peak.client, "server_peak_mib": peak.serving}


def among_table(check: dict) -> str:
    return ("| the whole document | entities alone | entities per user | identical to alone | seconds for all |\n"
            "|---|---:|---:|---:|---:|\n"
            f"| {check['users']} users at once | {check['alone']:,} | {', '.join(f'{n:,}' for n in check['entities'])} "
            f"| {check['identical']} of {check['users']} | {check['seconds']:.1f} |")


def length_table(rows: list[dict]) -> str:
    lines = ["| document | words | calls | seconds per call | sentences/s | words/s | entities | client MiB | server MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['sentences']:,} sentence{'s' * (r['sentences'] > 1)} | {r['words']:,} | {r['calls']} "
                     f"| {r['seconds_per_call']:.3f} | {r['sentences_per_s']:.1f} | {r['words_per_s']:.0f} "
                     f"| {r['entities']:,} | {r['client_mib']:.0f} | {r['server_mib']:.0f} |")
    return "\n".join(lines)


def batch_table(job: dict) -> str:
    return ("| filings | seconds | filings/min | passages sent | passages/s | entities | skipped | failed "
            "| client peak MiB | server peak MiB |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
            f"| {job['tagged']} | {job['seconds']:.0f} | {job['filings_per_minute']:.2f} | {job['passages_sent']:,} "
            f"| {job['passages_sent'] / max(job['seconds'], 0.1):.1f} | {job['entities']:,} "
            f"| {sum(map(len, job['skipped'].values()))} | {sum(map(len, job['failed'].values()))} "
            f"| {job['client_peak_mib']:.0f} | {job['server_peak_mib']:.0f} |")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest.doc_cost", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repository", type=Path, default=ROOT / "model_repository", help="exported model repository")
    p.add_argument("--filing", type=Path, default=DEFAULT_FILING, help="the filing cut into documents (default: %(default)s)")
    p.add_argument("--filings", type=Path, default=None, help="folder of filings for the batch job (none: part 1 only)")
    p.add_argument("--count", type=int, default=100, help="filings in the batch job (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: results/doc-cost-<timestamp>)")
    p.add_argument("--benchmarks", type=Path, default=None, help="also write the doc-cost section of this file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    from client import FinerClient
    from client.batch import find, passages
    from filings.ixbrl import FilingError

    try:
        sentences = passages(a.filing)
    except (FilingError, OSError) as e:
        print(f"error: {a.filing}: {e}", file=sys.stderr)
        return 1
    filings = find(a.filings)[: a.count] if a.filings else []
    if a.filings and not filings:
        print(f"error: {a.filings}: no filings found", file=sys.stderr)
        return 1
    out = a.out or Path(f"results/doc-cost-{datetime.now():%Y%m%d-%H%M%S}")
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    try:
        with ServerProcess(a.repository, out / "triton.log") as server, \
                tempfile.TemporaryDirectory(prefix="finer-doc-cost-") as scratch:
            version = json.loads((artifacts.latest(a.repository / artifacts.MODEL_NAME) / "export.json")
                                 .read_text()).get("precision", "?")
            info["triton"] = server.triton_version()
            _log(f"{a.filing.name}: {len(sentences)} sentences; served model: {version}")
            with FinerClient(server.grpc_url, "grpc", timeout=600) as client:
                rows, alone = by_length(client, sentences, server)
            check = among_others(server.grpc_url, " ".join(sentences), alone)
            job = None
            if filings:
                _log(f"batch job over {len(filings)} filings ...")
                job = batch_job(filings, server, Path(scratch))
    except ServerExited as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    info["load_average_end"] = list(os.getloadavg())
    section = "\n\n".join(filter(None, [
        f"### {a.filing.name} cut into documents, then {len(filings)} filings "
        f"({version} model, gRPC)",
        f"Machine: {describe_machine(info)}",
        length_table(rows),
        among_table(check),
        batch_table(job) if job else "",
    ]))
    (out / "doc_cost.md").write_text(section + "\n")
    raw = {"filing": str(a.filing), "by_length": rows, "among_others": check, "batch": job, "machine": info}
    (out / "doc_cost.json").write_text(json.dumps(raw, indent=1, default=str))
    if a.benchmarks:
        update_benchmarks(a.benchmarks, section, MARKS)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
