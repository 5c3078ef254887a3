"""Keep Triton serving: find a dead step or a crashed server, say so, and restart it.

Triton itself never restarts a Python stub that died, and its ready endpoints keep answering 200
while every request fails with "Stub process ... is not healthy". Two signals say the server is
dead, neither of which waits behind client work:

- the pulse, every PULSE_S: tritonserver has exited, or one of the stub processes found at
  readiness is gone (a signal that is not an inference, so load cannot starve it);
- the canary, an inference through the whole ensemble every `interval_s` seconds: it fails when a
  step answers "not healthy" or an error, and it counts as failed when it gets no answer in
  `canary_timeout_s`, unless the front doors report work in flight that the server is still
  finishing (`busy`): a busy server is slow, not dead. The front doors' admission keeps the queue
  ahead of the canary to about a second of work.

At the pulse's finding, the first fatal canary, or `failures_to_restart` failed canaries in a row,
it marks the server unready (the front doors then answer readiness with 503), logs why, stops what
is left of Triton, removes its shared-memory regions, and starts it again after a backoff that
doubles (1 s up to 30 s) while restarts keep failing or follow each other within STABLE_S.

Without a TritonServer to restart (the front door in front of a Triton container, `python -m
server.front`), it only watches: unready while the canary fails, ready again once it passes, and
the container's orchestrator restarts Triton (its liveness probe is this readiness).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

from server.triton import ENSEMBLE, LaunchError, TritonServer, http_call, wait_until

log = logging.getLogger("finer.server")

CANARY_TEXT = "The 7.00% Senior Notes due 2030 bear interest semi-annually."
# Problems Triton never recovers from on its own: restart at the first such canary, not the second.
FATAL = ("tritonserver exited", "is not healthy", "died")
BACKOFF_S = (1.0, 30.0)  # first and longest pause before a restart
STABLE_S = 60.0  # a server that stayed healthy this long starts again from the shortest backoff
PULSE_S = 0.25  # how often the processes are looked at: a dead step is unready within about this
STUB_GRACE_S = 0.25  # after a stub is seen dead: time for a dying tritonserver to be reaped first
BUSY_S = 30.0  # a canary without an answer is forgiven while the server answered a request this recently


class Supervisor:
    def __init__(self, triton: TritonServer | None, interval_s: float = 2.0, failures_to_restart: int = 2,
                 canary_timeout_s: float = 10.0, start_timeout_s: float = 180.0, triton_http: str | None = None,
                 busy: Callable[[float], bool] = lambda within_s: False):
        """`triton`: the server to restart; None with `triton_http` (its HTTP endpoint) to watch only.
        `busy(within_s)`: the front doors have work in flight and answered some within `within_s`."""
        self.triton = triton
        self.triton_http = triton_http or triton.http_url
        self.interval_s, self.failures_to_restart = interval_s, failures_to_restart
        self.canary_timeout_s, self.start_timeout_s = canary_timeout_s, start_timeout_s
        self.busy = busy
        self.ready = False
        self.reason = "starting"
        self.restarts = 0
        self.forgiven = 0  # canaries without an answer while the server was busy
        self._stopping = threading.Event()
        self._wake = threading.Event()  # the pulse found a dead process, or stop()
        self._thread: threading.Thread | None = None
        self._pulse: threading.Thread | None = None
        self._restarting = False

    def health(self) -> tuple[bool, str]:
        return self.ready, self.reason

    def start(self, ready: bool = True) -> None:
        """Watch a server that is ready now (or, watching only, one that may not be up yet)."""
        self.ready, self.reason = ready, "" if ready else "waiting for Triton"
        self._thread = threading.Thread(target=self._watch, name="finer-supervisor", daemon=True)
        self._thread.start()
        if self.triton is not None:
            self._pulse = threading.Thread(target=self._beat, name="finer-pulse", daemon=True)
            self._pulse.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self.ready, self.reason = False, "stopping"

    def join(self, timeout: float = 30.0) -> None:
        for thread in (self._thread, self._pulse):
            if thread is not None:
                thread.join(timeout)

    def dead(self) -> str | None:
        """tritonserver exited or a stub died: what the pulse looks for. A killed process group takes
        the stubs and tritonserver at once, and a stub may be seen gone before tritonserver is reaped:
        a dead stub is named only once tritonserver has stayed up a moment longer."""
        process = self.triton.process
        if process is None or process.poll() is not None:
            return f"tritonserver exited (code {None if process is None else process.returncode})"
        stub = self.triton.dead_stub()
        if stub and wait_until(lambda: process.poll() is not None, STUB_GRACE_S, 0.02) is not None:
            return f"tritonserver exited (code {process.returncode})"
        return stub

    def _beat(self) -> None:
        while not self._stopping.wait(PULSE_S):
            if self._restarting or not self.ready:
                continue
            found = self.dead()
            if found and not self._restarting:
                self.ready, self.reason = False, found
                self._wake.set()

    def problem(self) -> str | None:
        """Why the ensemble cannot serve now, or None."""
        if self.triton is not None:
            found = self.dead()
            if found:
                return found
        body = json.dumps({"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": [CANARY_TEXT]}]})
        try:
            status, answer = http_call(self.triton_http, f"/v2/models/{ENSEMBLE}/infer", body.encode(),
                                       timeout=self.canary_timeout_s)
        except OSError as e:
            if isinstance(e, TimeoutError) and self.busy(BUSY_S):
                self.forgiven += 1
                return None
            return f"the canary request got no answer ({e})"
        if status == 200:
            return None
        detail = answer.decode(errors="replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except ValueError:
            pass
        return f"the canary request failed ({status}: {detail[:200]})"

    def _watch(self) -> None:
        failures, healthy_since, backoff = 0, time.monotonic(), BACKOFF_S[0]
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stopping.is_set():
                return
            problem = self.problem()
            if problem is None:
                failures = 0
                if self.triton is None and not self.ready:
                    self.ready, self.reason = True, ""
                    log.warning("Triton answers the canary: ready")
                continue
            failures += 1
            if failures < self.failures_to_restart and not any(f in problem for f in FATAL):
                continue
            if self.triton is None:
                if self.ready:
                    log.warning("unhealthy: %s", problem)
                self.ready, self.reason = False, problem
                continue
            if time.monotonic() - healthy_since > STABLE_S:
                backoff = BACKOFF_S[0]
            self.ready, self.reason = False, problem
            log.warning("unhealthy: %s; restarting Triton", problem)
            self._restarting = True
            try:
                backoff = self._restart(backoff)
            finally:
                self._restarting = False
            failures, healthy_since = 0, time.monotonic()

    def _restart(self, backoff: float) -> float:
        """Stop, clean, wait `backoff`, start; again with a doubled backoff until Triton is ready.
        Returns the backoff for the next restart."""
        while not self._stopping.is_set():
            removed = self.triton.stop(timeout=1.0)  # it is broken: no graceful unload of a dead stub
            if removed:
                log.info("removed %d shared-memory regions of the stopped server", removed)
            if self._stopping.wait(backoff):
                return backoff
            backoff = min(backoff * 2, BACKOFF_S[1])
            self.triton.keep_log()
            try:
                self.triton.start()
                seconds = self.triton.wait_ready(self.start_timeout_s)
            except LaunchError as e:
                log.error("restart failed: %s", str(e).splitlines()[0])
                continue
            if self._stopping.is_set():
                return backoff
            self.restarts += 1
            self.ready, self.reason = True, ""
            log.warning("Triton restarted and ready in %.1f s (restart %d)", seconds, self.restarts)
            return backoff
        return backoff
