"""Several servers used as one: each `tag()` call goes to the next replica in turn (round robin).

A replica that cannot be reached, answers 503 while it restarts, has no model loaded or lets a
call time out rests while the others take its calls: first for 1 s, doubling up to 30 s while it
keeps failing, and back in turn with its first answer. Inference changes nothing on a server, so
a call that failed is simply made again on the next replica. A call fails only when no replica
has answered for `patience_s` seconds (ServerUnreachable), or with what a working server said of
the documents themselves (InvalidInput, ServerError).

The calls in flight over all replicas adapt to what the servers take (`Pace`): halved when a server
refuses a request for load (`[overloaded]`), one more after as many answered calls in a row, up to
`calls_in_flight`.

    with Replicas(["10.0.0.5:8001", "10.0.0.6:8001"]) as replicas:
        entities = replicas.tag(["The notes bear 7.00% interest."])
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

from client.errors import ModelNotReady, RequestTimeout, ServerOverloaded, ServerUnreachable
from client.plan import Entity
from client.sync import FinerClient

REST_S = (1.0, 30.0)  # first and longest rest of a failing replica
# Worth another replica at once: the server is down, restarting, without the model, stuck, or full.
PASSING = (ServerUnreachable, ModelNotReady, RequestTimeout, ServerOverloaded)
CUT_EVERY_S = 1.0  # refusals within this long of a cut are one signal: halve once


class Pace:
    """Additive increase, multiplicative decrease of the calls in flight, between 1 and `most`."""

    def __init__(self, most: int):
        self.most = self.limit = max(1, most)
        self.in_use = self.streak = self.cuts = 0
        self._last_cut = float("-inf")
        self._turn = threading.Condition()

    def __enter__(self) -> "Pace":
        with self._turn:
            self._turn.wait_for(lambda: self.in_use < self.limit)
            self.in_use += 1
        return self

    def __exit__(self, *exc) -> None:
        with self._turn:
            self.in_use -= 1
            self._turn.notify_all()

    def overloaded(self, error: ServerOverloaded | None = None) -> None:
        with self._turn:
            now = time.monotonic()
            if now - self._last_cut >= CUT_EVERY_S:
                self.limit, self.streak, self._last_cut = max(1, self.limit // 2), 0, now
                self.cuts += 1

    def answered(self) -> None:
        with self._turn:
            self.streak += 1
            if self.streak >= self.limit and self.limit < self.most:
                self.limit, self.streak = self.limit + 1, 0
                self._turn.notify_all()


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
                 concurrency: int = 2, calls_in_flight: int = 4):
        """`timeout` bounds one call to one replica; `concurrency` is each client's requests in flight
        within one call; `calls_in_flight` the most `tag()` calls of the caller's threads at once."""
        if not urls:
            raise ValueError("give at least one server URL")
        self.pace = Pace(calls_in_flight)
        # One quick retry in the client itself: a replica that stays unreachable is this class's business.
        self.replicas = [Replica(url, FinerClient(url, protocol, timeout=timeout, retries=1, concurrency=concurrency,
                                                  on_overload=self.pace.overloaded))
                         for url in urls]
        self.patience_s = patience_s
        self._max_documents: int | None = None
        self._turn = 0
        self._lock = threading.Lock()

    def __enter__(self) -> "Replicas":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for r in self.replicas:
            r.client.close()

    def max_documents(self) -> int:
        """Documents one request may hold, as the first replica in turn that answers publishes it."""
        if self._max_documents is None:
            self._max_documents = self._first_answer(lambda client: client.limits()).max_documents
        return self._max_documents

    def tag(self, texts: list[str], labels=None) -> list[list[Entity]]:
        """The entities of each text, from the first replica in turn that answers."""
        found = self._first_answer(lambda client: client.tag(texts, labels=labels))
        self.pace.answered()
        return found

    def _first_answer(self, call):
        """`call(client)` on the next replica in turn, and on the next while one fails to answer."""
        waited_since = time.monotonic()
        while True:
            replica = self._next(waited_since)
            try:
                with self.pace:
                    found = call(replica.client)
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
                         + (f", resting ({r.last_error})" if r.resting(now) else "") for r in self.replicas) \
            + (f"; calls in flight cut {self.pace.cuts} times for load, now {self.pace.limit}" if self.pace.cuts else "")
