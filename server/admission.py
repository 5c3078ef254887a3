"""Admission control: the front doors admit only the inference work the server can finish soon.

Without a bound, every request waits in Triton's queues however long they grow, a client's
deadline passes while its request is still queued, and the supervisor's canary waits behind all
of it. So both front doors share one `Admission`: a request is admitted while the work in flight
(admitted and not yet answered) stays within about `QUEUE_S` seconds of what the server has
measured itself doing, and refused at once otherwise with 429 / RESOURCE_EXHAUSTED and the code
`[overloaded]`, with a hint of when to retry.

Work is counted in bytes: a request costs its body's bytes plus REQUEST_BYTES for what every
request costs whatever its size (tokenising, three Python steps, the answer). Capacity is the
same unit per second, measured on the requests answered while the server was busy, so how bytes
turn into windows cancels out. Until it is measured (and never below it), `floor` bytes are
admitted (`server.service.admission_for`: two largest documents per model instance), so the model
is never idle for want of work.
"""
from __future__ import annotations

import math
import threading
import time

from finer.serving import ERROR_OVERLOADED, coded

QUEUE_S = 1.0  # seconds of measured work admitted beyond what is running
REQUEST_BYTES = 1024  # the fixed cost of one request, in body bytes (~ two windows of filing text)
MAX_REQUESTS = 48  # requests in flight at once, whatever their size (the gRPC door's threads)
MEASURE_S = 1.0  # busy seconds per capacity sample
SMOOTHING = 0.3  # weight of a new capacity sample


class Admission:
    def __init__(self, floor: int, queue_s: float = QUEUE_S, max_requests: int = MAX_REQUESTS,
                 request_bytes: int = REQUEST_BYTES):
        self.floor, self.queue_s, self.max_requests = floor, queue_s, max_requests
        self.request_bytes = request_bytes
        self._lock = threading.Lock()
        self.in_flight = 0  # requests admitted and not answered
        self.cost = 0  # their bytes
        self.capacity = 0.0  # bytes per busy second (0: not measured yet)
        self.admitted = self.refused = 0
        self.last_done = time.monotonic()
        self._busy_since: float | None = None
        self._sample_busy, self._sample_cost = 0.0, 0

    def cost_of(self, body_bytes: int) -> int:
        """What a request of `body_bytes` counts for: the ticket `admit` hands out and `done` takes back."""
        return int(body_bytes) + self.request_bytes

    def budget(self) -> int:
        return max(self.floor, int(self.capacity * self.queue_s))

    def admit(self, body_bytes: int) -> int | None:
        """A ticket (the request's cost) to hand back to `done`, or None: refuse it (see `refusal`)."""
        cost = self.cost_of(body_bytes)
        with self._lock:
            # An idle server takes any request (one over the budget alone is the size limit's business).
            if self.in_flight and (self.in_flight >= self.max_requests or self.cost + cost > self.budget()):
                self.refused += 1
                return None
            now = time.monotonic()
            if not self.in_flight:
                self._busy_since = now
            self.in_flight += 1
            self.cost += cost
            self.admitted += 1
            return cost

    def done(self, ticket: int, answered: bool = True) -> None:
        """The request ended; `answered`: Triton did its work (not a refusal, a timeout or a lost client)."""
        with self._lock:
            now = time.monotonic()
            self.in_flight -= 1
            self.cost -= ticket
            if answered:
                self.last_done = now
                self._sample_cost += ticket
            if self._busy_since is not None:
                self._sample_busy += now - self._busy_since
                self._busy_since = now if self.in_flight else None
            if self._sample_busy >= MEASURE_S:
                if self._sample_cost:  # busy time without an answer (a restart, lost clients) says nothing
                    rate = self._sample_cost / self._sample_busy
                    self.capacity = rate if not self.capacity else (1 - SMOOTHING) * self.capacity + SMOOTHING * rate
                self._sample_busy, self._sample_cost = 0.0, 0

    def refusal(self) -> tuple[str, int]:
        """The refusal's message, with about when the work in flight now will have drained, and its
        Retry-After header value (whole seconds, at least 1)."""
        with self._lock:
            rate = max(self.capacity, self.floor / self.queue_s)  # the floor is what it is trusted with
            wait, in_flight = min(30.0, max(0.1, self.cost / rate)), self.in_flight
        return (coded(ERROR_OVERLOADED, f"the server is at capacity ({in_flight} requests in flight): "
                                        f"retry after {wait:.1f} s"), max(1, math.ceil(wait)))

    def busy(self, within_s: float) -> bool:
        """Work is in flight and the server answered some of it within `within_s`: slow, not dead."""
        with self._lock:
            return self.in_flight > 0 and time.monotonic() - self.last_done < within_s

    def stats(self) -> dict:
        with self._lock:
            return {"in_flight": self.in_flight, "cost": self.cost, "budget": self.budget(),
                    "capacity_bytes_per_s": round(self.capacity), "admitted": self.admitted, "refused": self.refused}
