"""`python -m server.front`: the front doors alone, in front of a Triton that runs elsewhere.

What docker-compose and Kubernetes run beside the official Triton container (which serves the
repository with its native ONNX Runtime backend): the same limits, operator-API gate and canary
readiness as `python -m server`, but no restarts, since the orchestrator restarts Triton's
container (compose: when it exits; Kubernetes: when this readiness fails its liveness probe).

    python -m server.front --triton-http triton:8000 --triton-grpc triton:8001 --repository /models \\
        --address 0.0.0.0

Triton must be started with the same key for its restricted APIs as FINER_ADMIN_KEY here:
`--http-restricted-api=shared-memory,model-repository,trace,logging:finer-admin-key=$FINER_ADMIN_KEY`
(and `--grpc-restricted-protocol=...`), and its own ports must not be published.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from server.admin import operator_key
from server.service import Fronts, admission_for, max_body_bytes
from server.supervisor import Supervisor
from server.triton import DEFAULT_REPOSITORY, UNIX


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m server.front", description=__doc__.split("\n\n")[0])
    p.add_argument("--triton-http", default="127.0.0.1:8000", help="Triton's HTTP endpoint, host:port or unix:/path")
    p.add_argument("--triton-grpc", default="127.0.0.1:8001", help="Triton's gRPC endpoint, host:port or unix:/path:port")
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY,
                   help="the model repository Triton serves (its ensemble config holds max_body_bytes)")
    p.add_argument("--address", default="127.0.0.1", help="where the front doors listen (0.0.0.0 in a container)")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--canary-interval", type=float, default=2.0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s", level=logging.INFO, stream=sys.stderr)
    key = operator_key()
    triton_http = args.triton_http if args.triton_http.startswith(UNIX) else "http://" + args.triton_http.removeprefix("http://")
    admission = admission_for(args.repository)
    watch = Supervisor(None, interval_s=args.canary_interval, triton_http=triton_http, busy=admission.busy)
    fronts = Fronts(triton_http, args.triton_grpc, (args.address, args.http_port), (args.address, args.grpc_port),
                    max_body_bytes(args.repository), watch.health, (key, key), admission)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    try:
        fronts.start()
    except OSError as e:
        print(f"error: cannot start the front doors: {e}", file=sys.stderr)
        return 1
    watch.start(ready=False)
    print(f"front doors on {args.address}: HTTP {args.http_port}, gRPC {args.grpc_port} -> Triton "
          f"{args.triton_http} / {args.triton_grpc}; ready once the ensemble answers", flush=True)
    done.wait()
    watch.stop()
    fronts.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
