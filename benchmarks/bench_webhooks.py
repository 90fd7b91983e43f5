"""Webhook gateway load on loopback: signed requests/s and latency percentiles.

    python benchmarks/bench_webhooks.py [--seconds 10] [--connections 32] [--runs 3]
                                        [--engine] [--clients 1] [--target gateway]

``--target gateway`` drives the command gateway's execute endpoint instead
(``POST /workflows/<id>/execute`` with an API key; `flowlog worker gateway`).

Starts `flowlog worker webhooks` as a subprocess (its own topic prefix and PostgreSQL
schema), applies a workflow with one signed webhook trigger, and drives it from
``--clients`` load processes, each with ``--connections`` keep-alive HTTP/1.1 connections
(a small asyncio client: signing is done before the clock starts, so the figure is the
gateway's). Every request has its own body and signature (replays are refused). Each
request is answered only after its trigger is acknowledged by Kafka. With ``--engine``,
`flowlog worker all` runs at the same time and executes every trigger. Prints the median
over runs; writes benchmarks/results/webhooks.json.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, write_results
from flowlog.api.webhooks.signing import sign

from flowlog.settings import Settings

SECRET = "bench-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def requests(path: str, n: int, tag: str) -> list[bytes]:
    if path.startswith("gateway:"):
        return execute_requests(path.split(":", 2)[1], path.split(":", 2)[2], n, tag)
    now = int(time.time())
    out = []
    for i in range(n):
        body = b'{"order": {"id": "%s-%d", "total": 12.5}}' % (tag.encode(), i)
        out.append(
            b"POST /hooks/" + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nX-Flowlog-Signature: "
            + sign(SECRET, now, body).encode() + b"\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)
    return out


def execute_requests(workflow: str, key: str, n: int, tag: str) -> list[bytes]:
    out = []
    for i in range(n):
        body = b'{"input": {"order": "%s-%d"}}' % (tag.encode(), i)
        out.append(
            b"POST /workflows/" + workflow.encode() + b"/execute HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\nContent-Type: application/json\r\nX-API-Key: "
            + key.encode() + b"\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n\r\n" + body)
    return out


async def connection(port: int, reqs: list[bytes], deadline: float,
                     lat: list[float], codes: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for req in reqs:
            if time.perf_counter() > deadline:
                return
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            codes[status] = codes.get(status, 0) + 1
    finally:
        writer.close()


def client_process(port: int, path: str, seconds: float, conns: int, out: Any) -> None:
    per_conn = int(8000 * seconds / conns) + 100
    tag = uuid.uuid4().hex[:8]
    batches = [requests(path, per_conn, f"{tag}{c}") for c in range(conns)]
    lat: list[float] = []
    codes: dict[int, int] = {}

    async def main() -> float:
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(connection(port, b, deadline, lat, codes) for b in batches))
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    out.put((elapsed, lat, codes))


def wait_http(port: int, path: str, within: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if path.startswith("gateway:"):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    return
                continue
            r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            if r.status_code == 200 and r.json()["webhooks"] >= 1:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the webhook gateway did not become ready")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--engine", action="store_true", help="run the engine at the same time")
    ap.add_argument("--target", choices=("webhooks", "gateway"), default="webhooks")
    args = ap.parse_args()

    from flowlog.projections.migrate import migrate
    from flowlog.streams.runtime import tools
    from flowlog.streams.runtime.kafka import ensure_topics

    run_id = uuid.uuid4().hex[:8]
    port = free_port()
    env = {**os.environ, "FLOWLOG_TOPIC_PREFIX": f"bench{run_id}.",
           "FLOWLOG_PG_SCHEMA": f"bench_{run_id}", "FLOWLOG_WEBHOOK_PORT": str(port),
           "FLOWLOG_WEBHOOK_RATE_PER_IP": "1000000", "FLOWLOG_WEBHOOK_RATE_PER_KEY": "1000000",
           "FLOWLOG_SECRET_HOOK": SECRET, "FLOWLOG_GATEWAY_PORT": str(port),
           "FLOWLOG_AUTH_RATE_PER_S": "1000000", "FLOWLOG_AUTH_RATE_BURST": "1000000"}
    settings = Settings(topic_prefix=env["FLOWLOG_TOPIC_PREFIX"],
                        pg_schema=env["FLOWLOG_PG_SCHEMA"])
    migrate(settings)
    ensure_topics(settings)
    path = f"bench{run_id}/orders"
    with tempfile.TemporaryDirectory() as tmp:
        definition = Path(tmp) / "bench-hook.yaml"
        definition.write_text(
            f"id: bench-hook-{run_id}\nsecrets: [HOOK]\ntriggers:\n  - type: webhook\n"
            f"    path: {path}\n    secret: ${{secret:HOOK}}\n"
            "    input: '{\"order\": body.order}'\n"
            "nodes:\n  total:\n    type: transform\n    output: 'inputs.order.total'\n")
        tools.apply_definition(settings, definition)
    if args.target == "gateway":
        import asyncio as _asyncio

        from flowlog.api.auth.bootstrap import auth_service

        async def make_key() -> str:
            async with auth_service(settings) as svc:
                return (await svc.create_key(tenant="default", role="operator")).key

        path = f"gateway:bench-hook-{run_id}:{_asyncio.run(make_key())}"
    procs = [subprocess.Popen([sys.executable, "-m", "flowlog.cli", "worker", args.target,
                               "-l", "warning"], env=env)]
    if args.engine:
        procs.append(subprocess.Popen([sys.executable, "-m", "flowlog.cli", "worker", "all",
                                       "-l", "warning"], env=env))
    figures: dict[str, Any] = {"connections": args.connections, "clients": args.clients,
                               "seconds": args.seconds, "engine": args.engine, "runs": []}
    try:
        wait_http(port, path)
        for run in range(args.runs):
            queue: Any = mp.Queue()
            workers = [mp.Process(target=client_process,
                                  args=(port, path, args.seconds, args.connections, queue))
                       for _ in range(args.clients)]
            for w in workers:
                w.start()
            results = [queue.get() for _ in workers]
            for w in workers:
                w.join()
            lat = sorted(x for _, lats, _ in results for x in lats)
            codes: dict[int, int] = {}
            for _, _, c in results:
                for k, v in c.items():
                    codes[k] = codes.get(k, 0) + v
            elapsed = max(e for e, _, _ in results)
            ok = codes.get(202, 0)
            row = {"req_per_s": round(len(lat) / elapsed), "accepted_per_s": round(ok / elapsed),
                   "p50_ms": round(lat[len(lat) // 2] * 1000, 2),
                   "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 2),
                   "codes": {str(k): v for k, v in sorted(codes.items())}}
            figures["runs"].append(row)
            print(f"run {run + 1}: {row}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
    runs = figures["runs"]
    figures["median_req_per_s"] = median([r["req_per_s"] for r in runs])
    figures["median_p99_ms"] = median([r["p99_ms"] for r in runs])
    figures["median_p50_ms"] = median([r["p50_ms"] for r in runs])
    print(f"{args.target}: {figures['median_req_per_s']:.0f} req/s, p50 "
          f"{figures['median_p50_ms']:.1f} ms, p99 {figures['median_p99_ms']:.1f} ms "
          f"(median of {len(runs)}; {args.clients}x{args.connections} connections"
          f"{', engine running' if args.engine else ''})")
    name = ("gateway-execute" if args.target == "gateway" else "webhooks") + (
        "-engine" if args.engine else "")
    figures["load_average_1m_at_end"] = round(__import__("os").getloadavg()[0], 2)
    print(write_results(name, figures))


if __name__ == "__main__":
    main()
