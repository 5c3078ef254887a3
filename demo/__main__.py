"""`python -m demo`: the web app on http://127.0.0.1:7860, talking to a running finer server."""
from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

from client import FinerClient, FinerError
from client.protocol import PROTOCOLS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    p.add_argument("--url", help="the server's host:port (default 127.0.0.1:8001 for gRPC, 127.0.0.1:8000 for HTTP)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="grpc")
    p.add_argument("--port", type=int, default=7860, help="the app's port on 127.0.0.1")
    return p.parse_args(argv)


def _terminate(signum, frame):
    raise KeyboardInterrupt  # Gradio stops its server on it, and the work folder is removed


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        client = FinerClient(args.url, args.protocol)
    except FinerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from demo.app import launch  # Gradio takes seconds to import: not before the arguments are checked

    print(f"FiNER web app on http://127.0.0.1:{args.port}, tagging through {client.protocol} {client.url}", flush=True)
    with tempfile.TemporaryDirectory(prefix="finer-demo-") as workdir, client:
        try:
            launch(client, args.port, Path(workdir))
        except OSError as e:  # Gradio's "Cannot find empty port"
            print(f"error: cannot serve on 127.0.0.1:{args.port} ({e}): is another app there? choose --port",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
