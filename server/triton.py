"""Run the real Triton Inference Server process from the `nvidia-pytriton` wheel on a model repository.

The wheel holds Triton 2.51 (the same release as the `nvcr.io/nvidia/tritonserver:24.10-py3`
container) with its Python backend but no ONNX Runtime backend. `TritonServer` builds a backend
directory that holds the Python backend (with the stub for this interpreter) and
`server/backends/onnxruntime/model.py`, a Python-based backend that serves `backend: "onnxruntime"`
models with onnxruntime's Python API, then starts tritonserver on loopback.

    with TritonServer(repository, http_port=8000) as server:   # returns once `finer` is ready
        ...

This is the bare process; `server.service.FinerServer` puts the front doors and the supervisor
around it, and is what `python -m server` runs. There it is *private*: its HTTP and gRPC endpoints
are Unix sockets in a directory only the launching user can enter (mode 0700), so no other local
user reaches Triton except through the front doors, and nothing secret is on its command line.
Bare (tests, tools) it listens on loopback ports, and its shared-memory, repository, trace and
logging APIs answer only requests that carry this launch's internal key (`server.admin`). The
Python backend's shared-memory regions carry a prefix of this server's own, so a crashed server's
are found.
"""
from __future__ import annotations

import atexit
import ctypes
import http.client
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from finer import artifacts
from server.admin import ADMIN_HEADER, RESTRICTED

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REPOSITORY = PROJECT_ROOT / "model_repository"
CACHE = PROJECT_ROOT / ".cache" / "triton"
ENSEMBLE = "finer"

# Messages every CPU-only start prints: not reasons for a failure.
HARMLESS = re.compile(r"CudaDriverHelper|CUDA driver|CUDA memory pool|DCGM|NVML|pinned (system )?memory|GPU metrics")
SHM = Path("/dev/shm")
UNIX = "unix:"  # an endpoint "unix:/path": a Unix socket
STUB = "triton_python_backend_stub"
_LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


class LaunchError(RuntimeError):
    """A startup or shutdown problem, with a message meant for the user."""


def wheel_home() -> Path:
    try:
        import pytriton
    except ImportError:
        raise LaunchError("nvidia-pytriton is not installed: run `make setup`") from None
    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def build_backends(target: Path) -> Path:
    """`target/python` (the wheel's Python backend + this interpreter's stub) and `target/onnxruntime`."""
    home = wheel_home()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = home / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise LaunchError(f"the Triton wheel has no Python backend stub for Python {version} ({stub})")
    files = {
        target / "python" / "libtriton_python.so": home / "backends" / "python" / "libtriton_python.so",
        target / "python" / "triton_python_backend_utils.py": home / "backends" / "python" / "triton_python_backend_utils.py",
        target / "python" / "triton_python_backend_stub": stub,
        target / "onnxruntime" / "model.py": Path(__file__).resolve().parent / "backends" / "onnxruntime" / "model.py",
    }
    for dest, src in files.items():
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() and (dest.stat().st_mtime, dest.stat().st_size) == (src.stat().st_mtime, src.stat().st_size):
            continue
        # Copy then rename: a server already running from this folder keeps its mapped files intact.
        partial = dest.with_name(f".{dest.name}.{os.getpid()}")
        shutil.copy2(src, partial)
        os.replace(partial, dest)
    return target


def server_env() -> dict[str, str]:
    """The stub's embedded Python ignores PYTHONPATH: it finds packages through the `python3` first on PATH."""
    env = dict(os.environ)
    libs = Path(sysconfig.get_paths()["purelib"]) / "nvidia_pytriton.libs"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in [sysconfig.get_config_var("LIBDIR"), str(libs), env.get("LD_LIBRARY_PATH")] if p
    )
    return env


