"""FiNER-format data: the hub's FiNER-139, local files, or a corpus built from iXBRL filings.

Every source yields the same records: `tokens` (words), `ner_tags` (label names) and, where known,
provenance (`id`, `company`, `form`, `period`, `source`). Bad rows are never dropped silently:
malformed lines are counted and reported, unknown labels stop the run with the file and line.
"""
from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from finer.labels import OUTSIDE, LabelScope, finer_label_names

HUB_REPO = "nlpaueb/finer-139"
HUB_FILE = "finer139.zip"
SPLITS = ("train", "validation", "test")


class DataError(Exception):
    """A user-fixable problem with the data; the message says where and what to do."""


@dataclass
class LoadReport:
    """What was read and what was skipped, per file."""

    rows: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)  # first few skip reasons with file:line

    def skip(self, where: str, why: str) -> None:
        self.skipped[where.split(":")[0]] += 1
        if len(self.examples) < 5:
            self.examples.append(f"{where}: {why}")

    def summary(self) -> str:
        total = sum(self.skipped.values())
        if not total:
            return f"read {sum(self.rows.values())} sentences"
        return (f"read {sum(self.rows.values())} sentences, skipped {total} malformed rows "
                f"(e.g. {'; '.join(self.examples)})")


def _parse_rows(lines: Iterable[tuple[int, str]], where: str, report: LoadReport) -> Iterator[dict]:
    names = finer_label_names()
    known = set(names)
    for lineno, line in lines:
        if not line.strip():
            continue
        at = f"{where}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            report.skip(at, f"not JSON ({e.msg})")
            continue
        yield _check_row(row, at, names, known, report)


def _check_row(row, at: str, names: list[str], known: set[str], report: LoadReport) -> dict | None:
    tokens, tags = (row.get("tokens"), row.get("ner_tags")) if isinstance(row, dict) else (None, None)
    if not isinstance(tokens, list) or not isinstance(tags, list):
        report.skip(at, "needs 'tokens' and 'ner_tags' lists")
        return None
    if len(tokens) != len(tags):
        report.skip(at, f"{len(tokens)} tokens but {len(tags)} tags")
        return None
    out = []
    for tag in tags:
        if isinstance(tag, int) and 0 <= tag < len(names):
            out.append(names[tag])
        elif isinstance(tag, str) and tag in known:
            out.append(tag)
        else:
            raise DataError(f"{at}: unknown label {tag!r}; labels must be FiNER-139 names or ids "
                            "(finer/data/ner_tags_names.json)")
    report.rows[at.split(":")[0]] += 1
    return {**row, "tokens": [str(t) for t in tokens], "ner_tags": out}


def _read_parquet(path: Path, report: LoadReport) -> list[dict]:
    import pyarrow.parquet as pq

    names = finer_label_names()
    table = pq.read_table(path)
    return [r for i, row in enumerate(table.to_pylist(), 1)
            if (r := _check_row(row, f"{path}:{i}", names, set(names), report)) is not None]


def _split_of(name: str) -> str | None:
    stem = Path(name).name.split(".")[0].lower()
    aliases = {"train": "train", "validation": "validation", "valid": "validation", "dev": "validation", "test": "test"}
    return aliases.get(stem)


def load_splits(source: str | Path, report: LoadReport | None = None, only: str | None = None) -> dict[str, list[dict]]:
    """Read train/validation/test from a folder, a zip, or single jsonl/parquet files named by split
    (`only`: just that split of a folder or zip, e.g. 'test', without reading the others)."""
    report = report if report is not None else LoadReport()
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; give a FiNER-format folder, zip, jsonl or parquet file")
    splits: dict[str, list[dict]] = {}
    try:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".parquet") and _split_of(p.name)
                           and only in (None, _split_of(p.name)))
            if not files:
                raise DataError(f"{path}: no {only or 'train/validation/test'} .jsonl or .parquet files in this folder")
            for f in files:
                splits.setdefault(_split_of(f.name), []).extend(_read_file(f, report))
        elif path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                members = [m for m in zf.namelist() if m.endswith(".jsonl") and _split_of(m)
                           and only in (None, _split_of(m))]
                if not members:
                    raise DataError(f"{path}: the zip holds no train/validation/test .jsonl files")
                for m in members:
                    with zf.open(m) as fh:
                        lines = enumerate(io.TextIOWrapper(fh, encoding="utf-8"), 1)
                        rows = [r for r in _parse_rows(lines, f"{path}!{m}", report) if r]
                    splits.setdefault(_split_of(m), []).extend(rows)
        else:
            split = _split_of(path.name) or "train"
            splits[split] = _read_file(path, report)
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e}); check the file is FiNER-format jsonl, parquet or zip") from None
    return splits


def _read_file(path: Path, report: LoadReport) -> list[dict]:
    if path.suffix == ".parquet":
        return _read_parquet(path, report)
    with path.open(encoding="utf-8") as fh:
        return [r for r in _parse_rows(enumerate(fh, 1), str(path), report) if r]


def download_finer139(cache_dir: str | None = None) -> Path:
    """FiNER-139 from the hub, cached like any hub download (the dataset's script loader is gone in datasets>=4)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(HUB_REPO, HUB_FILE, repo_type="dataset", cache_dir=cache_dir))
    except (LocalEntryNotFoundError, OSError) as e:
        raise DataError(
            f"cannot download {HUB_FILE} from the Hugging Face dataset {HUB_REPO} ({type(e).__name__}); "
            "without hub access build a corpus from iXBRL filings (python -m filings.corpus) "
            "and pass its folder with --data"
        ) from None


def resolve_source(data: str) -> Path:
    return download_finer139() if data == "hub" else Path(data)


def select(rows: list[dict], scope: LabelScope, filtered: bool, focus: LabelScope | None = None) -> list[dict]:
    """Restrict tags to the scope; with `filtered`, keep only sentences holding a tag of the scope
    (of `focus`, when given)."""
    focus = focus or scope
    out = []
    for row in rows:
        if filtered and not focus.covers(row["ner_tags"]):
            continue
        out.append({**row, "ner_tags": scope.restrict(row["ner_tags"])})
    return out


def entity_counts(rows: list[dict]) -> Counter:
    return Counter(t[2:] for r in rows for t in r["ner_tags"] if t.startswith("B-"))


def require(rows: list[dict], what: str) -> list[dict]:
    if not rows:
        raise DataError(f"{what} is empty; check the data source and the label scope (--scope)")
    if not any(t != OUTSIDE for r in rows for t in r["ner_tags"]):
        raise DataError(f"{what} has no entity of the label scope; choose another --scope or data source")
    return rows
