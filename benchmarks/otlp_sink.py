"""A do-nothing OTLP/HTTP receiver for the tracing-overhead runs of the engine benchmark.

    python benchmarks/otlp_sink.py --port 4318 &
    python benchmarks/bench_engine.py --env FLOWLOG_OTLP_ENDPOINT=http://127.0.0.1:4318/v1/traces \\
        --env FLOWLOG_TRACE_SAMPLE_RATIO=0.01

Answers 200 to every POST and counts requests and bytes (printed on exit), so the
workers' exporters do their real work (batch, encode, send) without a collector.
"""

from __future__ import annotations

import argparse
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STATS = {"requests": 0, "bytes": 0}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        STATS["requests"] += 1
        STATS["bytes"] += length
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--port", type=int, default=4318)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)

    def stop(*_: Any) -> None:
        print(f"otlp sink: {STATS['requests']} requests, {STATS['bytes']} bytes",
              file=sys.stderr)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
