"""Tag a whole archive of filings through one or several servers: one JSONL of entities per filing.

    python -m client.batch --files ../shared/data/ixbrl --out entities/ --url 10.0.0.5:8001 --url 10.0.0.6:8001
    finer-tag --files ../shared/data/ixbrl --out entities/          # the same command

Inline-XBRL filings (.htm, .html, .htm.gz, .html.gz) are read with the corpus builder's own reader
(`filings.ixbrl.read_filing`: narrative sentences, no tables, no hidden text, words split as FiNER
splits them); a .txt file is one passage per paragraph. Only passages holding a word an entity can
sit on are sent (`finer.words.may_be_entity`; about a third of a filing's sentences), in calls of
the servers' `max_documents` passages (one request each when their windows fit), `--concurrency` calls at a time, round robin over the `--url`s (`client.replicas`: a replica
that is down or restarting rests while the others work).

Each filing's entities go to `<out>/<its path under DIR, suffix replaced>.jsonl`, one line per
entity: {"passage", "text", "label", "start", "end", "score", "context"}, offsets into "context"
(the passage sent). A file is written whole and renamed into place, so what exists is complete: a
run that was interrupted (Ctrl-C, a crash, every server gone) is resumed by the same command, and
filings already written are skipped. A filing that cannot be read is skipped, and one the servers
refused fails; both are listed in `<out>/batch-summary.json` with the reason, and tried again by
the next run. Exit codes: 0 done (skips included), 1 no server answered, 2 bad usage, 130 interrupted.

`--shard i/N` takes the i-th of N disjoint shares of the archive (0 <= i < N), chosen by a hash of
each filing's output path under OUT: the same filing lands in the same shard on every machine and
in every run, whatever else the folder holds. N processes (a Kubernetes Indexed Job: deploy/k8s/components/
archive-job) write into one output folder; each keeps its own `batch-summary-<i>-of-<N>.json`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from client.errors import FinerError, InvalidInput, ServerUnreachable
from client.protocol import DEFAULT_PORTS, PROTOCOLS, label_list

PROG = "python -m client.batch"
TEXT_SUFFIX = ".txt"
SUMMARY = "batch-summary.json"
PARTIAL = ".partial"  # a filing's output while it is written


def parse_shard(text: str) -> tuple[int, int]:
    """'i/N' -> (i, N) with 0 <= i < N; ValueError with a sentence otherwise."""
    index, _, count = text.partition("/")
    if not (index.strip().isdigit() and count.strip().isdigit()):
        raise ValueError(f"--shard {text!r}: give i/N with whole numbers, e.g. 0/4 (the first of four shards)")
    i, n = int(index), int(count)
    if n < 1 or i >= n:
        raise ValueError(f"--shard {text!r}: the shard index must be 0 to N-1 (shards are numbered from 0, "
                         f"as a Kubernetes Indexed Job numbers its pods)")
    return i, n


def in_shard(relative: Path, shard: tuple[int, int]) -> bool:
    """Whether the file at `relative` (a filing's output path under OUT) belongs to shard i of N."""
    i, n = shard
    return int.from_bytes(hashlib.sha256(relative.as_posix().encode()).digest()[:8], "big") % n == i


class Interrupted(Exception):
    """The run was asked to stop: a filing in progress is dropped, to be tagged again next time."""


@dataclass
class Summary:
    found: int = 0
    done_before: int = 0  # complete outputs of an earlier run, skipped
    tagged: int = 0
    passages: int = 0  # sent to a server
    entities: int = 0
    skipped: dict = field(default_factory=lambda: defaultdict(list))  # reason -> filings that could not be read
    failed: dict = field(default_factory=lambda: defaultdict(list))  # reason -> filings the servers refused
    seconds: float = 0.0
    stopped: str = ""  # why the run ended early, if it did

    def rates(self) -> dict:
        minutes = self.seconds / 60 or float("nan")
        return {"filings_per_minute": round(self.tagged / minutes, 2), "entities_per_minute": round(self.entities / minutes, 1)}

    def to_dict(self, replicas: str) -> dict:
        return {"found": self.found, "done_before": self.done_before, "tagged": self.tagged,
                "passages_sent": self.passages, "entities": self.entities, "seconds": round(self.seconds, 1),
                **self.rates(), "skipped": dict(self.skipped), "failed": dict(self.failed),
                "stopped": self.stopped, "replicas": replicas}

    def lines(self) -> list[str]:
        rates = self.rates()
        out = [f"{self.tagged} filings tagged in {self.seconds:.0f} s ({rates['filings_per_minute']} filings/min, "
               f"{self.entities} entities, {rates['entities_per_minute']} entities/min); "
               f"{self.done_before} done before, {sum(map(len, self.skipped.values()))} skipped, "
               f"{sum(map(len, self.failed.values()))} failed, of {self.found}"]
        for kind, groups in (("skipped", self.skipped), ("failed", self.failed)):
            for reason, names in groups.items():
                out.append(f"  {kind} ({reason}): {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}")
        return out


def find(folder: Path) -> list[Path]:
    """The filings under `folder`: what the corpus builder reads, and text files."""
    from filings.corpus import find_filings

    return sorted(set(find_filings(folder)) | {p for p in folder.rglob(f"*{TEXT_SUFFIX}") if p.is_file()})


def output_of(path: Path, folder: Path, out: Path) -> Path:
    from filings.corpus import PATTERNS

    relative = path.relative_to(folder)
    for suffix in sorted((p.removeprefix("*") for p in (*PATTERNS, TEXT_SUFFIX)), key=len, reverse=True):
        if relative.name.lower().endswith(suffix):
            return out / relative.with_name(relative.name[: -len(suffix)] + ".jsonl")
    return out / relative.with_name(relative.name + ".jsonl")


def candidates(path: Path) -> list[tuple[str, bool]]:
    """The passages to tag, each with whether it holds a word an entity can sit on
    (`finer.words.may_be_entity`); FilingError (filings.ixbrl's) when there is none to read."""
    from finer.words import may_be_entity, may_hold_entity
    from filings.ixbrl import FilingError, read_filing

    if path.suffix.lower() != TEXT_SUFFIX:
        # Words joined by spaces: the server splits them into the same FiNER words again. The reader's
        # own words say which passages may hold an entity, so nothing is split twice here.
        return [(" ".join(s["tokens"]), any(map(may_be_entity, s["tokens"]))) for s in read_filing(path).sentences]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise FilingError(f"not UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise FilingError(f"unreadable: {e.strerror}") from None
    paragraphs = [p.strip() for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return [(p, may_hold_entity(p)) for p in paragraphs]


def passages(path: Path) -> list[str]:
    """The text to tag, passage by passage (see `candidates`)."""
    return [text for text, _ in candidates(path)]


def tag_passages(found: list[tuple[str, bool]], replicas, labels, stop: threading.Event) -> tuple[list[dict], int]:
    """(entity rows, passages sent): the passages that may hold an entity, max_documents per call."""
    texts = [text for text, _ in found]
    sent = [i for i, (_, candidate) in enumerate(found) if candidate]
    rows = []
    size = replicas.max_documents() if sent else 1
    for at in range(0, len(sent), size):
        if stop.is_set():
            raise Interrupted
        chunk = sent[at:at + size]
        for i, entities in zip(chunk, replicas.tag([texts[i] for i in chunk], labels=labels)):
            rows.extend({"passage": i, **e.to_dict(), "context": texts[i]} for e in entities)
    return rows, len(sent)


def write_whole(target: Path, rows: list[dict]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + PARTIAL)
    with open(partial, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(partial, target)  # atomic: a reader or a resumed run sees nothing or the whole file


class Batch:
    def __init__(self, folder: Path, out: Path, replicas, labels=None, concurrency: int = 4,
                 shard: tuple[int, int] = (0, 1)):
        self.folder, self.out, self.replicas, self.labels = folder, out, replicas, labels
        self.concurrency, self.shard = concurrency, shard
        self.summary = Summary()
        self.stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def summary_file(self) -> Path:
        i, n = self.shard
        return self.out / (SUMMARY if n == 1 else SUMMARY.replace(".json", f"-{i}-of-{n}.json"))

    def mine(self, output: Path) -> bool:
        """Whether an output file (its path under --out) is this shard's to write."""
        return in_shard(output.relative_to(self.out), self.shard)

    def todo(self) -> list[Path]:
        outputs = {p: output_of(p, self.folder, self.out) for p in find(self.folder)}
        found = {p: out for p, out in outputs.items() if self.mine(out)}
        self.summary.found = len(found)
        for stale in self.out.rglob(f"*{PARTIAL}") if self.out.is_dir() else ():
            if self.mine(stale.with_name(stale.name.removesuffix(PARTIAL))):
                stale.unlink()  # a run killed while writing; other shards' files are theirs to clean
        todo = [p for p, out in found.items() if not out.is_file()]
        self.summary.done_before = len(found) - len(todo)
        return todo

    def one(self, path: Path) -> None:
        from filings.ixbrl import FilingError

        name = str(path.relative_to(self.folder))
        try:
            found = candidates(path)
        except Exception as e:  # one odd document among thousands must not end the run: it is listed
            reason = str(e).split(":")[0] if isinstance(e, FilingError) else f"the reader failed ({type(e).__name__})"
            with self._lock:
                self.summary.skipped[reason].append(name)
            return
        try:
            rows, sent = tag_passages(found, self.replicas, self.labels, self.stop)
        except ServerUnreachable:
            raise  # no replica at all: the run stops
        except FinerError as e:  # what a working server said of this filing's text
            with self._lock:
                self.summary.failed[f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"].append(name)
            return
        write_whole(output_of(path, self.folder, self.out), rows)
        with self._lock:
            self.summary.tagged += 1
            self.summary.passages += sent
            self.summary.entities += len(rows)

    def run(self, todo: list[Path], progress) -> Summary:
        """Tag the filings of `todo()`; `progress()` after each. Stops on KeyboardInterrupt or when no
        replica answers, leaving the written filings for the next run."""
        started = time.monotonic()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="finer-batch")
        pending = {pool.submit(self.one, path) for path in todo}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    if future.exception() is not None and not isinstance(future.exception(), Interrupted):
                        raise future.exception()
                    progress()
        except (KeyboardInterrupt, ServerUnreachable) as e:
            self.summary.stopped = ("interrupted" if isinstance(e, KeyboardInterrupt) else str(e)) + \
                ": run the same command again to resume"
            self.stop.set()
            for future in pending:
                future.cancel()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.summary.seconds = time.monotonic() - started
            self.out.mkdir(parents=True, exist_ok=True)
            self.summary_file.write_text(json.dumps(self.summary.to_dict(self.replicas.status()), indent=1) + "\n")
        return self.summary


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=Path, required=True, help="folder of filings, searched recursively "
                                                             "(.htm, .html, .htm.gz, .html.gz, .txt)")
    p.add_argument("--out", type=Path, required=True, help="folder for one <filing>.jsonl each and batch-summary.json")
    p.add_argument("--url", action="append", help="a server host:port; repeat for each replica "
                                                  "(default 127.0.0.1:8001 for gRPC, 127.0.0.1:8000 for HTTP)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="grpc")
    p.add_argument("--labels", help="only these types: scope names (debt, all) or FiNER types, comma-separated")
    p.add_argument("--concurrency", type=int, help="most tag() calls in flight over all replicas (default 2 per replica; "
                                                   "halved while a server refuses for load, regained as it answers)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds one call (max_documents passages) may take on one replica")
    p.add_argument("--shard", type=str, default="0/1", metavar="i/N",
                   help="tag only shard i of N (0 <= i < N, by a hash of each filing's output path): one of N processes or pods")
    p.add_argument("--patience", type=float, default=120.0,
                   help="seconds without any replica answering before the run stops (resume it later)")
    return p


def main(argv: list[str] | None = None) -> int:
    from client.replicas import Replicas

    args = parser().parse_args(argv)
    if not args.files.is_dir():
        print(f"{PROG}: error: --files {args.files}: not a folder", file=sys.stderr)
        return 2
    try:
        import lxml  # noqa: F401  (filings.ixbrl reads the filings with it)
        from tqdm import tqdm
    except ImportError as e:
        print(f"{PROG}: error: {e.name} is missing: pip install '.[batch]'", file=sys.stderr)
        return 2
    urls = args.url or [f"127.0.0.1:{DEFAULT_PORTS[args.protocol]}"]
    try:  # an unknown type would fail every filing: refuse it once, before anything is read
        labels = label_list(args.labels.split(",")) if args.labels else None
    except InvalidInput as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    try:
        shard = parse_shard(args.shard)
    except ValueError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    concurrency = args.concurrency or 2 * len(urls)
    with Replicas(urls, args.protocol, timeout=args.timeout, patience_s=args.patience,
                  calls_in_flight=concurrency) as replicas:
        batch = Batch(args.files, args.out, replicas, labels, concurrency, shard)
        todo = batch.todo()
        bar = tqdm(total=len(todo), unit="filing", desc=f"tagging over {len(urls)} server{'s' * (len(urls) > 1)}",
                   file=sys.stderr)
        code = 0

        def progress():
            bar.update()
            bar.set_postfix(entities=batch.summary.entities)

        try:
            batch.run(todo, progress)
        except KeyboardInterrupt:
            code = 130
        except ServerUnreachable:
            code = 1
        bar.close()
        for line in batch.summary.lines() + ([batch.summary.stopped] if batch.summary.stopped else []):
            print(line, file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