def check_port(address: str, port: int, flag: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As Triton binds: connections of a server that just stopped (TIME_WAIT) do not block the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError as e:
            raise LaunchError(f"{address}:{port} is not free ({e.strerror}): stop what uses it or pick another {flag}") from None


def failure_reason(log: str) -> str:
    """One line from Triton's log saying why it stopped: a model that failed to load, else the first error."""
    errors = [
        re.sub(r'^E\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "?', "", line).split("\\n")[0].rstrip('"').strip()
        for line in log.splitlines()
        if re.match(r"E\d{4} ", line) and not HARMLESS.search(line)
    ]
    loads = [e for e in errors if e.startswith("failed to load")]
    if loads or errors:
        return (loads or errors)[0]
    finals = [line for line in log.splitlines() if line.lower().startswith("error:") and not HARMLESS.search(line)]
    return finals[-1] if finals else "see the log"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("triton", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def http_call(endpoint: str, path: str, body: bytes | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    """(status, body) of a GET (or, with a body, a POST) to Triton's HTTP endpoint: http://host:port or
    unix:/path. OSError when it cannot be reached or does not answer in time."""
    if endpoint.startswith(UNIX):
        connection = UnixHTTPConnection(endpoint.removeprefix(UNIX), timeout)
    else:
        connection = http.client.HTTPConnection(endpoint.removeprefix("http://").rstrip("/"), timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request("POST" if body is not None else "GET", path, body, headers)
        answer = connection.getresponse()
        return answer.status, answer.read()
    except http.client.HTTPException as e:
        raise OSError(f"{type(e).__name__}: {e}") from None
    finally:
        connection.close()


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def stub_models(pid: int) -> dict[int, str]:
    """The Python backend stubs of a tritonserver process: pid -> the model folder each serves."""
    stubs = {}
    for child in children(pid):
        try:
            args = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(STUB.encode()) and len(args) > 1:
            stubs[child] = Path(args[1].decode(errors="replace")).parent.parent.name
    return stubs


def alive(pid: int) -> bool:
    """Running, not a zombie that its parent has yet to reap."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def wait_until(condition, timeout: float, step: float = 0.1) -> float | None:
    """Seconds until `condition()` held, polled every `step`; None once `timeout` has passed. The
    condition may raise to give up early (a process that exited)."""
    started = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            return None
        time.sleep(step)


def _die_with_parent() -> None:
    # Runs in the child before exec: if the launcher is killed, Triton gets SIGTERM instead of lingering.
    # (Linux ties this to the starting thread: start the server from a thread that outlives it.)
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class TritonServer:
    def __init__(
        self,
        repository: str | Path = DEFAULT_REPOSITORY,
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        *,
        http_address: str = "127.0.0.1",
        grpc_address: str = "127.0.0.1",
        metrics_address: str = "127.0.0.1",
        log_file: str | Path = CACHE / "server.log",
        backend_dir: str | Path = CACHE / "backends",
        log_verbose: int = 0,
        extra_args: tuple[str, ...] = (),
        private: bool = False,
    ):
        """`private`: HTTP and gRPC on Unix sockets in a 0700 directory (the ports are then unused)."""
        self.repository = Path(repository).resolve()
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.http_address, self.grpc_address, self.metrics_address = http_address, grpc_address, metrics_address
        self.log_file = Path(log_file).resolve()
        self.backend_dir = Path(backend_dir).resolve()
        self.log_verbose = log_verbose
        # Private: no key, nothing but the launching user reaches it. Bare: what the restricted APIs
        # demand of callers (see server.admin).
        self.socket_dir = Path(tempfile.mkdtemp(prefix="finer-triton-")) if private else None
        self.internal_key = None if private else secrets.token_urlsafe(24)
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen | None = None
        self.stubs: dict[int, str] = {}  # pid -> model, found once ready
        self.shm_prefix = f"finer_{os.getpid()}_{secrets.token_hex(4)}_"

    @property
    def http_url(self) -> str:
        if self.socket_dir:
            return f"{UNIX}{self.socket_dir / 'http.sock'}"
        return f"http://{self.http_address}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        if self.socket_dir:  # Triton appends ":<port>" to a Unix socket's path
            return f"{UNIX}{self.socket_dir / 'grpc.sock'}:{self.grpc_port}"
        return f"{self.grpc_address}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.metrics_address}:{self.metrics_port}/metrics"

    def model_version(self) -> Path:
        """The finer_model version folder that will be served; a one-line error if there is none or a
        step lacks the same version."""
        try:
            return artifacts.latest_ensemble(self.repository)
        except artifacts.MissingArtifacts as e:
            raise LaunchError(str(e)) from None

    def command(self) -> list[str]:
        if self.socket_dir:
            listen = [f"--http-address={self.http_url}", f"--grpc-address={UNIX}{self.socket_dir / 'grpc.sock'}"]
            restricted = []
        else:
            listen = [f"--http-address={self.http_address}", f"--grpc-address={self.grpc_address}"]
            restricted = [f"--http-restricted-api={RESTRICTED}:{ADMIN_HEADER}={self.internal_key}",
                          f"--grpc-restricted-protocol={RESTRICTED}:{ADMIN_HEADER}={self.internal_key}"]
        return [
            str(wheel_home() / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={self.backend_dir}",
            *listen, f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.metrics_address}", f"--metrics-port={self.metrics_port}",
            f"--log-verbose={self.log_verbose}",
            "--exit-timeout-secs=10",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            *restricted,
            *self.extra_args,
        ]

    def start(self) -> "TritonServer":
        if self.process is not None:
            raise LaunchError("this server is already started")
        if not (self.repository / ENSEMBLE / "config.pbtxt").is_file():
            raise LaunchError(f"{self.repository} is not the finer model repository (no {ENSEMBLE}/config.pbtxt)")
        self.model_version()
        ports = [(self.metrics_address, self.metrics_port, "--metrics-port")]
        if self.socket_dir:  # a stopped server's sockets would block the bind
            for sock in self.socket_dir.glob("*.sock*"):
                sock.unlink()
        else:
            ports += [(self.http_address, self.http_port, "--http-port"), (self.grpc_address, self.grpc_port, "--grpc-port")]
        for address, port, flag in ports:
            check_port(address, port, flag)
        build_backends(self.backend_dir)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "wb") as log:
            # Own process group: stop() can reap the Python backend stubs with one signal.
            # cwd = project root: the stubs' sys.path starts with '' so `finer` imports even when the
            # venv lacks the editable install.
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=server_env(), cwd=PROJECT_ROOT, start_new_session=True, preexec_fn=_die_with_parent,
            )
        atexit.register(self.stop)
        return self

    def log_tail(self, lines: int = 12) -> str:
        """The log's last lines without its banner tables and CPU-only warnings."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        kept = [line[:300] for line in text.splitlines()
                if line.strip() and line[:1] not in "|+" and not HARMLESS.search(line)]
        return "\n".join(kept[-lines:])

    def is_ready(self) -> bool:
        try:
            return http_call(self.http_url, f"/v2/models/{ENSEMBLE}/ready")[0] == 200
        except OSError:
            return False

    def dead_stub(self) -> str | None:
        """Which of the stubs found at readiness has died (Triton never restarts one), or None."""
        for pid, model in self.stubs.items():
            if not alive(pid):
                return f"the Python stub of {model} (pid {pid}) died"
        return None

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Seconds until the `finer` ensemble was ready; LaunchError with the log's reason otherwise."""
        if self.process is None:
            raise LaunchError("start() the server first")

        def ready() -> bool:
            process = self.process  # stop() from another thread (the supervisor's owner) clears it
            if process is None:
                raise LaunchError("the server was stopped while it was starting")
            if process.poll() is not None:
                self.fail(f"Triton exited with code {process.returncode}")
            return self.is_ready()

        seconds = wait_until(ready, timeout, 0.25)
        if seconds is None:
            self.fail(f"`{ENSEMBLE}` was not ready after {timeout:.0f} s")
        self.stubs = stub_models(self.process.pid)
        return seconds

    def fail(self, what: str):
        """Stop the server and raise LaunchError: `what`, the log's reason, and the log's last lines."""
        self.stop()
        log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        raise LaunchError(
            f"{what}: {failure_reason(log)}\n--- last lines of {self.log_file} ---\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (Triton unloads models and ends its stubs), then SIGKILL whatever is left in the group;
        returns how many shared-memory regions it left that were removed."""
        process, self.process = self.process, None
        self.stubs = {}
        if process is None:
            return 0
        atexit.unregister(self.stop)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Stubs stay in Triton's process group; none may outlive the server.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()
        return self.clean_shm()

    def remove_sockets(self) -> None:
        """The private socket directory, once the server has stopped for good."""
        if self.socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def keep_log(self) -> None:
        """Move the log aside to `<log>.1` (one earlier run kept), so a restart does not erase why it stopped."""
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_name(self.log_file.name + ".1"))

    def stale_regions(self) -> list[Path]:
        """Shared-memory regions of this server's Python stubs (left behind when it was killed)."""
        return sorted(SHM.glob(f"{self.shm_prefix}*"))

    def clean_shm(self) -> int:
        """Remove this server's regions once it has stopped; how many there were."""
        regions = self.stale_regions()
        for region in regions:
            region.unlink(missing_ok=True)
        return len(regions)

    def __enter__(self) -> "TritonServer":
        self.start()
        self.wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self.remove_sockets()
