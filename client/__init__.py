"""Thin client of the served `finer` ensemble: `FinerClient` (blocking) and `client.aio.AsyncFinerClient`.

Needs numpy and tritonclient only (`pip install ".[client]"`; `finer.windows` for the window count):
nothing here imports torch or transformers. `client.batch` (a folder of filings over several servers)
also reads filings with the corpus builder's `filings.ixbrl` (lxml: `pip install ".[batch]"`).
"""
from client.errors import FinerError, InvalidInput, ModelNotReady, RequestTimeout, ServerError, ServerOverloaded, \
    ServerUnreachable
from client.plan import Entity, Limits
from client.protocol import Health, Metadata
from client.sync import FinerClient

__all__ = ["FinerClient", "Entity", "Health", "Metadata", "Limits", "FinerError", "ServerUnreachable",
           "ModelNotReady", "InvalidInput", "RequestTimeout", "ServerError", "ServerOverloaded"]
