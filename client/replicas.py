"""Several servers used as one: each `tag()` call goes to the next replica in turn (round robin).

A replica that cannot be reached, answers 503 while it restarts, has no model loaded or lets a
call time out rests while the others take its calls: first for 1 s, doubling up to 30 s while it
keeps failing, and back in turn with its first answer. Inference changes nothing on a server, so
a call that failed is simply made again on the next replica. A call fails only when no replica
has answered for `patience_s` seconds (ServerUnreachable), or with what a working server said of
the documents themselves (InvalidInput, ServerError).

    with Replicas(["10.0.0.5:8001", "10.0.0.6:8001"]) as replicas:
        entities = replicas.tag(["The notes bear 7.00% interest."])
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

from client.errors import ModelNotReady, RequestTimeout, ServerUnreachable
from client.plan import Entity
from client.sync import FinerClient

REST_S = (1.0, 30.0)  # first and longest rest of a failing replica
# Worth another replica at once: the server is down, restarting, without the model, or stuck.
PASSING = (ServerUnreachable, ModelNotReady, RequestTimeout)


@dataclass
class Replica:
    url: str
    client: FinerClient
    rest_until: float = 0.0  # time.monotonic() before which it gets no call
    rest_s: float = 0.0  # its last rest; 0 while it answers
    calls: int = 0  # answered calls
    failures: int = 0
    last_error: str = field(default="", repr=False)

    def resting(self, now: float) -> bool:
        return now < self.rest_until


class Replicas:
    def __init__(self, urls: Sequence[str], protocol: str = "grpc", timeout: float = 60.0, patience_s: float = 120.0,
                 concurrency: int = 2):
        """`timeout` bounds one call to one replica; `concurrency` is each client's requests in flight
        within one call (the caller's threads add to it)."""
        if not urls:
            raise ValueError("give at least one server URL")
        # One quick retry in the client itself: a replica that stays unreachable is this class's business.
        self.replicas = [Replica(url, FinerClient(url, protocol, timeout=timeout, retries=1, concurrency=concurrency))
                         for url in urls]
        self.patience_s = patience_s
        self._turn = 0
        self._lock = threading.Lock()

    def __enter__(self) -> "Replicas":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for r in self.replicas:
            r.client.close()

    def tag(self, texts: list[str], labels=None) -> list[list[Entity]]:
        """The entities of each text, from the first replica in turn that answers."""
        waited_since = time.monotonic()
        while True:
            replica = self._next(waited_since)
            try:
                found = replica.client.tag(texts, labels=labels)
            except PASSING as e:
                self._rest(replica, e)
                continue
            with self._lock:
                replica.calls += 1
                replica.rest_s = 0.0
            return found

    def _next(self, waited_since: float) -> Replica:
        """The next replica not resting, after sleeping until one is back; ServerUnreachable past patience."""
        while True:
            with self._lock:
                now = time.monotonic()
                for _ in self.replicas:
                    replica = self.replicas[self._turn % len(self.replicas)]
                    self._turn += 1
                    if not replica.resting(now):
                        return replica
                wake = min(r.rest_until for r in self.replicas)
            if wake - waited_since > self.patience_s:
                raise ServerUnreachable(f"no replica answered for {self.patience_s:g} s ({self.status()})")
            time.sleep(max(0.0, wake - now))

    def _rest(self, replica: Replica, error: Exception) -> None:
        with self._lock:
            replica.failures += 1
            replica.last_error = " ".join(str(error).split())[:300]
            replica.rest_s = min(max(replica.rest_s * 2, REST_S[0]), REST_S[1])
            replica.rest_until = time.monotonic() + replica.rest_s

    def status(self) -> str:
        """One line: each replica's answered calls and failures, and the last error of those resting."""
        now = time.monotonic()
        return "; ".join(f"{r.url}: {r.calls} calls, {r.failures} failed"
                         + (f", resting ({r.last_error})" if r.resting(now) else "") for r in self.replicas)
