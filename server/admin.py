"""The operator APIs: shared memory, model repository, trace and logging, behind one admin key.

The front doors answer them only when the request carries `finer-admin-key: $FINER_ADMIN_KEY`
(no key set: never), and then pass them on with the launch's own internal key, which tritonserver
itself demands (`--http-restricted-api`, `--grpc-restricted-protocol`), so the operator's key never
appears on a command line. Health, metadata, config, inference and statistics stay open.
"""
from __future__ import annotations

import hmac
import os
import re

ADMIN_HEADER = "finer-admin-key"
ADMIN_KEY_ENV = "FINER_ADMIN_KEY"
# Triton's gRPC frontend reads the restricted-protocol header under this prefix.
TRITON_GRPC_HEADER = "triton-grpc-protocol-" + ADMIN_HEADER
# Triton's category names; 2.51 splits the list from key=value at ':'.
RESTRICTED = "shared-memory,model-repository,trace,logging"
HTTP_PATHS = re.compile(r"^/v2/(systemsharedmemory|cudasharedmemory|repository|trace|logging)(/|$)"
                        r"|^/v2/models/[^/]+(/versions/[^/]+)?/trace/")
GRPC_METHODS = re.compile(r"/inference\.GRPCInferenceService/"
                          r"(SystemSharedMemory|CudaSharedMemory|Repository|TraceSetting|LogSettings)")
REFUSED = f"this API is for operators: send the header {ADMIN_HEADER} with the server's ${ADMIN_KEY_ENV}"


def operator_key() -> str | None:
    return os.environ.get(ADMIN_KEY_ENV) or None


def admitted(sent: str | None, key: str | None) -> bool:
    return bool(key) and sent is not None and hmac.compare_digest(sent.encode(), key.encode())
