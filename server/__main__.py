"""`python -m server`: serve the model repository with the embedded Triton until Ctrl-C or SIGTERM.

Triton runs behind the HTTP and gRPC front doors, under a supervisor that restarts it when a step
dies or it crashes (see server/service.py). The restricted APIs (shared memory, model repository,
trace, logging) answer only requests with the header `finer-admin-key: $FINER_ADMIN_KEY`.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

from server.service import FinerServer
from server.admin import ADMIN_HEADER, ADMIN_KEY_ENV
from server.triton import CACHE, DEFAULT_REPOSITORY, ENSEMBLE, LaunchError


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    p.add_argument("--model-repository", type=Path, default=DEFAULT_REPOSITORY)
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--http-address", default="127.0.0.1")
    p.add_argument("--grpc-address", default="127.0.0.1")
    p.add_argument("--metrics-address", default="127.0.0.1")
    p.add_argument("--log-file", type=Path, default=CACHE / "server.log")
    p.add_argument("--log-verbose", type=int, default=0, help="Triton's verbose log level (0 = off)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the models to load")
    p.add_argument("--canary-interval", type=float, default=2.0,
                   help="seconds between the supervisor's canary requests through the ensemble")
    return p.parse_args(argv)


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s", level=logging.INFO, stream=sys.stderr)
    server = FinerServer(
        args.model_repository, args.http_port, args.grpc_port, args.metrics_port,
        http_address=args.http_address, grpc_address=args.grpc_address, metrics_address=args.metrics_address,
        log_file=args.log_file, log_verbose=args.log_verbose, canary_interval_s=args.canary_interval,
    )
    # Also SIGINT: a shell that starts us in the background hands us SIGINT ignored.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _terminate)
    try:
        version = server.model_version()
        print(f"starting Triton on {args.model_repository} (finer_model {version.name}); log: {args.log_file}", flush=True)
        server.start()
        seconds = server.wait_ready(args.timeout)
        print(
            f"`{ENSEMBLE}` ready in {seconds:.1f} s\n"
            f"  HTTP     {server.http_url}/v2/models/{ENSEMBLE}/infer\n"
            f"  gRPC     {server.grpc_url}\n"
            f"  metrics  {server.metrics_url}\n"
            f"  admin    shared-memory, repository, trace and logging APIs need the header {ADMIN_HEADER}: "
            + (f"${ADMIN_KEY_ENV}" if os.environ.get(ADMIN_KEY_ENV) else f"(closed: set {ADMIN_KEY_ENV} to open them)")
            + "\nCtrl-C to stop.",
            flush=True,
        )
        while True:  # the supervisor restarts Triton; this thread only waits for a signal
            time.sleep(3600)
    except LaunchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping Triton ...", flush=True)
        server.stop()
        print("stopped.", flush=True)
        return 0
    finally:
        server.stop()
    return 1


if __name__ == "__main__":
    sys.exit(main())
