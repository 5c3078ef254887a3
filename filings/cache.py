"""Cache of converted filings: a filing is parsed once per (bytes, reader code, settings).

One gzipped JSON file per filing under the corpus folder's `filings/`. The key hashes the file's
content, its manifest row, the reader's settings and the source of the modules that turn HTML
into tagged words, so editing the reader or the file invalidates exactly what it should.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections import Counter
from pathlib import Path

from filings.ixbrl import Filing, FilingMeta

# The modules whose code decides a filing's sentences and tags.
_READER_MODULES = ("filings/ixbrl.py", "finer/words.py", "finer/labels.py", "finer/data/ner_tags_names.json")
_ROOT = Path(__file__).resolve().parent.parent


def reader_fingerprint() -> str:
    h = hashlib.sha256()
    for rel in _READER_MODULES:
        h.update((_ROOT / rel).read_bytes())
    return h.hexdigest()[:16]


class FilingCache:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.reader = reader_fingerprint()
        self.hits = self.stored = 0
        self._keys: dict[str, Path] = {}  # a miss is looked up, then stored: hash each file once

    def _path(self, job: tuple[str, dict | None, bool]) -> Path:
        path, row, durations = job
        if path in self._keys:
            return self._keys[path]
        h = hashlib.sha256(Path(path).read_bytes())
        h.update(json.dumps([row, durations, self.reader], sort_keys=True).encode())
        self._keys[path] = self.folder / f"{Path(path).name.split('.')[0]}-{h.hexdigest()[:20]}.json.gz"
        return self._keys[path]

    def get(self, job) -> tuple[Filing | None, str] | None:
        """(Filing or None, skip reason) stored for this job, or None when it must be parsed."""
        target = self._path(job)
        try:
            with gzip.open(target, "rt", encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, EOFError, ValueError):  # absent, or cut short by an interrupted write
            return None
        self.hits += 1
        if data["skip"]:
            return None, data["skip"]
        return Filing(FilingMeta(**data["meta"]), data["sentences"], Counter(data["counts"])), ""

    def put(self, job, filing: Filing | None, skip: str) -> None:
        target = self._path(job)
        data = {"skip": skip, "meta": filing.meta.__dict__ if filing else None,
                "sentences": filing.sentences if filing else [], "counts": dict(filing.counts) if filing else {}}
        tmp = target.with_suffix(".tmp")
        with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=3) as fh:
            json.dump(data, fh, ensure_ascii=False)
        os.replace(tmp, target)  # atomic: a killed build never leaves a half-written entry
        self.stored += 1
