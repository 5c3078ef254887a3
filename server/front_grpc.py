"""The gRPC front door: a pass-through of raw messages with a receive limit and honest readiness.

Triton 2.51 takes gRPC messages of up to 2 GB and has no flag to lower that. This server takes
every method of `inference.GRPCInferenceService` as opaque bytes (nothing is parsed or copied into
Python objects), refuses messages over `max_body_bytes` (RESOURCE_EXHAUSTED, by gRPC itself),
answers ServerReady / ModelReady with `ready: false` while the supervisor finds the ensemble
unhealthy, answers the operator methods only with the admin key (`server.admin`,
PERMISSION_DENIED without it), and passes on the caller's metadata and deadline.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

# The launcher forks tritonserver while these threads run: gRPC's fork handlers only log about it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
import grpc  # noqa: E402

from client.protocol import GRPC_RECONNECT  # noqa: E402
from server.admin import ADMIN_HEADER, GRPC_METHODS, REFUSED, TRITON_GRPC_HEADER, admitted  # noqa: E402

SERVICE = "/inference.GRPCInferenceService/"
READY_METHODS = {SERVICE + "ServerReady", SERVICE + "ModelReady"}
STREAMING = {SERVICE + "ModelStreamInfer"}
WORKERS = 32
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
                 health: Callable[[], tuple[bool, str]], keys: tuple[str | None, str]):
        self.backend, self.address, self.port = backend, address, port
        self.operator_key, self.internal_key = keys
        self.max_body_bytes = max_body_bytes
        self.health = health
        self._channel = grpc.insecure_channel(backend, options=GRPC_RECONNECT + UNLIMITED)
        self._server: grpc.Server | None = None

    def start(self) -> None:
        self._server = grpc.server(
            ThreadPoolExecutor(WORKERS, thread_name_prefix="grpc-front"), handlers=[self],
            options=[("grpc.max_receive_message_length", self.max_body_bytes), ("grpc.max_send_message_length", -1),
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
            passed.append((TRITON_GRPC_HEADER, self.internal_key))
        return passed

    def _refuse_if_unready(self, method: str, context) -> bytes | None:
        ready, why = self.health()
        if ready:
            return None
        if method in READY_METHODS:
            return not_ready_answer(method)
        context.abort(grpc.StatusCode.UNAVAILABLE, f"the server is not ready ({why}): retry shortly")

    def unary(self, method: str, request: bytes, context) -> bytes:
        metadata = self.metadata(method, context)
        refused = self._refuse_if_unready(method, context)
        if refused is not None:
            return refused
        call = self._channel.unary_unary(method)
        try:
            return call(request, timeout=deadline(context), metadata=metadata)
        except grpc.RpcError as e:
            context.abort(e.code(), short(e))

    def stream(self, method: str, requests, context):
        metadata = self.metadata(method, context)
        self._refuse_if_unready(method, context)
        call = self._channel.stream_stream(method)
        try:
            yield from call(requests, timeout=deadline(context), metadata=metadata)
        except grpc.RpcError as e:
            context.abort(e.code(), short(e))
