"""The HTTP front door: what reaches Triton's HTTP frontend, which 2.51 parses without limits.

Triton 2.51 has no body-size flag and its JSON parser recurses without bound (a 120 kB body of
nested arrays crashes it), so every request passes through here first:

- bodies over `max_body_bytes` are refused (413) from their Content-Length, before they are read;
- a body must arrive within BODY_TIMEOUT_S (a client that trickles it is cut off, 408);
- the JSON part of a body (all of it, or the first Inference-Header-Content-Length bytes of a
  binary-tensor request) must parse, nest at most MAX_JSON_DEPTH deep and name tensors in at most
  MAX_NAME_CHARS characters, else 400 with the reason; compressed bodies are refused (415), as
  they would hide the JSON from this check;
- a JSON string must be UTF-8 (a lone surrogate such as "\\ud800" is refused, 400 `[bad_text]`);
- readiness (`/v2/health/ready`, `/v2/models/.../ready`) is 503 while the supervisor finds a step
  dead or Triton restarting, and every other request then gets 503 at once;
- an inference request is admitted only within the work the server can finish soon
  (`server.admission`), else 429 `[overloaded]` with Retry-After, before its body is read.

The operator APIs (shared memory, repository, trace, logging) need the admin key (`server.admin`,
403 without it). Everything else is passed on unchanged.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Callable

from aiohttp import ClientError, ClientPayloadError, ClientSession, ClientTimeout, TCPConnector, UnixConnector, web

from finer.serving import ERROR_BAD_INPUT, ERROR_BAD_TEXT, ERROR_TOO_BIG, coded
from server.admin import ADMIN_HEADER, HTTP_PATHS, REFUSED, admitted
from server.admission import Admission
from server.triton import UNIX  # a backend "unix:/path/http.sock": Triton's HTTP endpoint on a Unix socket

MAX_JSON_DEPTH = 12  # a request nests 4 deep ({"inputs": [{"data": [...]}]}); rows of a 2-D tensor add one
MAX_NAME_CHARS = 256
BODY_TIMEOUT_S = 30.0
REPLY_TIMEOUT_S = 300.0  # Triton's answer to one request (a full request on a busy CPU takes seconds)
READY_PATH = re.compile(r"^/v2/(health/ready|models/[^/]+(/versions/[^/]+)?/ready)$")
INFER_PATH = re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/infer$")
SHM_REGISTER = re.compile(r"^/v2/(system|cuda)sharedmemory/region/[^/]+/register$")
# Hop-by-hop headers, and those aiohttp sets itself.
DROPPED = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "expect",
           "proxy-connection", "te", "trailer"}
PASSED_BACK = {"content-type", "inference-header-content-length", "content-encoding"}


def json_error(status: int, message: str) -> web.Response:
    # Triton's own error shape: tritonclient reads "error".
    return web.json_response({"error": message}, status=status)


def json_problem(value) -> str | None:
    """Why a parsed body must not reach Triton: too deep, or a string that is not UTF-8."""
    level = [(value, 1)]
    while level:
        item, d = level.pop()
        if d > MAX_JSON_DEPTH:
            return f"the JSON nests deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(item, dict):
            level.extend((v, d + 1) for v in item.values())
            level.extend((k, d + 1) for k in item)
        elif isinstance(item, list):
            level.extend((v, d + 1) for v in item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:  # json.loads keeps lone surrogates; Triton's parser fails on them (500)
                return coded(ERROR_BAD_TEXT, "a JSON string holds a lone surrogate escape (e.g. \\ud800): not UTF-8 text")
    return None


def long_name(document) -> str | None:
    if not isinstance(document, dict):
        return None
    for key in ("inputs", "outputs"):
        tensors = document.get(key)
        for tensor in tensors if isinstance(tensors, list) else []:
            name = tensor.get("name") if isinstance(tensor, dict) else None
            if isinstance(name, str) and len(name) > MAX_NAME_CHARS:
                return f"a tensor name in '{key}' is {len(name)} characters long (limit {MAX_NAME_CHARS})"
    return None


def body_problem(body: bytes, headers) -> tuple[int, str] | None:
    """(status, reason) if the body must not reach Triton, else None."""
    if headers.get("Content-Encoding", "identity").lower() != "identity":
        return 415, "compressed request bodies are not accepted: send the body uncompressed"
    header = headers.get("Inference-Header-Content-Length")
    if header is not None:
        if not header.isdigit() or int(header) > len(body):
            return 400, f"Inference-Header-Content-Length {header[:20]!r} does not fit a body of {len(body)} bytes"
        body = body[: int(header)]
    try:
        document = json.loads(body)
    except RecursionError:
        return 400, f"the JSON nests deeper than {MAX_JSON_DEPTH} levels"
    except ValueError as e:
        return 400, f"the body is not valid JSON ({str(e)[:120]})"
    problem = json_problem(document) or long_name(document)
    return (400, problem) if problem else None


def backend_session(backend: str) -> tuple[str, ClientSession]:
    """The base URL and the session that reach Triton's HTTP endpoint (host:port or unix:/path)."""
    if backend.startswith(UNIX):
        base, connector = "http://triton", UnixConnector(path=backend.removeprefix(UNIX), limit=256)
    else:
        base, connector = backend.rstrip("/"), TCPConnector(limit=256)
    return base, ClientSession(connector=connector, timeout=ClientTimeout(total=REPLY_TIMEOUT_S), auto_decompress=False)


