"""Keep Triton serving: find a dead step or a crashed server, say so, and restart it.

Triton itself never restarts a Python stub that died, and its ready endpoints keep answering 200
while every request fails with "Stub process ... is not healthy". So the supervisor sends a canary
inference through the whole ensemble every `interval_s` seconds. After `failures_to_restart`
failed canaries in a row, or at once when tritonserver has exited or a stub is "not healthy", it marks the server unready (the
front doors then answer readiness with 503), logs why, stops what is left of Triton, removes its
shared-memory regions, and starts it again after a backoff that doubles (1 s up to 30 s) while
restarts keep failing or follow each other within STABLE_S.

Without a TritonServer to restart (the front door in front of a Triton container, `python -m
server.front`), it only watches: unready while the canary fails, ready again once it passes, and
the container's orchestrator restarts Triton (its liveness probe is this readiness).
"""
from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request

from server.triton import ENSEMBLE, LaunchError, TritonServer

log = logging.getLogger("finer.server")

CANARY_TEXT = "The 7.00% Senior Notes due 2030 bear interest semi-annually."
# Problems Triton never recovers from on its own: restart at the first such canary, not the second.
FATAL = ("tritonserver exited", "is not healthy")
BACKOFF_S = (1.0, 30.0)  # first and longest pause before a restart
STABLE_S = 60.0  # a server that stayed healthy this long starts again from the shortest backoff


class Supervisor:
    def __init__(self, triton: TritonServer | None, interval_s: float = 2.0, failures_to_restart: int = 2,
                 canary_timeout_s: float = 10.0, start_timeout_s: float = 180.0, triton_http: str | None = None):
        """`triton`: the server to restart; None with `triton_http` (its HTTP URL) to watch only."""
        self.triton = triton
        self.triton_http = triton_http or triton.http_url
        self.interval_s, self.failures_to_restart = interval_s, failures_to_restart
        self.canary_timeout_s, self.start_timeout_s = canary_timeout_s, start_timeout_s
        self.ready = False
        self.reason = "starting"
        self.restarts = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def health(self) -> tuple[bool, str]:
        return self.ready, self.reason

    def start(self, ready: bool = True) -> None:
        """Watch a server that is ready now (or, watching only, one that may not be up yet)."""
        self.ready, self.reason = ready, "" if ready else "waiting for Triton"
        self._thread = threading.Thread(target=self._watch, name="finer-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.ready, self.reason = False, "stopping"

    def join(self, timeout: float = 30.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def problem(self) -> str | None:
        """Why the ensemble cannot serve now, or None."""
        process = self.triton.process if self.triton is not None else None
        if self.triton is not None and (process is None or process.poll() is not None):
            return f"tritonserver exited (code {None if process is None else process.returncode})"
        body = json.dumps({"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": [CANARY_TEXT]}]})
        request = urllib.request.Request(f"{self.triton_http}/v2/models/{ENSEMBLE}/infer", body.encode(),
                                         {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.canary_timeout_s) as answer:
                answer.read()
                return None
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except ValueError:
                pass
            return f"the canary request failed ({e.code}: {detail[:200]})"
        except (urllib.error.URLError, OSError) as e:
            return f"the canary request got no answer ({getattr(e, 'reason', e)})"

    def _watch(self) -> None:
        failures, healthy_since, backoff = 0, time.monotonic(), BACKOFF_S[0]
        while not self._stopping.wait(self.interval_s):
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
            backoff = self._restart(backoff)
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
