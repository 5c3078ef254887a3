"""How one `tag()` call becomes Triton requests, and how the answers become entities again.

The server takes at most `max_documents` documents per request, needing at most `max_windows`
windows of `max_length` sub-tokens (overlapping by `stride`) together; the ensemble publishes all
four as parameters (generated from `finer.serving.ServingSpec`). The tokenizer lives in the model repository, so the client bounds
windows from length instead: a WordPiece/BPE sub-token covers at least one character, so a text of
n code points has at most n sub-tokens. Documents whose bound exceeds one request are cut into
pieces at paragraph, line, sentence or word boundaries (never inside a FiNER word), sent as
separate documents, and their entities shifted back to offsets in the original text. If a server
still finds a request too big (text that tokenises to more sub-tokens than characters, or a model
with other window settings), the request is halved and sent again (`halve`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Sequence

from finer.serving import ERROR_TOO_BIG, ServingSpec, has_code
from finer.spans import Entity  # the one the server's decoder makes: offsets into the document given to tag()
from finer.windows import window_count
from finer.words import may_hold_entity

from client.errors import InvalidInput, ServerError

# Sub-tokens per character, upper bound used to estimate windows (see the module docstring).
TOKENS_PER_CHAR = 1.0


@dataclass(frozen=True)
class Limits:
    max_documents: int
    max_windows: int
    max_length: int = ServingSpec.max_length
    stride: int = ServingSpec.stride

    @classmethod
    def from_config(cls, config: dict) -> "Limits":
        """From the ensemble's config as JSON (HTTP's dict, or gRPC's `as_json=True` ["config"]).
        A repository exported before the window settings were published gets the spec's defaults."""
        params = {k: v.get("string_value") for k, v in (config.get("parameters") or {}).items()}
        try:
            windows = {k: int(params[k]) for k in ("max_length", "stride") if k in params}
            return cls(int(params["max_documents"]), int(params["max_windows"]), **windows)
        except (KeyError, TypeError, ValueError):
            raise ServerError(
                f"model '{config.get('name')}' has no integer max_documents/max_windows parameters: "
                "is it the finer ensemble? check the model name"
            ) from None

    @property
    def piece_chars(self) -> int:
        """The longest text that surely fits the window limit on its own."""
        room = self.max_length - 2
        return int((room + (self.max_windows - 1) * (room - self.stride)) / TOKENS_PER_CHAR)

    def windows(self, text: str) -> int:
        """An upper bound of the windows `text` needs; an empty document still costs one."""
        return max(1, window_count(int(len(text) * TOKENS_PER_CHAR + 0.999), max_length=self.max_length,
                                   stride=self.stride))


@dataclass(frozen=True)
class Piece:
    document: int  # index in the call's list
    offset: int  # where `text` starts in that document
    text: str


def documents_of(texts) -> tuple[list[str], bool]:
    """The documents of a `tag()` argument and whether it was a single document.

    A `str` is one document; `bytes` are accepted if they are UTF-8 (and decoded); otherwise a list
    or tuple of those. Anything else raises InvalidInput naming the culprit.
    """
    if isinstance(texts, (str, bytes, bytearray)):
        return [_document(texts, None)], True
    if not isinstance(texts, (list, tuple)):
        raise InvalidInput(f"tag() takes a str or a list of str, not {type(texts).__name__}")
    return [_document(t, i) for i, t in enumerate(texts)], False