class HttpFront:
    """An aiohttp app on `address:port` in front of Triton's HTTP endpoint at `backend`."""

    def __init__(self, backend: str, address: str, port: int, max_body_bytes: int,
                 health: Callable[[], tuple[bool, str]], keys: tuple[str | None, str | None], admission: Admission):
        """`keys`: the operator's, and the one Triton's restricted APIs demand (None: Triton has none,
        being reachable only from here)."""
        self.backend, self.address, self.port = backend, address, port
        self.max_body_bytes = max_body_bytes
        self.operator_key, self.internal_key = keys
        self.health = health  # () -> (ready, why not)
        self.admission = admission
        self._base = ""
        self._session: ClientSession | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._base, self._session = backend_session(self.backend)
        # A request line or header over aiohttp's limits is answered 400 by aiohttp; without this it
        # also logs a traceback per such request.
        logging.getLogger("aiohttp.server").addFilter(quiet_bad_requests)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.address, self.port, backlog=512).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        restricted = bool(HTTP_PATHS.match(request.path))
        if restricted and not admitted(request.headers.get(ADMIN_HEADER), self.operator_key):
            return json_error(403, REFUSED)
        ready, why = self.health()
        if not ready:
            if READY_PATH.match(request.path):
                return web.Response(status=503)
            if request.path != "/v2/health/live":
                return json_error(503, f"the server is not ready ({why}): retry shortly")
        if (request.content_length or 0) > self.max_body_bytes:
            return self.too_big(f"{request.content_length} bytes")
        ticket = None
        if request.method == "POST" and INFER_PATH.match(request.path):
            ticket = self.admission.admit(request.content_length or 0)
            if ticket is None:
                message, retry_after = self.admission.refusal()
                return web.json_response({"error": message}, status=429, headers={"Retry-After": str(retry_after)})
        answered = False
        try:
            response, answered = await self.checked(request, restricted)
            return response
        finally:
            if ticket is not None:
                self.admission.done(ticket, answered)

    async def checked(self, request: web.Request, restricted: bool) -> tuple[web.StreamResponse, bool]:
        """The body read and checked, then Triton's answer; and whether Triton did the work."""
        try:
            body = await asyncio.wait_for(request.read(), BODY_TIMEOUT_S)
        except web.HTTPRequestEntityTooLarge:
            return self.too_big("sent in chunks"), False
        except asyncio.TimeoutError:
            return json_error(408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s"), False
        except (ConnectionResetError, ClientPayloadError):  # the client went away mid-body: nobody to answer
            return json_error(400, "the connection closed before the body was complete"), False
        if body:
            problem = body_problem(body, request.headers)
            if problem:
                return json_error(*problem), False
        return await self.forward(request, body, restricted)

    def too_big(self, size: str) -> web.Response:
        # Coded as finer_preprocess codes it, so the client halves the request as it does there.
        return json_error(413, coded(ERROR_TOO_BIG, f"the body ({size}) is over max_body_bytes {self.max_body_bytes}: "
                                                    "send fewer or shorter documents per request"))

    async def forward(self, request: web.Request, body: bytes, restricted: bool) -> tuple[web.Response, bool]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROPPED and k.lower() != ADMIN_HEADER}
        if restricted and self.internal_key:
            headers[ADMIN_HEADER] = self.internal_key
        # aiohttp would ask for gzip itself, and Triton would compress for a client that never asked.
        headers.setdefault("Accept-Encoding", "identity")
        try:
            async with self._session.request(request.method, self._base + request.rel_url.path_qs,
                                             headers=headers, data=body or None) as answer:
                payload = await answer.read()
                if answer.status == 500 and SHM_REGISTER.match(request.path):
                    # Triton answers a region it cannot map (no such key, past its end) as its own failure.
                    return json_error(400, coded(ERROR_BAD_INPUT, "the shared-memory region cannot be registered: "
                                                 + error_text(payload))), True
                passed = {k: v for k, v in answer.headers.items() if k.lower() in PASSED_BACK}
                return web.Response(status=answer.status, body=payload, headers=passed), True
        except asyncio.TimeoutError:
            return json_error(504, f"Triton did not answer within {REPLY_TIMEOUT_S:g} s"), False
        except ClientError as e:
            return json_error(503, f"Triton cannot be reached ({type(e).__name__}): it may be restarting, retry shortly"), False


def error_text(payload: bytes) -> str:
    try:
        return str(json.loads(payload).get("error", ""))[:300]
    except (ValueError, AttributeError):
        return payload[:300].decode(errors="replace")


def quiet_bad_requests(record: logging.LogRecord) -> bool:
    """aiohttp's log of a malformed request (line too long, bad header): one line, no traceback."""
    error = record.exc_info[1] if record.exc_info else None
    if type(error).__name__ in ("BadHttpMessage", "LineTooLong", "BadStatusLine", "InvalidHeader", "BadHttpMethod"):
        record.msg = "refused a malformed request: " + " ".join(str(error).split())[:200]
        record.args, record.exc_info, record.exc_text = (), None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"  # the client's mistake, answered 400
    return True
