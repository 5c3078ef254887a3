"""`finer-tag` against the real embedded Triton: arguments, --file, stdin, both output formats, errors."""
from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from client.cli import main
from conftest import ROOT
from server.triton import free_port

TEXTS = [
    "The notes bear interest at a stated rate of 5.25% per annum.",
    "Borrowings under the revolving credit facility bear interest at LIBOR plus 1.75 %.",
    "Café revenue 📈 rose 12.5% to €3 million.",
]


def server_args(served, protocol="grpc") -> list[str]:
    address = served.server.grpc_url if protocol == "grpc" else served.server.http_url
    return ["--url", address, "--protocol", protocol]


def jsonl(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def check_entities(records: list[dict], texts: list[str], served) -> None:
    assert [r["index"] for r in records] == list(range(len(texts)))
    expected = served.reference(texts)
    for record, text, want in zip(records, texts, expected):
        assert [(e["text"], e["label"], e["start"], e["end"]) for e in record["entities"]] == \
               [(e["text"], e["label"], e["start"], e["end"]) for e in want]
        assert all(text[e["start"]:e["end"]] == e["text"] for e in record["entities"])


def run_cli(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "client.cli", *args], input=stdin, capture_output=True,
                          cwd=ROOT, timeout=60)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_arguments_to_jsonl(served, capsys, protocol):
    assert main([*TEXTS, *server_args(served, protocol)]) == 0
    check_entities(jsonl(capsys.readouterr().out), TEXTS, served)


def test_file_with_lines(served, capsys, tmp_path):
    path = tmp_path / "sentences.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert main(["--file", str(path), "--lines", *server_args(served, "http")]) == 0
    check_entities(jsonl(capsys.readouterr().out), TEXTS, served)


def test_file_as_one_document(served, capsys, tmp_path):
    path = tmp_path / "filing.txt"
    text = "\n".join(TEXTS)
    path.write_text(text, encoding="utf-8")
    assert main(["-f", str(path), *server_args(served)]) == 0
    check_entities(jsonl(capsys.readouterr().out), [text], served)


def test_labels_option_narrows_the_output(served, capsys):
    assert main([*TEXTS, *server_args(served)]) == 0
    everything = jsonl(capsys.readouterr().out)
    kind = next(e["label"] for doc in everything for e in doc["entities"])
    assert main([*TEXTS, "--labels", kind, *server_args(served)]) == 0
    narrowed = jsonl(capsys.readouterr().out)
    assert narrowed == [{**d, "entities": [e for e in d["entities"] if e["label"] == kind]} for d in everything]
    assert main([*TEXTS, "--labels", "debt,Nope", *server_args(served)]) == 2
    assert "Nope" in capsys.readouterr().err


def test_stdin_lines_in_a_subprocess(served):
    texts = [*TEXTS, "", "Page 12\x0cThe spread is 1.75%."]  # an empty line and a form feed stay documents
    done = run_cli(["--lines", *server_args(served)], stdin="\r\n".join(texts).encode("utf-8") + b"\r\n")
    assert done.returncode == 0, done.stderr
    check_entities(jsonl(done.stdout.decode("utf-8")), texts, served)


def test_stdin_as_one_document(served):
    text = "\n".join(TEXTS)
    done = run_cli(server_args(served, "http"), stdin=text.encode("utf-8"))
    assert done.returncode == 0, done.stderr
    check_entities(jsonl(done.stdout.decode("utf-8")), [text], served)


def test_pretty_marks_entities(served, capsys):
    found = served.reference(TEXTS[:1])[0]
    assert main([TEXTS[0], "--format", "pretty", "--color", "never", *server_args(served)]) == 0
    plain = capsys.readouterr().out
    for e in found:
        assert f"[{e['text']}|{e['label']}]" in plain
    assert "\x1b[" not in plain
    assert main([TEXTS[0], "--format", "pretty", "--color", "always", *server_args(served)]) == 0
    coloured = capsys.readouterr().out
    assert "\x1b[1;3" in coloured and f"[{found[0]['label']}]" in coloured


def test_pretty_is_plain_when_piped(served):
    done = run_cli([TEXTS[0], "--format", "pretty", *server_args(served)])
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode("utf-8")
    assert "\x1b[" not in out and "|" in out and out.count("\n") == 1


@pytest.mark.parametrize("args, stdin, code, message", [
    (["--bogus"], None, 2, "unrecognized arguments: --bogus"),
    (["--format", "xml", "x"], None, 2, "invalid choice"),
    (["x", "--file", "y.txt"], None, 2, "not both"),
    (["--file", "/nonexistent/filing.txt"], None, 2, "cannot read /nonexistent/filing.txt"),
    (["--lines"], b"fine\ncaf\xe9\n", 2, "stdin:2: not UTF-8"),
    (["--timeout", "0", "x"], None, 2, "timeout must be > 0"),
], ids=["unknown-flag", "bad-format", "text-and-file", "missing-file", "bad-utf8", "bad-timeout"])
def test_usage_errors_exit_2_with_one_line(args, stdin, code, message):
    done = run_cli(args, stdin=stdin)
    err = done.stderr.decode("utf-8")
    assert done.returncode == code
    assert message in err and err.startswith("finer-tag: error:") and err.count("\n") == 1
    assert "Traceback" not in err and done.stdout == b""


def test_server_problems_exit_1(served):
    down = run_cli(["x", "--url", f"127.0.0.1:{free_port()}"])
    wrong = run_cli(["x", "--model", "finer_nope", *server_args(served, "http")])
    for done, message in [(down, "cannot reach Triton"), (wrong, "model 'finer_nope' is not available")]:
        err = done.stderr.decode("utf-8")
        assert done.returncode == 1 and message in err and err.count("\n") == 1, err


def test_entry_point_is_declared():
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "finer-tag"]
    assert script.value == "client.cli:main"


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_info_prints_the_served_version_and_its_model_card(served, capsys, protocol):
    assert main(["--info", *server_args(served, protocol)]) == 0
    out = capsys.readouterr().out
    first, card = out.split("\n", 1)
    assert first.startswith("finer version 1 at ") and "64 documents" in first
    assert card.rstrip("\n") == (served.export.version / "MODEL_CARD.md").read_text().rstrip("\n")


def test_info_takes_no_text(served, capsys):
    assert main(["--info", "some text", *server_args(served)]) == 2
    assert "--info takes no text" in capsys.readouterr().err
