"""Per-word tags -> entities with character spans in the original text.

Decoding follows IOB2 strictly, as seqeval's strict mode scores it: an entity starts at `B-X` and
takes the `I-X` words that follow; a stray `I-X` starts nothing. Evaluation and serving both decode
here, so the F1 we report is the F1 of what the server returns.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from finer.labels import OUTSIDE, entity_type
from finer.words import Word


@dataclass(frozen=True)
class Entity:
    text: str
    label: str  # the FiNER/XBRL concept, e.g. DebtInstrumentInterestRateStatedPercentage
    start: int  # character offsets: source[start:end] == text
    end: int
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


def tag_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first word, last word + 1) of each entity in an IOB2 tag sequence."""
    spans = []
    current = None
    for i, tag in enumerate(tags):
        kind = entity_type(tag)
        if current and tag == f"I-{current[0]}":
            current[2] = i + 1
            continue
        if current:
            spans.append(tuple(current))
            current = None
        if tag.startswith("B-"):
            current = [kind, i, i + 1]
    if current:
        spans.append(tuple(current))
    return spans


def drop_below(tags: Sequence[str], scores: Sequence[float], min_scores: dict[str, float] | None) -> list[str]:
    """`tags` with every entity whose score (the mean probability of its words) is below its type's
    minimum read as O: the calibrated decision (`min_scores` fitted on validation, in finer.json)."""
    out = list(tags)
    if not min_scores:
        return out
    for kind, first, last in tag_spans(tags):
        if sum(scores[first:last]) / (last - first) < min_scores.get(kind, 0.0):
            out[first:last] = [OUTSIDE] * (last - first)
    return out


def decode(source: str, words: Sequence[Word], tags: Sequence[str], scores: Sequence[float] | None = None,
           min_scores: dict[str, float] | None = None) -> list[Entity]:
    """Entities of one document; `scores[i]` is the probability of `tags[i]` (the entity gets the mean);
    entities below their type's `min_scores` are left out."""
    if len(words) != len(tags):
        raise ValueError(f"{len(words)} words but {len(tags)} tags")
    if scores is not None:
        tags = drop_below(tags, scores, min_scores)
    entities = []
    for kind, first, last in tag_spans(tags):
        start, end = words[first].start, words[last - 1].end
        score = 1.0 if scores is None else float(sum(scores[first:last]) / (last - first))
        entities.append(Entity(source[start:end], kind, start, end, round(score, 4)))
    return entities
