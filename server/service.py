"""`FinerServer`: Triton behind its front doors, under a supervisor. What `python -m server` runs.

    with FinerServer(repository, http_port=8000, grpc_port=8001) as server:  # returns once ready
        ...

Clients talk to the front doors on the public ports (`server.front_http`, `server.front_grpc`);
tritonserver listens on Unix sockets in a directory only this user can enter, which only they and
the supervisor use. The metrics port is Triton's own (read-only Prometheus text). The body limit
is the ensemble's `max_body_bytes` parameter, generated from `finer.serving.ServingSpec` into the
repository; the work the doors admit (`server.admission`) starts from its `max_text_bytes` and
finer_model's instance count, and grows to what the server measures itself doing.
"""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from finer.serving import ServingSpec
from server.admin import operator_key
from server.admission import REQUEST_BYTES, Admission
from server.front_grpc import GrpcFront
from server.front_http import HttpFront
from server.supervisor import Supervisor
from server.triton import DEFAULT_REPOSITORY, ENSEMBLE, LaunchError, TritonServer, check_port, free_port


def model_config(repository: Path, model: str):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse((repository / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def published(repository: Path, name: str) -> int:
    """One of the ensemble's published limits (a repository generated before it existed: the spec's)."""
    value = model_config(repository, ENSEMBLE).parameters.get(name)
    return int(value.string_value) if value is not None else getattr(ServingSpec(), name)


def max_body_bytes(repository: Path) -> int:
    return published(repository, "max_body_bytes")


def admission_for(repository: Path) -> Admission:
    """Until capacity is measured, and never below: a largest document running and one waiting per
    finer_model instance."""
    groups = model_config(repository, "finer_model").instance_group
    instances = sum(g.count or 1 for g in groups) or 1
    return Admission(floor=2 * instances * (published(repository, "max_text_bytes") + REQUEST_BYTES))


async def cancel_pending() -> None:
    """End the connection handlers still open (keep-alive clients), so the loop closes clean."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Fronts:
    """Both front doors on their public ports, in front of Triton's HTTP and gRPC endpoints."""

    def __init__(self, triton_http: str, triton_grpc: str, http: tuple[str, int], grpc: tuple[str, int], limit: int,
                 health, keys: tuple[str | None, str | None], admission: Admission):
        # One admission bound on the work of both doors.
        self.grpc = GrpcFront(triton_grpc, *grpc, limit, health, keys, admission)
        self.http = HttpFront(triton_http, *http, limit, health, keys, admission)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.grpc.start()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="finer-http-front", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.http.start(), self._loop).result(30)

    def stop(self) -> None:
        self.grpc.stop()
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self.http.stop(), self._loop).result(30)
            asyncio.run_coroutine_threadsafe(cancel_pending(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
            self._loop = None


class FinerServer:
    def __init__(self, repository: str | Path = DEFAULT_REPOSITORY, http_port: int = 8000, grpc_port: int = 8001,
                 metrics_port: int = 8002, *, http_address: str = "127.0.0.1", grpc_address: str = "127.0.0.1",
                 admin_key: str | None = None, canary_interval_s: float = 2.0, **triton):
        """The front doors on `http_address:http_port` and `grpc_address:grpc_port`; `triton`: the rest of
        `TritonServer`'s options (metrics_address, log_file, backend_dir, log_verbose). `admin_key` opens
        the operator APIs to requests that send it (default: $FINER_ADMIN_KEY; neither: they stay shut)."""
        # Its own HTTP and gRPC are private sockets: the port numbers only name them.
        self.triton = TritonServer(repository, free_port(), free_port(), metrics_port, private=True, **triton)
        self.admin_key = admin_key or operator_key()
        self.http_address, self.http_port = http_address, http_port
        self.grpc_address, self.grpc_port = grpc_address, grpc_port
        self.admission = admission_for(self.triton.repository)
        self.supervisor = Supervisor(self.triton, interval_s=canary_interval_s, busy=self.admission.busy)
        self.fronts: Fronts | None = None

    # --- what callers use ----------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"http://{self.http_address}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.grpc_address}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return self.triton.metrics_url

    @property
    def process(self):
        """The tritonserver process now serving (a new one after each restart)."""
        return self.triton.process

    @property
    def log_file(self) -> Path:
        return self.triton.log_file

    def model_version(self) -> Path:
        return self.triton.model_version()

    def log_tail(self, lines: int = 12) -> str:
        return self.triton.log_tail(lines)

    # --- life cycle ----------------------------------------------------------------------------
    def start(self) -> "FinerServer":
        self.triton.model_version()
        check_port(self.http_address, self.http_port, "--http-port")
        check_port(self.grpc_address, self.grpc_port, "--grpc-port")
        limit = max_body_bytes(self.triton.repository)
        self.triton.start()
        self.fronts = Fronts(self.triton.http_url, self.triton.grpc_url, (self.http_address, self.http_port),
                             (self.grpc_address, self.grpc_port), limit, self.supervisor.health,
                             (self.admin_key, self.triton.internal_key), self.admission)
        try:
            self.fronts.start()
        except OSError as e:
            self.stop()
            raise LaunchError(f"cannot start the front doors: {e}") from None
        return self

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Seconds until the ensemble was ready (then the supervisor watches it); LaunchError otherwise."""
        seconds = self.triton.wait_ready(timeout)
        self.supervisor.start()
        return seconds

    def stop(self) -> None:
        self.supervisor.stop()
        self.triton.stop()  # a restart in progress sees its server gone and gives up
        self.supervisor.join()
        self.triton.stop()
        fronts, self.fronts = self.fronts, None
        if fronts is not None:
            fronts.stop()
        self.triton.remove_sockets()

    def __enter__(self) -> "FinerServer":
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
