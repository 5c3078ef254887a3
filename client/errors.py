"""Typed errors of the finer client; each message says what to do next.

`translate` turns what tritonclient, gRPC, geventhttpclient or aiohttp raise into one of these, so
callers catch `FinerError` (or a subclass) whichever protocol they use.
"""
from __future__ import annotations

import asyncio
import random
import re

from finer.serving import ERROR_OVERLOADED, has_code


class FinerError(Exception):
    """Base of every error the client raises."""


class ServerUnreachable(FinerError):
    """No connection to the server (refused, reset, unavailable): the only error that is retried."""


class ModelNotReady(FinerError):
    """The server answers but the model is unknown or not loaded."""


class InvalidInput(FinerError):
    """The documents themselves are wrong (checked before sending, or refused by the server)."""


class ServerOverloaded(FinerError):
    """The server refused the request for load (`[overloaded]`); retried after its hint, with jitter,
    until the call's deadline."""

    def __init__(self, message: str, retry_after_s: float = 1.0):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RequestTimeout(FinerError):
    """No answer within the timeout. Not retried: the server may still be working on the request."""


class ServerError(FinerError):
    """The server failed on a valid request, or answered something the client cannot read."""


_UNREACHABLE = {"StatusCode.UNAVAILABLE", "503"}
_TIMEOUT = {"StatusCode.DEADLINE_EXCEEDED", "504"}
_NOT_FOUND = {"StatusCode.NOT_FOUND", "404"}
# 413 / RESOURCE_EXHAUSTED: the front door's body and message limits.
_INVALID = {"StatusCode.INVALID_ARGUMENT", "400", "413", "StatusCode.RESOURCE_EXHAUSTED"}
# Triton answers 400 / INVALID_ARGUMENT for these too; they are about the model, not the input.
_MODEL_MESSAGE = re.compile(r"unknown model|is not found|is not ready|unavailable model|no version is available")
_RETRY_AFTER = re.compile(r"retry after ([\d.]+) s")
OVERLOAD_ATTEMPTS = 20  # refusals for load one request takes before the caller gets ServerOverloaded
BACKOFF_S = 0.1  # first pause before retrying an unreachable server; doubled each time


def retry_hint_s(detail: str) -> float:
    """The seconds an `[overloaded]` refusal says to wait (1 s if it says nothing)."""
    found = _RETRY_AFTER.search(detail)
    return float(found.group(1)) if found else 1.0


def translate(error: BaseException, *, url: str, protocol: str, model: str, timeout: float,
              attempts: int = 1) -> FinerError:
    """The typed error for anything raised while talking to the server (`attempts` made so far)."""
    from tritonclient.utils import InferenceServerException

    if isinstance(error, FinerError):
        return error
    where = f"{protocol} {url}"
    tries = f"; {attempts} attempts" if attempts > 1 else ""
    if isinstance(error, InferenceServerException):
        status, detail = str(error.status()), error.message() or str(error)
        if status == "429" or has_code(detail, ERROR_OVERLOADED):
            return ServerOverloaded(f"{where} is at capacity: {detail}", retry_hint_s(detail))
        detail = re.sub(r"^\[[^\]]*\] ", "", detail)
        if status in _UNREACHABLE:
            return unreachable(where, detail + tries)
        if status in _TIMEOUT:
            return timed_out(where, timeout)
        if status in _NOT_FOUND or _MODEL_MESSAGE.search(detail):
            return ModelNotReady(
                f"model '{model}' is not available on {where} ({detail}): check --model / the model name, "
                "or wait until the server has loaded it (its log says why a model failed to load)"
            )
        if status in _INVALID:
            return InvalidInput(f"the server refused the documents: {detail}")
        return ServerError(f"{where} failed on the request ({status}: {detail}): see the server's log")
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)) or type(error).__name__ in ("Timeout", "ServerTimeoutError"):
        return timed_out(where, timeout)
    if isinstance(error, ConnectionError) or _is_connection_error(error):
        return unreachable(where, f"{type(error).__name__}: {error}".rstrip(": ") + tries)
    if isinstance(error, OSError):
        return unreachable(where, f"{type(error).__name__}: {error}" + tries)
    return ServerError(f"unexpected answer from {where} ({type(error).__name__}: {error}): see the server's log")


def retry_pause(error: FinerError, attempts: int, refusals: int, retries: int) -> float | None:
    """Seconds to wait before sending again, or None: give the caller `error`. `attempts`: failed
    connections so far, `refusals`: refusals for load so far (this one included)."""
    if isinstance(error, ServerOverloaded):
        # The server's hint with +-50% jitter, so refused clients do not come back all at once.
        return max(0.05, error.retry_after_s * random.uniform(0.5, 1.5)) if refusals < OVERLOAD_ATTEMPTS else None
    if isinstance(error, ServerUnreachable) and attempts <= retries:
        return BACKOFF_S * 2 ** (attempts - 1)
    return None


def unreachable(where: str, detail: str) -> ServerUnreachable:
    return ServerUnreachable(
        f"cannot reach Triton at {where} ({detail}): start it (`python -m server`) "
        "or check the URL and protocol (gRPC 8001, HTTP 8000 by default)"
    )


def timed_out(where: str, timeout: float) -> RequestTimeout:
    return RequestTimeout(
        f"no answer from {where} within {timeout:g} s: raise the timeout, or send fewer or shorter documents per call"
    )


def _is_connection_error(error: BaseException) -> bool:
    """aiohttp's and geventhttpclient's own 'connection lost' errors, without importing either."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"ClientConnectionError", "ServerDisconnectedError", "HTTPConnectionClosed",
                         "TransportError", "BadStatusLine", "RemoteDisconnected", "IncompleteRead"})
