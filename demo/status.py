"""The "Server status" tab: live/ready, the served model's version, labels and model card, as readable text.

A server that cannot be reached is a message saying what to do, not a traceback.
"""
from __future__ import annotations

from client import FinerClient, FinerError
from finer.labels import types_of


def status_markdown(client: FinerClient) -> tuple[str, list[list]]:
    """(Markdown for the tab, one row per entity type served) of the server `client` points at."""
    where = f"{client.protocol} `{client.url}`"
    live, ready = client.health()
    if not live:
        return (f"### Cannot reach the server\nNothing answers at {where}. Start it with `make serve` "
                "(or `python -m server`), or start this app with the right `--url` and `--protocol` "
                "(gRPC 8001, HTTP 8000 by default).", [])
    if not ready:
        return (f"### The server is up, the model is not ready\n{where} answers, but model `{client.model}` "
                "does not take requests yet: it is loading, or it failed to load (the server's log says why).", [])
    try:
        meta = client.metadata()
    except FinerError as e:
        return f"### The server is ready, its metadata is not\n{e}", []
    steps = ", ".join(f"{name} {version}" for name, version in meta.steps.items())
    rows = label_rows(meta.labels or [])
    labels = (f"{len(rows)} entity types ({len(meta.labels)} tags)" if meta.labels
              else "not published by this repository")
    return ("\n".join([
        f"### Ready: {where}",
        "| server | live and ready |", "|---|---|",
        f"| model | `{meta.model}` version {meta.version} |",
        f"| served versions | {steps} |",
        f"| limits | {meta.max_documents} documents and {meta.max_windows} windows per request |",
        f"| labels | {labels} |",
        "", meta.model_card or "*The served version has no model card (exported before cards were written).*",
    ]), rows)


def label_rows(tags: list[str]) -> list[list]:
    """One row per entity type the tags name, in the model's order ('B-X', 'I-X' -> ['X'])."""
    return [[kind] for kind in types_of(tags)]
