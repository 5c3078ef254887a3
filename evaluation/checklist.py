"""The behavioural check of the debt view: hand-written debt-note sentences, scored per pattern.

    python -m evaluation.checklist runs/serve/model          # a trained model folder (PyTorch)
    python -m evaluation.checklist model_repository/finer_model/3   # an exported version (ONNX Runtime)

Each number of `debt_checklist.txt` is marked with the label a filer would give it, or is expected
to get no debt tag at all. The sentences go through the served path (`Tagger.entities`: raw text,
word splitting, windows, the calibrated decision), and a sentence counts as right when every one of
its numbers is. CheckList-style (Ribeiro et al., 2020): a readable regression report, not a test
set to tune on.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from finer.labels import DEBT_TYPES
from finer.words import is_number, split_words

CHECKLIST = Path(__file__).with_name("debt_checklist.txt")
ALIASES = dict(zip(("spread", "stated", "capacity", "effective"), DEBT_TYPES))
OTHER = "other"  # a neighbouring concept: no debt tag
MARK = re.compile(r"\[([^|\]]+)\|(\w+)\]")


@dataclass
class Item:
    pattern: str
    text: str
    expected: dict[tuple[int, int], str]  # (start, end) of each number -> DEBT type or OTHER


def load(path: Path = CHECKLIST) -> list[Item]:
    items, pattern = [], ""
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("## "):
            pattern = line[3:].strip()
            continue
        if not line.strip() or line.startswith("#"):
            continue
        text, marks, at = "", {}, 0
        for m in MARK.finditer(line):
            text += line[at : m.start()]
            label = OTHER if m.group(2) == OTHER else ALIASES.get(m.group(2))
            if label is None:
                raise ValueError(f"{path}:{lineno}: unknown label {m.group(2)!r} (use {', '.join(ALIASES)} or {OTHER})")
            marks[(len(text), len(text) + len(m.group(1)))] = label
            text += m.group(1)
            at = m.end()
        text += line[at:]
        numbers = {(w.start, w.end) for w in split_words(text) if is_number(w.text)}
        if set(marks) - numbers:
            raise ValueError(f"{path}:{lineno}: a marked span is not one number word")
        items.append(Item(pattern, text, {span: marks.get(span, OTHER) for span in sorted(numbers)}))
    return items


def score(tagger, items: list[Item]) -> dict:
    """Per pattern: sentences right, numbers right, and the misses (text, number, expected, got, score)."""
    found = tagger.entities([it.text for it in items])
    out: dict = defaultdict(lambda: {"sentences": 0, "right": 0, "numbers": 0, "numbers_right": 0, "misses": []})
    for it, entities in zip(items, found):
        got = {(e.start, e.end): e for e in entities if e.label in DEBT_TYPES}
        p = out[it.pattern]
        p["sentences"] += 1
        wrong = 0
        for (start, end), want in it.expected.items():
            e = got.get((start, end))
            have = e.label if e else OTHER
            p["numbers"] += 1
            if have == want:
                p["numbers_right"] += 1
                continue
            wrong += 1
            p["misses"].append({"text": it.text, "number": it.text[start:end], "expected": want, "got": have,
                                "score": e.score if e else None})
        p["right"] += not wrong
    return dict(out)


def table(results: dict) -> str:
    short = {v: k for k, v in ALIASES.items()}
    lines = ["| pattern | sentences right | numbers right |", "|---|---:|---:|"]
    for name, p in results.items():
        lines.append(f"| {name} | {p['right']} / {p['sentences']} | {p['numbers_right']} / {p['numbers']} |")
    total = [sum(p[k] for p in results.values()) for k in ("right", "sentences", "numbers_right", "numbers")]
    lines.append(f"| **all** | {total[0]} / {total[1]} | {total[2]} / {total[3]} |")
    misses = [m for p in results.values() for m in p["misses"]]
    if misses:
        lines += ["", "Misses:", ""]
        for m in misses:
            got = short.get(m["got"], m["got"]) + (f" ({m['score']:.2f})" if m["score"] is not None else "")
            lines.append(f"- {m['number']}: expected {short.get(m['expected'], m['expected'])}, got {got} -- {m['text']}")
    return "\n".join(lines)


def tagger_for(folder: str | Path):
    """A Tagger of a trained model folder (PyTorch) or an exported version folder (ONNX Runtime)."""
    from finer.pipeline import Tagger, TaggerConfig, plain_tokenizer

    folder = Path(folder)
    if (folder / "model.onnx").is_file():
        return Tagger.from_version(folder)
    from training.models import load_model, torch_logits

    model, tokenizer = load_model(str(folder))
    return Tagger(plain_tokenizer(tokenizer.backend_tokenizer), TaggerConfig.load(folder), torch_logits(model))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation.checklist", description=__doc__.splitlines()[0])
    p.add_argument("model", help="a trained model folder or an exported version folder")
    p.add_argument("--checklist", default=str(CHECKLIST))
    a = p.parse_args(argv)
    try:
        print(table(score(tagger_for(a.model), load(Path(a.checklist)))))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
