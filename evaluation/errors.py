"""Error report: what happens to each gold entity, which types are mistaken for which, and which
number shapes the model misses. Written as errors.md (tables) and errors.png (plots).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from finer.spans import tag_spans
from finer.words import is_number, number_shape

MISSED = "(missed)"
SPURIOUS = "(not tagged)"


def _context(words: Sequence[str], a: int, b: int, width: int = 8) -> str:
    left, right = " ".join(words[max(0, a - width):a]), " ".join(words[b:b + width])
    return f"{left} **{' '.join(words[a:b])}** {right}".strip()


def error_report(words: Sequence[Sequence[str]], gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]],
                 examples: int = 8) -> dict:
    """Entity-level outcomes. A gold entity is `correct`, `wrong type` (same words, other type),
    `partial` (overlapping words) or `missed`; a predicted entity overlapping no gold one is
    `spurious` (often a number the filer did not tag). Keeps the first `examples` of each error."""
    outcomes: Counter = Counter()
    shown: dict[str, list] = defaultdict(list)
    confusion: dict[str, Counter] = defaultdict(Counter)  # gold type -> predicted type (same words) or MISSED
    shapes: dict[str, Counter] = defaultdict(Counter)  # number shape -> found / total
    for ws, g, p in zip(words, gold, pred):
        gs, ps = tag_spans(g), tag_spans(p)
        by_words = {(a, b): k for k, a, b in ps}
        for kind, a, b in gs:
            if (kind, a, b) in ps:
                outcome, seen = "correct", kind
            elif (a, b) in by_words:
                outcome, seen = "wrong type", by_words[(a, b)]
            elif any(x < b and a < y for _, x, y in ps):
                outcome, seen = "partial", MISSED
            else:
                outcome, seen = "missed", MISSED
            outcomes[outcome] += 1
            confusion[kind][seen] += 1
            if outcome != "correct" and len(shown[outcome]) < examples:
                shown[outcome].append([kind, seen, _context(ws, a, b)])
            shape = number_shape(ws[a]) if b - a == 1 and is_number(ws[a]) else "(not a number)"
            shapes[shape]["total"] += 1
            shapes[shape]["found"] += outcome == "correct"
        for kind, a, b in ps:
            if not any(x < b and a < y for _, x, y in gs):
                outcomes["spurious"] += 1
                confusion[SPURIOUS][kind] += 1
                if len(shown["spurious"]) < examples:
                    shown["spurious"].append([SPURIOUS, kind, _context(ws, a, b)])
    return {"outcomes": dict(outcomes), "confusion": {k: dict(v) for k, v in confusion.items()},
            "shapes": {k: dict(v) for k, v in shapes.items()}, "examples": dict(shown)}


def _short(name: str, n: int = 48) -> str:
    return name if len(name) <= n else name[: n - 3] + "..."


def error_table(report: dict, top: int = 15) -> str:
    o = report["outcomes"]
    total = sum(v for k, v in o.items() if k != "spurious")
    lines = ["| gold entities | correct | wrong type | partial | missed | predicted, overlapping no gold entity |",
             "|---:|---:|---:|---:|---:|---:|",
             f"| {total} | {o.get('correct', 0)} | {o.get('wrong type', 0)} | {o.get('partial', 0)} "
             f"| {o.get('missed', 0)} | {o.get('spurious', 0)} |", ""]
    pairs = sorted(((n, g, p) for g, row in report["confusion"].items() for p, n in row.items()
                    if g != p and g != SPURIOUS and p != MISSED), reverse=True)[:top]
    lines += ["| gold type | read as | entities |", "|---|---|---:|"]
    lines += [f"| {g} | {p} | {n} |" for n, g, p in pairs] or ["| (no type confusions) | | |"]
    shapes = sorted(report["shapes"].items(), key=lambda kv: -kv[1]["total"])[:top]
    lines += ["", "| number shape | gold entities | found | recall |", "|---|---:|---:|---:|"]
    lines += [f"| `{s}` | {c['total']} | {c.get('found', 0)} | {c.get('found', 0) / c['total']:.2f} |" for s, c in shapes]
    shown = [(k, g, p, text) for k, rows in report.get("examples", {}).items() for g, p, text in rows]
    if shown:
        lines += ["", "| error | gold | predicted | words around it |", "|---|---|---|---|"]
        lines += [f"| {k} | {_short(g, 40)} | {_short(p, 40)} | {text.replace('|', '/')} |" for k, g, p, text in shown]
    return "\n".join(lines)


def plot_errors(report: dict, path: Path, title: str, max_types: int = 12) -> Path:
    """Left: gold type -> predicted type on the same words (or missed), top types; right: recall by shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = {g: row for g, row in report["confusion"].items() if g != SPURIOUS}
    rows = sorted(conf, key=lambda g: -sum(conf[g].values()))[:max_types]
    cols = rows + [MISSED]
    m = np.array([[conf[g].get(c, 0) for c in cols] for g in rows], dtype=float).reshape(len(rows), len(cols))
    shapes = sorted(report["shapes"].items(), key=lambda kv: -kv[1]["total"])[:max_types]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1.3, 1]})
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    a1.imshow(norm, cmap="Reds", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(m):
        if v:
            a1.text(j, i, int(v), ha="center", va="center", fontsize=7, color="white" if norm[i, j] > 0.6 else "black")
    a1.set_xticks(range(len(cols)), [_short(c, 28) for c in cols], rotation=90, fontsize=7)
    a1.set_yticks(range(len(rows)), [_short(r, 36) for r in rows], fontsize=7)
    a1.set_xlabel("predicted on the same words")
    a1.set_ylabel("gold")
    a1.set_title("gold entities by outcome (rows normalised)", fontsize=9)
    if shapes:
        names = [s for s, _ in shapes]
        recall = [c.get("found", 0) / c["total"] for _, c in shapes]
        a2.barh(range(len(names)), recall, color="tab:blue")
        a2.set_yticks(range(len(names)), [f"{s} ({c['total']})" for s, c in shapes], fontsize=7)
        a2.invert_yaxis()
        a2.set_xlim(0, 1)
        a2.set_xlabel("recall (exact entity)")
        a2.set_title("recall by number shape (gold entities)", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
