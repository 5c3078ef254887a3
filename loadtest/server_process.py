"""`python -m server` as its own process on free ports, for the load tools (bench, soak, doc_cost).

The server runs as a user runs it: front doors, supervisor and Triton in processes of their own, so
the measuring client does not share a GIL with the front doors, and every server process can be
found and its resident memory read.
"""
from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil

from server.triton import STUB, free_port, wait_until

INSTANCE = re.compile(r"^[A-Za-z][\w-]*_\d+_\d+$")


class ServerExited(RuntimeError):
    """The server process stopped or never became ready; the message says where its log is."""


def processes(launcher: psutil.Process) -> dict[str, psutil.Process]:
    """The launcher (it runs the front doors), tritonserver, and its stubs by model instance name
    (e.g. finer_preprocess_0_0, finer_model_0_1)."""
    found = {"launcher": launcher}
    for child in launcher.children(recursive=True):
        try:
            cmdline = child.cmdline()
        except psutil.Error:
            continue
        if cmdline and cmdline[0].endswith("tritonserver"):
            found["tritonserver"] = child
        elif cmdline and cmdline[0].endswith(STUB):
            # argv: stub, model.py, shm region, sizes, parent pid, ..., instance name (<model>_<group>_<index>)
            names = [a for a in cmdline if INSTANCE.match(a)]
            found[names[-1] if names else f"stub {child.pid}"] = child
    return found


def rss_mb(procs: dict[str, psutil.Process]) -> dict[str, float]:
    out = {}
    for name, proc in procs.items():
        try:
            out[name] = proc.memory_info().rss / 2**20
        except psutil.Error:
            out[name] = float("nan")
    return out


class ServerProcess:
    """Start with `with ServerProcess(repository, log_file) as server:`; ready when the block starts."""

    def __init__(self, repository: str | Path, log_file: str | Path, timeout_s: float = 300.0):
        self.repository, self.log_file, self.timeout_s = Path(repository), Path(log_file), timeout_s
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.http_address = "127.0.0.1"
        self.launcher: subprocess.Popen | None = None
        self._output = None

    @property
    def http_url(self) -> str:
        return f"http://{self.http_address}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def output(self) -> Path:
        """What `python -m server` printed and logged (the supervisor's restarts among it)."""
        return self.log_file.with_suffix(".out")

    def start(self) -> "ServerProcess":
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._output = open(self.output, "w")
        self.launcher = subprocess.Popen(
            [sys.executable, "-m", "server", "--model-repository", str(self.repository),
             "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
             "--metrics-port", str(self.metrics_port), "--log-file", str(self.log_file),
             "--timeout", str(self.timeout_s)],
            stdout=self._output, stderr=subprocess.STDOUT)
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.launcher.poll() is not None:
                raise ServerExited(f"the server exited with code {self.launcher.returncode}; "
                                   f"see {self.output} and {self.log_file}")
            try:
                with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as answer:
                    return answer.status == 200
            except OSError:
                return False

        if wait_until(ready, self.timeout_s, 0.5) is None:
            raise ServerExited(f"the server was not ready within {self.timeout_s:.0f} s; see {self.log_file}")

    def triton_version(self) -> str:
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(f"{self.http_address}:{self.http_port}")
        try:
            return client.get_server_metadata().get("version", "?")
        finally:
            client.close()

    def processes(self) -> dict[str, psutil.Process]:
        return processes(psutil.Process(self.launcher.pid))

    def rss_mb(self) -> dict[str, float]:
        return rss_mb(self.processes())

    def stop(self) -> None:
        if self.launcher is not None and self.launcher.poll() is None:
            self.launcher.terminate()
            try:
                self.launcher.wait(60)
            except subprocess.TimeoutExpired:
                self.launcher.kill()
                self.launcher.wait(10)
        if self._output is not None:
            self._output.close()
            self._output = None

    def __enter__(self) -> "ServerProcess":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
