"""`FinerClient`: tag documents with the served `finer` ensemble over gRPC or HTTP (blocking).

    with FinerClient("127.0.0.1:8001") as client:
        for e in client.tag("The notes bear interest at 7.00% per annum."):
            print(e.label, e.text, e.start, e.end)

A list is split into requests within the server's limits (`client.plan`), sent `concurrency` at
a time from a thread pool, and answered in input order. gRPC shares one channel between threads;
tritonclient's HTTP client is gevent-based and bound to the thread that made it, so each pool
thread gets its own.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Sequence

from client import plan as planner
from client.errors import FinerError, InvalidInput, RequestTimeout, ServerUnreachable, translate
from client.plan import Entity, Limits, Piece
from client.protocol import ClientSettings, grpc_channel_args, Health, Metadata, config_json, entities_payloads, \
    LABELS_MODEL, label_list, published, metadata_from, step_names, request_inputs


class FinerClient(ClientSettings):
    def __init__(self, url: str | None = None, protocol: str = "grpc", model: str = "finer", model_version: str = "",
                 timeout: float = 30.0, retries: int = 3, concurrency: int = 4, on_overload=None):
        """`url` is host:port (default 127.0.0.1:8001 for gRPC, :8000 for HTTP). `timeout` bounds each
        call; `retries` re-sends (with exponential backoff) when the server cannot be reached. A request
        the server refuses for load (`[overloaded]`) is sent again after the server's hint, with jitter,
        until the call's deadline (`on_overload(error)` hears of each refusal). Nothing is sent until
        the first call; the server's limits are read then, from the model config."""
        super().__init__(url, protocol, model, model_version, timeout, retries, concurrency, on_overload)
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    # --- connections ---------------------------------------------------------------------------
    def _client(self):
        if self._closed:
            raise InvalidInput("this FinerClient is closed: make a new one")
        shared = self.protocol == "grpc"
        client = self._clients[0] if shared and self._clients else getattr(self._local, "client", None)
        if client is None:
            with self._lock:
                if shared and self._clients:
                    return self._clients[0]
                if shared:
                    client = self._module.InferenceServerClient(self.url, channel_args=grpc_channel_args())
                else:
                    client = self._module.InferenceServerClient(
                        self.url, connection_timeout=self.timeout, network_timeout=self.timeout)
                self._clients.append(client)
                self._local.client = client
        return client

    def close(self) -> None:
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:  # closing a connection that is already gone is not a user's problem
                pass

    def __enter__(self) -> "FinerClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _drop(self, client) -> None:
        """Forget a connection whose state is unknown (an exchange cut off by the deadline)."""
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)
        if getattr(self._local, "client", None) is client:
            self._local.client = None
        try:
            client.close()
        except Exception:  # it is being thrown away
            pass

    def _within(self, seconds: float, what):
        """`what(client, kwargs)` given at most `seconds`: gRPC takes a deadline per call; tritonclient's
        HTTP timeouts bound each socket read, so a reply that trickles in is cut off with gevent's."""
        client = self._client()
        if self.protocol == "grpc":
            return what(client, {"client_timeout": seconds})
        import gevent

        try:
            with gevent.Timeout(seconds, TimeoutError):
                return what(client, {})
        except TimeoutError:
            self._drop(client)
            raise

    def _call(self, what, retry: bool = True, deadline: float | None = None):
        """`what(client, kwargs)` with typed errors, all attempts within `deadline` (time.monotonic();
        default: the timeout from now); retried as `client.errors.retry_pause` says."""
        deadline = deadline or time.monotonic() + self.timeout
        tally = {"attempts": 0, "refusals": 0}
        while True:
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                return self._within(remaining, what)
            except Exception as e:
                error = translate(e, url=self.url, protocol=self.protocol, model=self.model, timeout=self.timeout,
                                  attempts=tally["attempts"] + 1)
                pause = self._pause_after(error, tally) if retry else None
                if pause is None or time.monotonic() + pause >= deadline:
                    raise error from e
                time.sleep(pause)

    def _config(self, deadline: float | None = None) -> dict:
        json_kw = {"as_json": True} if self.protocol == "grpc" else {}
        return config_json(self._call(lambda c, kw: c.get_model_config(self.model, self.model_version, **json_kw, **kw),
                                      deadline=deadline), self.protocol)

    def limits(self, deadline: float | None = None) -> Limits:
        """max_documents / max_windows of the served ensemble (read once, on first use)."""
        if self._limits is None:
            self._limits = Limits.from_config(self._config(deadline))
        return self._limits

    # --- public API ----------------------------------------------------------------------------
    def health(self) -> Health:
        """Live = the server answers; ready = the model takes requests. A server that is down or does not
        answer within the timeout is neither (no exception, no retries)."""
        try:
            live = self._call(lambda c, kw: c.is_server_live(**kw), retry=False)
            ready = live and self._call(lambda c, kw: c.is_model_ready(self.model, self.model_version, **kw), retry=False)
        except (ServerUnreachable, RequestTimeout):
            return Health(False, False)
        return Health(bool(live), bool(ready))

    def metadata(self) -> Metadata:
        """Model name and version, each ensemble step's served version, limits, labels, model card (see `Metadata`)."""
        json_kw = {"as_json": True} if self.protocol == "grpc" else {}
        config = self._config()
        meta = self._call(lambda c, kw: c.get_model_metadata(self.model, self.model_version, **json_kw, **kw))
        steps = {name: str((self._call(lambda c, kw: c.get_model_metadata(name, "", **json_kw, **kw)).get("versions")
                            or [""])[-1])
                 for name in step_names(config)}
        try:
            labels, card = published(self._call(lambda c, kw: c.infer(LABELS_MODEL, [], **kw)))
        except FinerError:  # a repository without finer_labels
            labels, card = None, ""
        return metadata_from(self.model, config, meta, steps, labels, card)

    def tag(self, texts: str | bytes | list, labels: str | Sequence[str] | None = None) -> list[Entity] | list[list[Entity]]:
        """Entities of one document (str, or UTF-8 bytes), or of each document of a list, in order.
        `labels` narrows them to scope names ('debt', 'all') or FiNER types, e.g. labels="debt".
        The whole call, all its requests and retries, ends within the client's timeout."""
        labels = label_list(labels)
        documents, single = planner.documents_of(texts)
        if not any(documents):  # nothing to tag (or an empty list): no call at all
            return [] if single else [[] for _ in documents]
        deadline = time.monotonic() + self.timeout
        requests = planner.plan(documents, self.limits(deadline))
        if len(requests) <= 1:
            answered = [self._send(r, labels, deadline) for r in requests]
        else:
            answered = self._send_all(requests, labels, deadline)
        found = planner.assemble(documents, [a for pairs in answered for a in pairs])
        return found[0] if single else found

    # --- requests ------------------------------------------------------------------------------
    def _send(self, request: list[Piece], labels: list[str] | None, deadline: float) -> list[tuple[list[Piece], list]]:
        """(pieces, ENTITIES elements) for one request; halved and re-sent if the server finds it too big."""
        outputs = [self._module.InferRequestedOutput("ENTITIES")]
        inputs = request_inputs(self._module, [p.text for p in request], labels)
        try:
            result = self._call(lambda c, kw: c.infer(self.model, inputs, model_version=self.model_version,
                                                      outputs=outputs, **kw), deadline=deadline)
        except InvalidInput as e:
            if not planner.is_too_big(e):
                raise
            return [pair for half in planner.halve(request) for pair in self._send(half, labels, deadline)]
        return [(request, entities_payloads(result))]

    def _send_all(self, requests: list[list[Piece]], labels: list[str] | None, deadline: float):
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="finer-client")
        futures = [self._pool.submit(self._send, r, labels, deadline) for r in requests]
        done, pending = wait(futures, timeout=max(0.0, deadline - time.monotonic()) + 1, return_when=FIRST_EXCEPTION)
        for f in futures:
            if f.done() and f.exception() is not None:
                for p in pending:
                    p.cancel()
                wait(pending)  # nothing keeps running on the caller's behalf after it got the error
                raise f.exception()
        return [f.result() for f in futures]
