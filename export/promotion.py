"""Champion / challenger: a newly exported model is written only when it is not worse than the served one.

Before an export writes version N+1, the candidate (in the precision it will be served in) and
the version the repository serves now are scored on the same fixed evaluation sets: the test
split of the candidate's training data, filtered (the sentences holding a tag of the shared scope)
and unfiltered, and the FiNER-era dev part of its FiNER sample when it had one. Each model decodes
as it is served (its own windows and calibrated decision). The micro-F1 difference on each set
comes with a paired bootstrap interval (the same sentences resampled for both models); the
candidate is refused when on any set the whole interval lies below zero. Models of different label
sets are compared on the types both serve, and the verdict says so.

The MLflow registry follows the verdict: alias `champion` on the served model's registered version,
`challenger` on a refused one; a rollback moves `champion` back (export.registry).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from finer.artifacts import MODEL_NAME, MissingArtifacts, latest_ensemble, versions
from finer.labels import UNKNOWN, LabelScope, types_of
from finer.pipeline import TaggerConfig, load_tokenizer
from finer.runtime import ort_logits, session
from filings.finer_sample import FINER_DEV
from export.source import ExportError

@dataclass
class Model:
    """One side of the comparison: a finer_model graph with the tokenizer and finer.json it is served with."""

    name: str  # "candidate" or "served version N"
    onnx: Path
    tokenizer: object
    config: TaggerConfig

    @classmethod
    def of_version(cls, folder: Path) -> "Model":
        return cls(f"served version {folder.name}", folder / "model.onnx", load_tokenizer(folder / "tokenizer.json"),
                   TaggerConfig.load(folder))

    def types(self) -> list[str]:
        return types_of(self.config.labels)

    @cached_property
    def logits(self):
        """The graph in an ONNX Runtime session, loaded once for every set it is scored on."""
        return ort_logits(session(self.onnx))


@dataclass
class Verdict:
    promoted: bool
    line: str  # one line with the figures
    served_version: int | None = None
    scope: list = field(default_factory=list)  # the types compared
    sets: dict = field(default_factory=dict)  # set -> served/candidate F1, difference and interval (points)
    forced: bool = False

    def to_dict(self) -> dict:
        return {"promoted": self.promoted, "verdict": self.line, "served_version": self.served_version,
                "scope": self.scope, "sets": self.sets, "forced": self.forced}


def served_version(repository: Path) -> Path | None:
    """The finer_model folder the repository serves now, None when it holds no version yet."""
    if not versions(Path(repository) / MODEL_NAME):
        return None
    try:
        return latest_ensemble(repository)
    except MissingArtifacts as e:
        raise ExportError(f"the served version cannot be compared: {e}") from None


def evaluation_sets(data: str, finer_sample: str = "", max_sentences: int | None = None) -> dict[str, list[dict]]:
    """The fixed sets: the test split of `data` and the dev part of `finer_sample`; a one-line error
    naming whichever cannot be read."""
    from filings.finer_sample import load_sample
    from filings.sources import DataError, load_splits, resolve_source

    if not data:
        raise ExportError("no evaluation data to compare the candidate with the served version: give --eval-data "
                          "(the FiNER-format folder it was trained on), or --force to write it unchecked")
    try:
        test = load_splits(resolve_source(data), only="test").get("test")
    except DataError as e:
        raise ExportError(f"evaluation set {data}: {e}; or --force to write it unchecked") from None
    if not test:
        raise ExportError(f"evaluation set {data}: no 'test' split; or --force to write it unchecked")
    sets = {"test": test[:max_sentences]}
    if finer_sample:
        if not Path(finer_sample).is_file():
            raise ExportError(f"evaluation set {finer_sample} (the FiNER sample): no such file; "
                              "or --force to write it unchecked")
        sets[FINER_DEV] = load_sample(finer_sample)["dev"][:max_sentences]
    return sets


def shared_scope(candidate: Model, served: Model) -> LabelScope:
    common = [t for t in candidate.types() if t in set(served.types())]
    if not common:
        raise ExportError(f"the candidate ({len(candidate.types())} types) and {served.name} share no entity type: "
                          "nothing to compare; --force writes it anyway")
    return LabelScope("shared", tuple(common))


def counts(model: Model, rows: list[dict], scope: LabelScope) -> np.ndarray:
    """[sentences, types, 3] true/false positives and misses of `model` in `scope`, decoded as served."""
    from evaluation.confidence import entity_counts
    from evaluation.evaluate import predict, scored_pair

    known = set(scope.label_names) | {UNKNOWN}
    pred = predict(model.logits, model.tokenizer, rows, model.config, desc=model.name)
    pairs = [scored_pair(r["ner_tags"], p, scope, known) for r, p in zip(rows, pred)]
    return entity_counts([g for g, _ in pairs], [p for _, p in pairs], scope.types)


def _f1(c: np.ndarray) -> float:
    from evaluation.confidence import f1_scores

    return float(f1_scores(c.sum(axis=0))[0])


def compare(candidate: Model, served_folder: Path, sets: dict[str, list[dict]]) -> Verdict:
    """Score both models on every set; promoted unless the candidate is worse beyond the interval on one."""
    from evaluation.confidence import paired_difference

    served = Model.of_version(served_folder)
    scope = shared_scope(candidate, served)
    results, worse = {}, []
    for name, rows in sets.items():
        a, b = counts(served, rows, scope), counts(candidate, rows, scope)
        every = np.arange(len(rows))
        if name == FINER_DEV:
            parts = [(FINER_DEV, every)]
        else:  # filtered: the sentences holding a gold entity of the shared scope (true positives + misses)
            parts = [("test_filtered", np.flatnonzero(a[..., [0, 2]].sum(axis=(1, 2)) > 0)), ("test_unfiltered", every)]
        for label, idx in parts:
            point, lo, hi = (100 * x for x in paired_difference(a[idx], b[idx]))
            results[label] = {"sentences": int(len(idx)), "served_f1": round(_f1(a[idx]), 4),
                              "candidate_f1": round(_f1(b[idx]), 4), "difference_points": round(point, 2),
                              "interval_points": [round(lo, 2), round(hi, 2)]}
            if hi < 0:
                worse.append(label)
    shared = (f"on the {len(scope.types)} types both serve (candidate {len(candidate.types())}, "
              f"served {len(served.types())})" if set(candidate.types()) != set(served.types())
              else f"on its {len(scope.types)} types")
    figures = "; ".join(f"{k} {v['candidate_f1']:.3f} vs {v['served_f1']:.3f} ({v['difference_points']:+.2f} points, "
                        f"95% paired interval {v['interval_points'][0]:+.2f} to {v['interval_points'][1]:+.2f})"
                        for k, v in results.items())
    promoted = not worse
    line = (f"promotion: candidate vs {served.name} {shared}: {figures}: "
            + ("not worse beyond the interval, promoted" if promoted
               else f"worse beyond the interval on {', '.join(worse)}, refused"))
    return Verdict(promoted, line, int(served_folder.name), list(scope.types), results)


def decide(candidate: Model, repository: Path, data: str, finer_sample: str, force: bool,
           max_sentences: int | None = None) -> Verdict:
    """The verdict on writing `candidate` into `repository`: the first version and `force` need no check
    (a forced export that can be compared still is, and the figures are recorded)."""
    folder = served_version(repository)
    if folder is None:
        return Verdict(True, "promotion: no version served yet, nothing to compare with: the candidate is the champion")
    try:
        verdict = compare(candidate, folder, evaluation_sets(data, finer_sample, max_sentences))
    except ExportError as e:
        if not force:
            raise
        return Verdict(True, f"--force: written without a comparison ({e})", int(folder.name), forced=True)
    if force and not verdict.promoted:
        verdict.promoted, verdict.forced = True, True
        verdict.line += " (written anyway: --force)"
    return verdict
