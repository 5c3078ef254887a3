"""Thin client of the served `finer` ensemble: `FinerClient` (blocking) and `client.aio.AsyncFinerClient`.

Needs numpy and tritonclient only (`pip install ".[client]"`; `finer.windows` for the window count):
nothing here imports torch, transformers or `training`.
"""
from client.errors import FinerError, InvalidInput, ModelNotReady, RequestTimeout, ServerError, ServerUnreachable
from client.plan import Entity, Limits
from client.protocol import Health, Metadata
from client.sync import FinerClient

__all__ = ["FinerClient", "Entity", "Health", "Metadata", "Limits", "FinerError", "ServerUnreachable",
           "ModelNotReady", "InvalidInput", "RequestTimeout", "ServerError"]