def _document(text, index: int | None) -> str:
    where = "the text" if index is None else f"texts[{index}]"
    if isinstance(text, (bytes, bytearray)):
        try:
            return bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidInput(f"{where} is not valid UTF-8 (byte {e.start}: {bytes(text)[e.start:e.start + 1]!r}): "
                               "decode it with its real encoding and pass a str") from None
    if not isinstance(text, str):
        raise InvalidInput(f"{where} is {type(text).__name__}, not str: pass text (str, or UTF-8 bytes)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidInput(f"{where} has a character UTF-8 cannot encode at {e.start} ({text[e.start]!r}, a lone "
                           "surrogate): fix the text's decoding") from None
    return text


# Where to cut a long document, best first; each pattern's match end is the cut.
_BOUNDARIES = [re.compile(p) for p in (r"\n[ \t]*\n\s*", r"\n\s*", r"[.!?;][\"'’”)\]]*\s+", r"\s+")]


def split_document(text: str, max_chars: int) -> list[tuple[int, str]]:
    """(offset, piece) pairs that cover `text` in order, each at most `max_chars` long, cut at the best
    boundary in the second half of the allowed span (so pieces are never tiny)."""
    pieces, start = [], 0
    while len(text) - start > max_chars:
        limit = start + max_chars
        cut = limit  # a single 'word' longer than max_chars: cut inside it
        for pattern in _BOUNDARIES:
            ends = [m.end() for m in pattern.finditer(text, start + max_chars // 2, limit) if m.end() <= limit]
            if ends:
                cut = ends[-1]
                break
        pieces.append((start, text[start:cut]))
        start = cut
    pieces.append((start, text[start:]))
    return pieces


def plan(documents: Sequence[str], limits: Limits) -> list[list[Piece]]:
    """Requests (lists of pieces) within both limits. A piece without a word that may be an entity
    (`finer.words.may_hold_entity`: no number or number word) is not sent: the server's decoder
    would give all its words O, so it costs no round trip and no model run.

    The server pads every window of a request to the length bucket of its longest window, so pieces
    are packed shortest first: requests of short sentences stay short (answers are put back in
    document order by `assemble`)."""
    pieces = [Piece(d, offset, part) for d, text in enumerate(documents)
              for offset, part in split_document(text, limits.piece_chars) if may_hold_entity(part)]
    pieces.sort(key=lambda p: len(p.text))
    requests, current, windows = [], [], 0
    for piece in pieces:
        need = limits.windows(piece.text)
        if current and (len(current) == limits.max_documents or windows + need > limits.max_windows):
            requests.append(current)
            current, windows = [], 0
        current.append(piece)
        windows += need
    if current:
        requests.append(current)
    return requests


def is_too_big(error: InvalidInput) -> bool:
    """finer_preprocess's refusal of a request that needs more windows than it takes."""
    return has_code(str(error), ERROR_TOO_BIG)


def halve(request: list[Piece]) -> list[list[Piece]]:
    """Two smaller requests for one the server found too big; InvalidInput when there is nothing left to cut."""
    if len(request) > 1:
        return [request[: len(request) // 2], request[len(request) // 2:]]
    piece = request[0]
    if len(piece.text) < 2:
        raise InvalidInput(f"texts[{piece.document}] is refused even in pieces of one character: check the server's limits")
    parts = split_document(piece.text, (len(piece.text) + 1) // 2)
    return [[Piece(piece.document, piece.offset + offset, part)] for offset, part in parts]


def entities_of(piece: Piece, payload: bytes | str, document: str) -> list[Entity]:
    """A piece's entities from its ENTITIES element, with offsets into the whole document."""
    try:
        found = [Entity(e["text"], e["label"], e["start"] + piece.offset, e["end"] + piece.offset, float(e["score"]))
                 for e in json.loads(payload)]
    except (ValueError, TypeError, KeyError) as e:
        raise ServerError(f"cannot read the server's ENTITIES ({type(e).__name__}: {e}): "
                          "is the model a finer ensemble of the same version as this client?") from None
    for e in found:
        if document[e.start:e.end] != e.text:
            raise ServerError(f"the server's entity {e.text!r} does not match the text at {e.start}:{e.end}: "
                              "the server and client disagree on offsets (update both)")
    return found


def assemble(documents: Sequence[str], answered: Sequence[tuple[list[Piece], Sequence]]) -> list[list[Entity]]:
    """Per document, the entities of all its pieces in text order."""
    out: list[list[Entity]] = [[] for _ in documents]
    for pieces, payloads in answered:
        if len(payloads) != len(pieces):
            raise ServerError(f"the server answered {len(payloads)} documents for {len(pieces)}: see its log")
        for piece, payload in zip(pieces, payloads):
            out[piece.document].extend(entities_of(piece, payload, documents[piece.document]))
    for entities in out:
        entities.sort(key=lambda e: e.start)
    return out
