"""The "Tag text" tab: pasted text -> the server's entities, highlighted, as a table, with latency.

Everything here is plain Python (no Gradio): `tag_text` asks the server, `shown` applies the score
threshold, `highlight_html` and `entity_rows` render what is shown.
"""
from __future__ import annotations

import html
import time
import zlib
from dataclasses import dataclass

from client import Entity, FinerClient

# A paste is for a passage; a whole filing goes through the "Check a filing" tab, which keeps only the
# sentences that can hold an entity. 100,000 characters is about 30 pages of a 10-K.
MAX_TEXT_CHARS = 100_000

SCOPES = ("all", "debt", "chosen types")
ENTITY_COLUMNS = ["text", "label", "start", "end", "score"]


@dataclass(frozen=True)
class Example:
    text: str
    source: str  # the filing in ../shared/data/ixbrl/filings whose narrative holds the sentence
    shows: str

    @property
    def button(self) -> str:
        """The example's button in the page: what it shows, and the filer's ticker."""
        return f"{self.shows} ({self.source.split('_')[0]})"


# Real sentences of the corpus's filings (whitespace collapsed), LIBOR and SOFR era: rates, amounts, durations.
EXAMPLES = [
    Example("The notes were set to mature on May 15, 2026 and bore interest at a rate of 7.00% per annum.",
            "ADNT_10-K_2022-09-30.htm.gz", "a stated rate"),
    Example("The Term Facility bore interest at a floating rate of LIBOR plus 1.50%.",
            "FXLV_10-K_2022-12-31.htm.gz", "a spread over LIBOR"),
    Example("The A&R Credit Facility bears interest at a rate that is equal to Term SOFR plus an applicable margin "
            "ranging from 1.75% to 2.75% based on certain consolidated leverage ratio measures.",
            "ONEW_10-K_2022-09-30.htm.gz", "a spread over SOFR"),
    Example("At September 2022, the Facilities have a total combined borrowing capacity of $250.0 million, which "
            "includes provisions for up to $30.0 million in credit advances for certain inventory purchases.",
            "DIT_10-K_2022-09-30.htm.gz", "amounts"),
    Example("As of August 31, 2022, there was $30.0 million of total unrecognized compensation cost related to "
            "unvested restricted stock, which is expected to be recognized over a weighted-average period of "
            "1.5 years.",
            "AYI_10-K_2022-08-31.htm.gz", "an amount and a duration"),
]


class InputProblem(ValueError):
    """Input the app refuses before asking the server; the message is shown in the page as it is."""


@dataclass(frozen=True)
class Tagged:
    text: str
    entities: list[Entity]
    seconds: float  # the tag() call's wall time: the request's latency as the user sees it


def requested_labels(scope: str, chosen: list[str] | None) -> str | list[str] | None:
    """`tag(labels=...)` for the label filter: None (every type served), "debt", or the chosen types."""
    if scope == "all":
        return None
    if scope == "debt":
        return "debt"
    if scope == "chosen types":
        if not chosen:
            raise InputProblem("Choose at least one type in the list, or set the label filter to 'all' or 'debt'.")
        return list(chosen)
    raise InputProblem(f"Unknown label filter {scope!r}: use one of {', '.join(SCOPES)}.")


def tag_text(client: FinerClient, text: str, scope: str = "all", chosen: list[str] | None = None) -> Tagged:
    """The server's entities of `text`; InputProblem for empty or oversized text, FinerError from the client."""
    if not text or not text.strip():
        raise InputProblem("Paste some text first, or click one of the examples.")
    if len(text) > MAX_TEXT_CHARS:
        raise InputProblem(f"The text is {len(text):,} characters; this tab takes at most {MAX_TEXT_CHARS:,}. "
                           "For a whole filing, upload it in the 'Check a filing' tab.")
    labels = requested_labels(scope, chosen)
    started = time.perf_counter()
    entities = client.tag(text, labels=labels)
    return Tagged(text, entities, time.perf_counter() - started)


def shown(entities: list[Entity], threshold: float) -> list[Entity]:
    return [e for e in entities if e.score >= threshold]


def label_colour(label: str) -> str:
    """One stable colour per label, the same in every request."""
    return f"hsl({zlib.crc32(label.encode()) % 360} 75% 82%)"


def highlight_html(text: str, entities: list[Entity]) -> str:
    """`text` with each entity in a <mark> showing its label and score (escaped; whitespace kept by CSS)."""
    parts, at = [], 0
    for e in entities:
        parts.append(html.escape(text[at:e.start]))
        label = html.escape(e.label)
        parts.append(
            f'<mark class="finer-entity" style="background:{label_colour(e.label)}" data-label="{label}" '
            f'data-start="{e.start}" data-end="{e.end}" data-score="{e.score:.4f}" '
            f'title="{label}, score {e.score:.3f}">'
            f'<span class="finer-value">{html.escape(e.text)}</span>'
            f'<span class="finer-label">{label} {e.score:.2f}</span></mark>'
        )
        at = e.end
    parts.append(html.escape(text[at:]))
    return f'<div class="finer-text">{"".join(parts)}</div>'


def entity_rows(entities: list[Entity]) -> list[list]:
    return [[e.text, e.label, e.start, e.end, round(e.score, 4)] for e in entities]


def summary(tagged: Tagged, threshold: float) -> str:
    """One line: latency, entities shown, and how many the threshold hides."""
    visible = len(shown(tagged.entities, threshold))
    hidden = len(tagged.entities) - visible
    line = (f"Tagged {len(tagged.text):,} characters in **{tagged.seconds * 1000:,.0f} ms**: "
            f"{visible} {'entity' if visible == 1 else 'entities'}")
    if hidden:
        line += f" ({hidden} below the score threshold {threshold:.2f} hidden)"
    return line + "."
