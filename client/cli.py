"""`finer-tag`: tag text with the served `finer` model from the command line.

    finer-tag "The notes bear interest at 7.00% per annum."
    finer-tag --file filing.txt --format pretty
    cat sentences.txt | finer-tag --lines --protocol http --url 127.0.0.1:8000
    finer-tag --files filings/ --out entities/ --url host1:8001 --url host2:8001   # an archive (client.batch)
    finer-tag --info                      # the served version, its limits and its model card

Exit codes: 0 done, 1 server problem (unreachable, model not ready, timeout, server error),
2 bad usage or input. Errors are one line on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import zlib

from client.errors import FinerError, InvalidInput
from client.sync import FinerClient

PROG = "finer-tag"
# Foreground colours for labels (ANSI 31-36), picked by a stable hash of the label.
COLOURS = (31, 32, 33, 34, 35, 36)


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UsageError(f"{message} (see {PROG} --help)")


def parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="Tag financial text with FiNER-139 entities from a Triton server.",
               epilog="finer-tag --files DIR --out OUT tags a folder of filings over one or more --url "
                      "(python -m client.batch --help)")
    p.add_argument("--info", action="store_true", help="print the served model's version, limits and model card, then exit")
    p.add_argument("text", nargs="*", help="documents to tag, one per argument (else --file, else stdin)")
    p.add_argument("--file", "-f", help="read the text from this file ('-' = stdin)")
    p.add_argument("--lines", action="store_true", help="file/stdin holds one document per line (default: one document)")
    p.add_argument("--format", choices=("jsonl", "pretty"), default="jsonl",
                   help="jsonl: one JSON object per document; pretty: the text with entities marked")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour entities in pretty output (auto: when stdout is a terminal and NO_COLOR is unset)")
    p.add_argument("--url", help="server host:port (default 127.0.0.1:8001 for gRPC, 127.0.0.1:8000 for HTTP)")
    p.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    p.add_argument("--model", default="finer", help="served model name (default finer)")
    p.add_argument("--labels", help="only these types: comma-separated scope names (debt, all) or FiNER types, "
                                    "e.g. --labels debt or --labels debt,DebtInstrumentFaceAmount (default: every type)")
    return p


def read_documents(args) -> list[str]:
    if args.text and args.file:
        raise UsageError("give the text as arguments or with --file, not both")
    if args.text:
        return list(args.text)
    if args.file in (None, "-"):
        if args.file is None and sys.stdin.isatty():
            raise UsageError(f"no text: give it as arguments, with --file, or on stdin (see {PROG} --help)")
        name, data = "stdin", sys.stdin.buffer.read()
    else:
        name = args.file
        try:
            with open(args.file, "rb") as f:
                data = f.read()
        except OSError as e:
            raise UsageError(f"cannot read {args.file}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UsageError(f"{name}:{line}: not UTF-8 (byte {e.start}: {data[e.start:e.start + 1]!r}): convert it to UTF-8") from None
    if args.lines:  # only \n ends a line: form feeds and other separators inside filings stay in the text
        lines = [line.removesuffix("\r") for line in text.split("\n")]
        return lines[:-1] if lines and lines[-1] == "" else lines
    return [text]


def mark(text: str, entities, colour: bool) -> str:
    """The text with each entity marked: coloured with a dim label on a terminal, else [text|label]."""
    out, last = [], 0
    for e in entities:
        out.append(text[last:e.start])
        if colour:
            c = COLOURS[zlib.crc32(e.label.encode()) % len(COLOURS)]
            out.append(f"\x1b[1;{c}m{e.text}\x1b[0m\x1b[2;{c}m[{e.label}]\x1b[0m")
        else:
            out.append(f"[{e.text}|{e.label}]")
        last = e.end
    out.append(text[last:])
    return "".join(out)


def use_colour(choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def info(args) -> int:
    """`--info`: what the server serves, then the served version's model card."""
    if args.text or args.file:
        raise UsageError("--info takes no text")
    with FinerClient(args.url, args.protocol, args.model, timeout=args.timeout) as client:
        meta = client.metadata()
    steps = ", ".join(f"{name} {version}" for name, version in meta.steps.items())
    print(f"{meta.model} version {meta.version} at {client.url} ({args.protocol}): {steps}; at most "
          f"{meta.max_documents} documents and {meta.max_windows} windows per request; "
          f"{len(meta.labels) if meta.labels is not None else 'unknown'} tags")
    print(meta.model_card or "(the served version has no model card: export it again with this version of the project)")
    return 0


def fail(error: Exception, code: int) -> int:
    print(f"{PROG}: error: {' '.join(str(error).split())}", file=sys.stderr)  # one line, whatever the server said
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a == "--files" or a.startswith("--files=") for a in argv):  # a folder of filings: the batch tagger
        from client.batch import main as tag_files

        return tag_files(argv)
    try:
        args = parser().parse_args(argv)
        if args.info:
            return info(args)
        documents = read_documents(args)
        with FinerClient(args.url, args.protocol, args.model, timeout=args.timeout) as client:
            found = client.tag(documents, labels=args.labels.split(",") if args.labels else None)
        colour = use_colour(args.color)
        if not sys.stdout.isatty() and hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(encoding="utf-8")  # files and pipes get UTF-8 whatever the locale
        for i, (text, entities) in enumerate(zip(documents, found)):
            if args.format == "jsonl":
                print(json.dumps({"index": i, "entities": [e.to_dict() for e in entities]}, ensure_ascii=False))
            else:
                print(mark(text, entities, colour).rstrip("\n"))
        sys.stdout.flush()
    except (UsageError, InvalidInput) as e:
        return fail(e, 2)
    except FinerError as e:
        return fail(e, 1)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `finer-tag ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
