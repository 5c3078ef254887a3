"""Batch tagging of a filing archive (`python -m client.batch`, `finer-tag --files`) against real
Triton servers with the tiny model: round robin over two replicas with a dead one among them and
one that restarts mid-run, corrupt and non-iXBRL filings, an interrupted run resumed."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client import FinerClient
from client import batch, cli
from client.replicas import Replicas
from server.triton import free_port

ROOT = Path(__file__).resolve().parent.parent
FILINGS = ROOT.parent / "shared" / "data" / "ixbrl" / "filings"
REAL = ["CIK1828739/CIK1828739_10-K_2023-09-30.htm.gz", "CIK1818550/CIK1818550_10-K_2023-06-30.htm.gz",
        "CIK775057/CIK775057_10-K_2022-09-30.htm.gz", "CIK1668523/CIK1668523_10-K_2021-12-31.htm.gz"]
TEXT = "The Company issued $500 million of 7.00% Senior Notes due 2030.\n\nRevenue grew strongly this year.\n"


def archive(folder: Path, real: list[str] = REAL) -> Path:
    """Real filings in their company folders, a text filing, a truncated gzip and HTML without inline XBRL."""
    for name in real:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FILINGS / name, folder / name)
    (folder / "notes" / "memo.txt").parent.mkdir(parents=True)
    (folder / "notes" / "memo.txt").write_text(TEXT)
    broken = (FILINGS / real[0]).read_bytes()
    (folder / "BROKEN" / "BROKEN_10-K_2023-12-31.htm.gz").parent.mkdir()
    (folder / "BROKEN" / "BROKEN_10-K_2023-12-31.htm.gz").write_bytes(broken[: len(broken) // 2])
    (folder / "plain.htm").write_text("<html><body><p>The notes bear interest at 7.00% per annum, "
                                      "payable semi-annually in arrears.</p></body></html>")
    return folder


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def outputs(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): p.read_text() for p in sorted(out.rglob("*.jsonl"))}


@pytest.fixture(scope="module")
def second(tiny_export, tmp_path_factory):
    """Another replica of the same repository, on its own free ports."""
    from server.service import FinerServer

    logs = tmp_path_factory.mktemp("replica")
    with FinerServer(tiny_export.repository, free_port(), free_port(), free_port(), log_file=logs / "server.log",
                     backend_dir=logs / "backends", canary_interval_s=0.5) as server:
        yield server


def test_names_follow_the_archive():
    out, folder = Path("/out"), Path("/in")
    assert batch.output_of(folder / "A" / "AAPL_10-K_2023.htm.gz", folder, out) == out / "A" / "AAPL_10-K_2023.jsonl"
    assert batch.output_of(folder / "BRK.B_10-K.HTM", folder, out) == out / "BRK.B_10-K.jsonl"
    assert batch.output_of(folder / "memo.txt", folder, out) == out / "memo.jsonl"


def test_an_archive_over_two_replicas_one_dead_one_restarting(served, second, tmp_path):
    folder, out = archive(tmp_path / "in"), tmp_path / "out"
    dead = f"127.0.0.1:{free_port()}"
    urls = [served.server.grpc_url, dead, second.grpc_url]
    with Replicas(urls, timeout=30, patience_s=60) as replicas:
        job = batch.Batch(folder, out, replicas, concurrency=3)
        todo = job.todo()
        assert len(todo) == len(REAL) + 3

        by_url = {r.url: r for r in replicas.replicas}
        killed = []

        def kill_second_once():  # once it has served, the second replica's Triton dies; its supervisor restarts it
            if not killed and by_url[second.grpc_url].calls:
                killed.append(by_url[second.grpc_url].calls)
                os.kill(second.process.pid, signal.SIGKILL)

        summary = job.run(todo, kill_second_once)
    assert summary.tagged == len(REAL) + 1 and not summary.failed and not summary.stopped
    assert {k: sorted(v) for k, v in summary.skipped.items()} == {
        "unreadable": ["BROKEN/BROKEN_10-K_2023-12-31.htm.gz"], "no inline XBRL facts (not an iXBRL filing?)": ["plain.htm"]}
    assert by_url[dead].calls == 0 and by_url[dead].failures >= 1  # tried, rested, never answered
    assert by_url[served.server.grpc_url].calls > 0 and by_url[second.grpc_url].calls > 0  # round robin
    assert killed and by_url[second.grpc_url].failures >= 1  # it died mid-run, and the run went on
    deadline = time.monotonic() + 60
    while not (second.supervisor.restarts and second.supervisor.ready) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert second.supervisor.ready  # back in service, for the calls of a later run
    # What was written is what the client returns for the same passages, offsets into each passage.
    assert set(outputs(out)) == {"notes/memo.jsonl"} | {n.replace(".htm.gz", ".jsonl") for n in REAL}
    texts = batch.passages(folder / REAL[0])
    written = rows(out / REAL[0].replace(".htm.gz", ".jsonl"))
    assert written and all(r["context"] == texts[r["passage"]] and r["context"][r["start"]:r["end"]] == r["text"]
                           for r in written)
    with FinerClient(served.server.grpc_url) as client:
        direct = client.tag(texts)
    assert written == [{"passage": i, **e.to_dict(), "context": texts[i]} for i, found in enumerate(direct) for e in found]
    memo = rows(out / "notes" / "memo.jsonl")
    assert {r["passage"] for r in memo} == {0} and memo[0]["context"] == TEXT.split("\n\n")[0]
    report = json.loads((out / batch.SUMMARY).read_text())
    assert report["tagged"] == summary.tagged and report["entities"] == summary.entities > 0
    assert report["filings_per_minute"] > 0 and dead in report["replicas"]


def test_an_interrupted_run_resumes_where_it_stopped(served, tmp_path):
    folder, out = archive(tmp_path / "in"), tmp_path / "out"
    command = [sys.executable, "-m", "client.batch", "--files", str(folder), "--out", str(out),
               "--url", served.server.grpc_url, "--concurrency", "1"]
    # SIG_DFL first: a test run started in the background inherits SIGINT ignored, and Python keeps it so.
    run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list(out.rglob("*.jsonl")) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    first = outputs(out)
    assert 1 <= len(first) < len(REAL) + 1 and not list(out.rglob(f"*{batch.PARTIAL}"))
    assert json.loads((out / batch.SUMMARY).read_text())["stopped"].startswith("interrupted")
    (out / "stale.jsonl.partial").write_text('{"half": ')  # what a killed run may leave
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    report = json.loads((out / batch.SUMMARY).read_text())
    assert report["done_before"] == len(first) and report["tagged"] == len(REAL) + 1 - len(first)
    assert "2 skipped" in again.stderr and not (out / "stale.jsonl.partial").exists()
    final = outputs(out)
    assert {k: final[k] for k in first} == first and len(final) == len(REAL) + 1
    # Resumed, the archive is what one uninterrupted run writes.
    whole = tmp_path / "whole"
    assert cli.main(["--files", str(folder), "--out", str(whole), "--url", served.server.grpc_url]) == 0
    assert outputs(whole) == final


def test_no_replica_answering_stops_the_run_with_exit_1(tmp_path, capsys):
    folder = archive(tmp_path / "in", REAL[:1])
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    argv = ["--files", str(folder), "--out", str(tmp_path / "out"), "--patience", "2"]
    assert batch.main(argv + [a for url in dead for a in ("--url", url)]) == 1
    err = capsys.readouterr().err
    assert "no replica answered for 2 s" in err and "run the same command again to resume" in err
    assert not list((tmp_path / "out").rglob("*.jsonl"))
    assert batch.main(["--files", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert batch.main(["--files", str(folder), "--out", str(tmp_path / "o"), "--labels", "debt,NotAType"]) == 2
    assert "NotAType" in capsys.readouterr().err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("spec, message", [("3/2", "0 to N-1"), ("2/2", "0 to N-1"), ("a/b", "whole numbers"),
                                           ("1", "whole numbers"), ("0/0", "0 to N-1")])
def test_a_bad_shard_spec_is_one_line(tmp_path, capsys, spec, message):
    assert batch.main(["--files", str(tmp_path), "--out", str(tmp_path / "o"), "--shard", spec]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_shards_are_disjoint_stable_and_cover_the_archive():
    names = [Path(f"C{i}/C{i}_10-K_2023-12-31.htm.gz") for i in range(400)]
    shards = [[n for n in names if batch.in_shard(n, (i, 3))] for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(names) and all(80 < len(s) < 190 for s in shards)
    assert [n for n in names + [Path("new.txt")] if batch.in_shard(n, (1, 3))][:len(shards[1])] == shards[1]


def test_two_shards_as_two_processes_write_exactly_the_unsharded_output(served, tmp_path):
    """As two pods of the Indexed Job: `finer-tag --files ... --shard i/2` into one folder."""
    folder = archive(tmp_path / "in")
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    url = ["--url", served.server.grpc_url]
    assert cli.main(["--files", str(folder), "--out", str(whole), *url]) == 0
    pods = [subprocess.Popen([sys.executable, "-m", "client.batch", "--files", str(folder), "--out", str(sharded),
                              "--shard", f"{i}/2", *url], cwd=ROOT, stderr=subprocess.PIPE, text=True)
            for i in range(2)]
    for pod in pods:
        assert pod.wait(timeout=300) == 0, pod.stderr.read()
    assert outputs(sharded) == outputs(whole) and len(outputs(whole)) == len(REAL) + 1
    reports = [json.loads((sharded / f"batch-summary-{i}-of-2.json").read_text()) for i in range(2)]
    assert all(r["tagged"] > 0 for r in reports)  # both pods had work
    assert sum(r["found"] for r in reports) == json.loads((whole / batch.SUMMARY).read_text())["found"]
    # A restarted pod skips what is complete (shard 0 again tags nothing) and removes only its own
    # shard's unfinished files: another pod may be writing its own.
    stale = {i: next(f"stale{k}.jsonl" for k in range(100) if batch.in_shard(Path(f"stale{k}.jsonl"), (i, 2)))
             for i in range(2)}
    for name in stale.values():
        (sharded / (name + batch.PARTIAL)).write_text('{"half": ')
    again = subprocess.run([sys.executable, "-m", "client.batch", "--files", str(folder), "--out", str(sharded),
                            "--shard", "0/2", *url], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and json.loads((sharded / "batch-summary-0-of-2.json").read_text())["tagged"] == 0
    assert not (sharded / (stale[0] + batch.PARTIAL)).exists() and (sharded / (stale[1] + batch.PARTIAL)).exists()
