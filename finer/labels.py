"""FiNER-139 labels and label scopes.

Label ids always come from `ner_tags_names.json` (the dataset's ClassLabel order), which is not
in B/I pair order: never derive an id from a rule, always look it up in the list.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable

OUTSIDE = "O"
# A word whose gold label is not known (partially labelled data): no loss, no score, never read as O.
UNKNOWN = "?"

DEBT_TYPES = (
    "DebtInstrumentBasisSpreadOnVariableRate1",
    "DebtInstrumentInterestRateStatedPercentage",
    "LineOfCreditFacilityMaximumBorrowingCapacity",
    "DebtInstrumentInterestRateEffectivePercentage",
)


# Named scopes derived from data (`python -m evaluation.scopes`), e.g. `debt-family`.
SCOPES_FILE = Path(__file__).parent / "data" / "scopes.json"


def named_scopes() -> dict[str, tuple[str, ...]]:
    if not SCOPES_FILE.is_file():
        return {}
    return {name: tuple(s["types"]) for name, s in json.loads(SCOPES_FILE.read_text()).items()}


def finer_label_names() -> list[str]:
    """The 279 FiNER-139 tag names in id order."""
    return json.loads(resources.files("finer").joinpath("data/ner_tags_names.json").read_text())


def entity_type(tag: str) -> str:
    """'B-Foo' -> 'Foo'; 'O' -> ''."""
    return tag[2:] if tag[:2] in ("B-", "I-") else ""


def types_of(tags: Iterable[str]) -> list[str]:
    """The entity types that tags name, in the order they first appear ('B-X', 'I-X' -> 'X'; 'O' dropped)."""
    return [kind for kind in dict.fromkeys(entity_type(t) for t in tags) if kind]


def finer_types() -> list[str]:
    """The 139 FiNER entity types, in the order they first appear in the label list."""
    return types_of(finer_label_names())


class ScopeError(ValueError):
    pass


@dataclass(frozen=True)
class LabelScope:
    """The entity types a model predicts; every other tag is read as `O`."""

    name: str
    types: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str) -> "LabelScope":
        """`debt`, `all`, a named scope of scopes.json (`debt-family`), or a comma-separated list of FiNER types."""
        known = finer_types()
        if spec == "debt":
            return cls("debt", DEBT_TYPES)
        if spec == "all":
            return cls("all", tuple(known))
        named = named_scopes()
        if spec in named:
            return cls(spec, named[spec])
        types = tuple(t.strip() for t in spec.split(",") if t.strip())
        unknown = [t for t in types if t not in known]
        if unknown or not types:
            raise ScopeError(
                f"unknown FiNER type(s) in label scope: {', '.join(unknown) or spec!r}; "
                f"use 'debt', 'all', {''.join(repr(n) + ', ' for n in named)}or names from "
                "finer/data/ner_tags_names.json without B-/I-"
            )
        return cls("custom", types)

    @property
    def label_names(self) -> list[str]:
        """`O` then B-/I- of each type in FiNER's own list order, so ids are stable across runs."""
        wanted = set(self.types)
        return [t for t in finer_label_names() if t == OUTSIDE or entity_type(t) in wanted]

    def restrict(self, tags: list[str]) -> list[str]:
        """Map tags outside the scope to `O` (an `UNKNOWN` stays unknown)."""
        wanted = set(self.types)
        return [t if t == UNKNOWN or entity_type(t) in wanted else OUTSIDE for t in tags]

    def covers(self, tags: list[str]) -> bool:
        """True when the sentence holds at least one tag of this scope."""
        wanted = set(self.types)
        return any(entity_type(t) in wanted for t in tags)


def requested_types(specs: Iterable[str]) -> frozenset[str]:
    """The entity types a request asks for: each spec is a scope name ('debt', 'all') or a FiNER
    type, e.g. ['debt', 'DebtInstrumentFaceAmount']. ScopeError names any unknown one."""
    specs = [s.strip() for s in specs if s.strip()]
    if not specs:
        raise ScopeError("empty label list: give scope names ('debt', 'all') or FiNER types, or leave it out")
    return frozenset(t for spec in specs for t in LabelScope.parse(spec).types)
