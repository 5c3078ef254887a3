"""Entity scores as seqeval computes them (strict IOB2): what early stopping and evaluation both read."""
from __future__ import annotations


def entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """seqeval's strict IOB2 report as a dict: per class and micro/macro/weighted avg."""
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    report = classification_report(gold, pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    return {k: {m: float(v) for m, v in d.items()} for k, d in report.items()}
