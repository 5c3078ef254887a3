"""`AsyncFinerClient`: the same surface as `FinerClient`, with async methods on tritonclient's aio clients.

    async with AsyncFinerClient("127.0.0.1:8001") as client:
        docs = await client.tag(["Notes bear 7.00% interest.", "The spread is 1.75%."])

Requests of one call run concurrently (asyncio.gather), at most `concurrency` at a time.
"""
from __future__ import annotations

import asyncio
from typing import Sequence

from client import plan as planner
from client.errors import FinerError, InvalidInput, RequestTimeout, ServerUnreachable, timed_out, translate
from client.plan import Entity, Limits, Piece
from client.protocol import ClientSettings, grpc_channel_args, Health, Metadata, config_json, entities_payloads, \
    LABELS_MODEL, label_list, published, metadata_from, step_names, request_inputs


class AsyncFinerClient(ClientSettings):
    _aio = True

    def __init__(self, url: str | None = None, protocol: str = "grpc", model: str = "finer", model_version: str = "",
                 timeout: float = 30.0, retries: int = 3, concurrency: int = 4, on_overload=None):
        """As `FinerClient`; make it inside the event loop that uses it (aiohttp/grpc.aio bind to it)."""
        super().__init__(url, protocol, model, model_version, timeout, retries, concurrency, on_overload)
        self._client = None
        self._semaphore = asyncio.Semaphore(concurrency)

    def _get_client(self):
        if self._closed:
            raise InvalidInput("this AsyncFinerClient is closed: make a new one")
        if self._client is None:
            if self.protocol == "grpc":
                self._client = self._module.InferenceServerClient(self.url, channel_args=grpc_channel_args())
            else:
                self._client = self._module.InferenceServerClient(self.url, conn_timeout=self.timeout)
        return self._client

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.close()
            except Exception:  # closing a connection that is already gone is not a user's problem
                pass

    async def __aenter__(self) -> "AsyncFinerClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _kwargs(self, as_json: bool = False) -> dict:
        if self.protocol != "grpc":
            return {}
        return {"client_timeout": self.timeout, **({"as_json": True} if as_json else {})}

    async def _call(self, what, retry: bool = True):
        """`await what(client)` with typed errors; retried as `client.errors.retry_pause` says (`tag`
        bounds the whole call by the timeout)."""
        tally = {"attempts": 0, "refusals": 0}
        while True:
            try:
                # grpc.aio and aiohttp enforce the timeout too; this bounds the whole exchange.
                return await asyncio.wait_for(what(self._get_client()), self.timeout + 1)
            except Exception as e:
                error = translate(e, url=self.url, protocol=self.protocol, model=self.model, timeout=self.timeout,
                                  attempts=tally["attempts"] + 1)
                pause = self._pause_after(error, tally) if retry else None
                if pause is None:
                    raise error from e
                await asyncio.sleep(pause)

    async def _config(self) -> dict:
        answer = await self._call(lambda c: c.get_model_config(self.model, self.model_version, **self._kwargs(True)))
        return config_json(answer, self.protocol)

    async def limits(self) -> Limits:
        if self._limits is None:
            self._limits = Limits.from_config(await self._config())
        return self._limits

    async def health(self) -> Health:
        try:
            live = await self._call(lambda c: c.is_server_live(**self._kwargs()), retry=False)
            ready = live and await self._call(
                lambda c: c.is_model_ready(self.model, self.model_version, **self._kwargs()), retry=False)
        except (ServerUnreachable, RequestTimeout):
            return Health(False, False)
        return Health(bool(live), bool(ready))

    async def metadata(self) -> Metadata:
        config = await self._config()
        meta = await self._call(lambda c: c.get_model_metadata(self.model, self.model_version, **self._kwargs(True)))
        steps = {}
        for name in step_names(config):
            step = await self._call(lambda c: c.get_model_metadata(name, "", **self._kwargs(True)))
            steps[name] = str((step.get("versions") or [""])[-1])
        try:
            labels, card = published(await self._call(lambda c: c.infer(LABELS_MODEL, [])))
        except FinerError:  # a repository without finer_labels
            labels, card = None, ""
        return metadata_from(self.model, config, meta, steps, labels, card)

    async def tag(self, texts: str | bytes | list, labels: str | Sequence[str] | None = None) -> list[Entity] | list[list[Entity]]:
        """As `FinerClient.tag`: the whole call ends within the client's timeout."""
        labels = label_list(labels)
        documents, single = planner.documents_of(texts)
        if not any(documents):  # nothing to tag (or an empty list): no call at all
            return [] if single else [[] for _ in documents]
        try:
            found = await asyncio.wait_for(self._tag(documents, labels), self.timeout)
        except asyncio.TimeoutError:
            raise timed_out(f"{self.protocol} {self.url}", self.timeout) from None
        return found[0] if single else found

    async def _tag(self, documents: list[str], labels: list[str] | None) -> list[list[Entity]]:
        requests = planner.plan(documents, await self.limits())
        tasks = [asyncio.ensure_future(self._send(r, labels)) for r in requests]
        try:
            answered = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:  # nothing keeps running on the caller's behalf after it got the error
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return planner.assemble(documents, [pair for pairs in answered for pair in pairs])

    async def _send(self, request: list[Piece], labels: list[str] | None = None):
        outputs = [self._module.InferRequestedOutput("ENTITIES")]
        try:
            async with self._semaphore:
                result = await self._call(lambda c: c.infer(
                    self.model, request_inputs(self._module, [p.text for p in request], labels),
                    model_version=self.model_version, outputs=outputs, **self._kwargs()))
        except InvalidInput as e:
            if not planner.is_too_big(e):
                raise
            return [pair for half in planner.halve(request) for pair in await self._send(half, labels)]
        return [(request, entities_payloads(result))]
