"""The gRPC front door: a pass-through of raw messages with a receive limit and honest readiness.

Triton 2.51 takes gRPC messages of up to 2 GB and has no flag to lower that. This server takes
every method of `inference.GRPCInferenceService` as opaque bytes (nothing is parsed or copied into
Python objects), refuses messages over `max_body_bytes` (RESOURCE_EXHAUSTED `[too_big]`; gRPC itself
refuses those over RECEIVE_SLACK times that, uncoded), admits inferences within the work the server
can finish soon (`server.admission`, else RESOURCE_EXHAUSTED `[overloaded]` with a `retry-after`
trailer), answers ServerReady / ModelReady with `ready: false` while the supervisor finds the
ensemble unhealthy, answers the operator methods only with the admin key (`server.admin`,
PERMISSION_DENIED without it), and passes on the caller's metadata and deadline. Triton's own
address never appears in an error: an unreachable Triton is UNAVAILABLE "retry shortly".
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

# The launcher forks tritonserver while these threads run: gRPC's fork handlers only log about it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
import grpc  # noqa: E402

from finer.serving import ERROR_BAD_INPUT, ERROR_TOO_BIG, GRPC_RECONNECT, coded  # noqa: E402
from server.admin import ADMIN_HEADER, GRPC_METHODS, REFUSED, TRITON_GRPC_HEADER, admitted  # noqa: E402
from server.admission import MAX_REQUESTS, Admission  # noqa: E402

SERVICE = "/inference.GRPCInferenceService/"
READY_METHODS = {SERVICE + "ServerReady", SERVICE + "ModelReady"}
STREAMING = {SERVICE + "ModelStreamInfer"}
INFER = {SERVICE + "ModelInfer"} | STREAMING
SHM_REGISTER = {SERVICE + "SystemSharedMemoryRegister", SERVICE + "CudaSharedMemoryRegister"}
# Admitted calls block a worker each; the rest stay free to refuse at once.
WORKERS = MAX_REQUESTS + 16
# Messages up to this many times the limit reach the handler, which refuses them with a code.
RECEIVE_SLACK = 16
# Triton's error messages quote what they refuse (a 20,000-character tensor name, whole): cut there.
MAX_DETAIL_CHARS = 1000
# What gRPC sets itself on the outgoing call.
OWN_METADATA = {"user-agent", "content-type", "te"}
UNLIMITED = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


def caller_metadata(context) -> list[tuple[str, str]]:
    return [(k, v) for k, v in context.invocation_metadata()
            if k not in OWN_METADATA and k not in (ADMIN_HEADER, TRITON_GRPC_HEADER) and not k.startswith((":", "grpc-"))]


def deadline(context) -> float | None:
    """Seconds the caller still waits; None without a deadline (gRPC then reports ~2**63 ns)."""
    remaining = context.time_remaining()
    return None if remaining is None or remaining > 1e6 else remaining


def short(error: grpc.RpcError) -> str:
    detail = error.details() or str(error.code())
    return detail if len(detail) <= MAX_DETAIL_CHARS else detail[:MAX_DETAIL_CHARS] + f" ... ({len(detail)} characters)"


def not_ready_answer(method: str) -> bytes:
    from tritonclient.grpc import service_pb2

    answer = service_pb2.ServerReadyResponse if method.endswith("ServerReady") else service_pb2.ModelReadyResponse
    return answer(ready=False).SerializeToString()


class GrpcFront(grpc.GenericRpcHandler):
    def __init__(self, backend: str, address: str, port: int, max_body_bytes: int,
                 health: Callable[[], tuple[bool, str]], keys: tuple[str | None, str | None], admission: Admission):
        """`backend`: Triton's gRPC endpoint, host:port or unix:/path; `keys` as `HttpFront`'s."""
        self.backend, self.address, self.port = backend, address, port
        self.operator_key, self.internal_key = keys
        self.max_body_bytes = max_body_bytes
        self.health = health
        self.admission = admission
        self._channel = grpc.insecure_channel(backend, options=GRPC_RECONNECT + UNLIMITED)
        self._server: grpc.Server | None = None

    def start(self) -> None:
        self._server = grpc.server(
            ThreadPoolExecutor(WORKERS, thread_name_prefix="grpc-front"), handlers=[self],
            options=[("grpc.max_receive_message_length", self.max_body_bytes * RECEIVE_SLACK),
                     ("grpc.max_send_message_length", -1),
                     ("grpc.so_reuseport", 0)],
        )
        if self._server.add_insecure_port(f"{self.address}:{self.port}") == 0:
            raise OSError(f"cannot bind the gRPC front door to {self.address}:{self.port}")
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=2).wait()
        self._channel.close()

    def service(self, details):
        method = details.method
        if not method.startswith(SERVICE):
            return None  # UNIMPLEMENTED, as Triton answers
        if method in STREAMING:
            return grpc.stream_stream_rpc_method_handler(lambda requests, context: self.stream(method, requests, context))
        return grpc.unary_unary_rpc_method_handler(lambda request, context: self.unary(method, request, context))

    def metadata(self, method: str, context) -> list[tuple[str, str]]:
        """What goes on to Triton; PERMISSION_DENIED for an operator method without the admin key."""
        passed = caller_metadata(context)
        if GRPC_METHODS.match(method):
            sent = dict(context.invocation_metadata()).get(ADMIN_HEADER)
            if not admitted(sent, self.operator_key):
                context.abort(grpc.StatusCode.PERMISSION_DENIED, REFUSED)
            if self.internal_key:
                passed.append((TRITON_GRPC_HEADER, self.internal_key))
        return passed

    def _refuse_if_unready(self, method: str, context) -> bytes | None:
        ready, why = self.health()
        if ready:
            return None
        if method in READY_METHODS:
            return not_ready_answer(method)
        context.abort(grpc.StatusCode.UNAVAILABLE, f"the server is not ready ({why}): retry shortly")

    def _admit(self, method: str, size: int, context):
        """A ticket for an inference within the admitted work (None for other methods); aborts otherwise."""
        if size > self.max_body_bytes:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, coded(
                ERROR_TOO_BIG, f"the message ({size} bytes) is over max_body_bytes {self.max_body_bytes}: "
                               "send fewer or shorter documents per request"))
        if method not in INFER:
            return None
        ticket = self.admission.admit(size)
        if ticket is None:
            message, retry_after = self.admission.refusal()
            context.set_trailing_metadata((("retry-after", str(retry_after)),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)
        return ticket

    def _abort(self, method: str, error: grpc.RpcError, context):
        code = error.code()
        if code == grpc.StatusCode.UNAVAILABLE:  # its details name Triton's private address
            context.abort(code, "Triton cannot be reached: it may be restarting, retry shortly")
        if code == grpc.StatusCode.INTERNAL and method in SHM_REGISTER:  # a region it cannot map
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          coded(ERROR_BAD_INPUT, f"the shared-memory region cannot be registered: {short(error)}"))
        context.abort(code, short(error))

    def unary(self, method: str, request: bytes, context) -> bytes:
        metadata = self.metadata(method, context)
        refused = self._refuse_if_unready(method, context)
        if refused is not None:
            return refused
        ticket = self._admit(method, len(request), context)
        answered = False
        try:
            answer = self._channel.unary_unary(method)(request, timeout=deadline(context), metadata=metadata)
            answered = True
            return answer
        except grpc.RpcError as e:
            answered = e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                        grpc.StatusCode.CANCELLED)
            self._abort(method, e, context)
        finally:
            if ticket is not None:
                self.admission.done(ticket, answered)

    def stream(self, method: str, requests, context):
        metadata = self.metadata(method, context)
        self._refuse_if_unready(method, context)
        ticket = self._admit(method, 0, context)  # a stream is admitted as one request
        try:
            yield from self._channel.stream_stream(method)(requests, timeout=deadline(context), metadata=metadata)
        except grpc.RpcError as e:
            self._abort(method, e, context)
        finally:
            self.admission.done(ticket)
