"""The HTTP front door: what reaches Triton's HTTP frontend, which 2.51 parses without limits.

Triton 2.51 has no body-size flag and its JSON parser recurses without bound (a 120 kB body of
nested arrays crashes it), so every request passes through here first:

- bodies over `max_body_bytes` are refused (413) from their Content-Length, before they are read;
- a body must arrive within BODY_TIMEOUT_S (a client that trickles it is cut off, 408);
- the JSON part of a body (all of it, or the first Inference-Header-Content-Length bytes of a
  binary-tensor request) must parse, nest at most MAX_JSON_DEPTH deep and name tensors in at most
  MAX_NAME_CHARS characters, else 400 with the reason; compressed bodies are refused (415), as
  they would hide the JSON from this check;
- readiness (`/v2/health/ready`, `/v2/models/.../ready`) is 503 while the supervisor finds a step
  dead or Triton restarting, and every other request then gets 503 at once.

The operator APIs (shared memory, repository, trace, logging) need the admin key (`server.admin`,
403 without it). Everything else is passed on unchanged.
"""
from __future__ import annotations

import asyncio
import json
import re
from typing import Callable

from aiohttp import ClientError, ClientPayloadError, ClientSession, ClientTimeout, TCPConnector, web

from finer.serving import ERROR_TOO_BIG, coded
from server.admin import ADMIN_HEADER, HTTP_PATHS, REFUSED, admitted

MAX_JSON_DEPTH = 12  # a request nests 4 deep ({"inputs": [{"data": [...]}]}); rows of a 2-D tensor add one
MAX_NAME_CHARS = 256
BODY_TIMEOUT_S = 30.0
REPLY_TIMEOUT_S = 300.0  # Triton's answer to one request (a full request on a busy CPU takes seconds)
READY_PATH = re.compile(r"^/v2/(health/ready|models/[^/]+(/versions/[^/]+)?/ready)$")
# Hop-by-hop headers, and those aiohttp sets itself.
DROPPED = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "expect",
           "proxy-connection", "te", "trailer"}
PASSED_BACK = {"content-type", "inference-header-content-length", "content-encoding"}


def json_error(status: int, message: str) -> web.Response:
    # Triton's own error shape: tritonclient reads "error".
    return web.json_response({"error": message}, status=status)


def json_depth(value) -> int:
    depth, level = 0, [(value, 1)]
    while level:
        item, d = level.pop()
        depth = max(depth, d)
        if isinstance(item, dict):
            level.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            level.extend((v, d + 1) for v in item)
    return depth


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
    if json_depth(document) > MAX_JSON_DEPTH:
        return 400, f"the JSON nests deeper than {MAX_JSON_DEPTH} levels"
    problem = long_name(document)
    return (400, problem) if problem else None


class HttpFront:
    """An aiohttp app on `address:port` in front of Triton's HTTP endpoint at `backend`."""

    def __init__(self, backend: str, address: str, port: int, max_body_bytes: int,
                 health: Callable[[], tuple[bool, str]], keys: tuple[str | None, str]):
        self.backend, self.address, self.port = backend.rstrip("/"), address, port
        self.max_body_bytes = max_body_bytes
        self.operator_key, self.internal_key = keys
        self.health = health  # () -> (ready, why not)
        self._session: ClientSession | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._session = ClientSession(connector=TCPConnector(limit=256),
                                      timeout=ClientTimeout(total=REPLY_TIMEOUT_S), auto_decompress=False)
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
        try:
            body = await asyncio.wait_for(request.read(), BODY_TIMEOUT_S)
        except web.HTTPRequestEntityTooLarge:
            return self.too_big("sent in chunks")
        except asyncio.TimeoutError:
            return json_error(408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s")
        except (ConnectionResetError, ClientPayloadError):  # the client went away mid-body: nobody to answer
            return json_error(400, "the connection closed before the body was complete")
        if body:
            problem = body_problem(body, request.headers)
            if problem:
                return json_error(*problem)
        return await self.forward(request, body, restricted)

    def too_big(self, size: str) -> web.Response:
        # Coded as finer_preprocess codes it, so the client halves the request as it does there.
        return json_error(413, coded(ERROR_TOO_BIG, f"the body ({size}) is over max_body_bytes {self.max_body_bytes}: "
                                                    "send fewer or shorter documents per request"))

    async def forward(self, request: web.Request, body: bytes, restricted: bool) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROPPED and k.lower() != ADMIN_HEADER}
        if restricted:
            headers[ADMIN_HEADER] = self.internal_key
        # aiohttp would ask for gzip itself, and Triton would compress for a client that never asked.
        headers.setdefault("Accept-Encoding", "identity")
        try:
            async with self._session.request(request.method, self.backend + request.rel_url.path_qs,
                                             headers=headers, data=body or None) as answer:
                payload = await answer.read()
                passed = {k: v for k, v in answer.headers.items() if k.lower() in PASSED_BACK}
                return web.Response(status=answer.status, body=payload, headers=passed)
        except asyncio.TimeoutError:
            return json_error(504, f"Triton did not answer within {REPLY_TIMEOUT_S:g} s")
        except ClientError as e:
            return json_error(503, f"Triton cannot be reached ({type(e).__name__}): it may be restarting, retry shortly")
