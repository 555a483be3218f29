"""Load on ``glimpse serve``: latency and throughput of /v1/caption under concurrent clients, batching on
and off, over loopback.

The demo captioner is served (``--replicas`` replicas of ``--threads`` ONNX Runtime threads on the CPU)
on a free loopback port, first with
batching (``--max-batch-size 16``, 5 ms wait), then without (``--max-batch-size 1``). At each concurrency
level, that many clients each send one request after another for ``--seconds`` (held-out demo scenes in
turn, beam 3); concurrency 1 is the same requests sent one at a time. Reported per level: requests,
errors, throughput, p50/p95/p99 latency, and throughput over concurrency 1's in the same server.

    python benchmarks/serve_load.py [--levels 1 8 32 64] [--seconds 20] [--max-requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import socket
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
from saved import save, scene_pngs  # benchmarks/ is on sys.path when a script in it runs


async def load(url: str, images: list[bytes], clients: int, seconds: float, max_requests: int) -> dict:
    """``clients`` clients, each sending one request after another until ``seconds`` or ``max_requests``.
    aiohttp, not httpx: on a 2-core machine the clients share the server's cores, and aiohttp spends a
    fifth to a third of httpx's CPU on a request (0.5-1.1 ms against 2.7-3.4 ms, measured here)."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds

    async def client(c: int, http: aiohttp.ClientSession):
        nonlocal errors, sent
        i = c
        while time.perf_counter() < deadline and sent < max_requests:
            sent += 1
            form = aiohttp.FormData()
            form.add_field("image", images[i % len(images)], filename="scene.png", content_type="image/png")
            form.add_field("beam_size", "3")
            start = time.perf_counter()
            try:
                async with http.post(url, data=form) as r:
                    await r.read()
                    ok = r.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1
            i += clients

    start, cpu = time.perf_counter(), time.process_time()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:
        await asyncio.gather(*(client(c, http) for c in range(clients)))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    ms = np.array(latencies) * 1e3
    return {
        "clients": clients,
        "requests": len(latencies) + errors,
        "errors": errors,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 2),
        **{f"p{q}_ms": round(float(np.percentile(ms, q)), 1) if len(ms) else None for q in (50, 95, 99)},
        "client_cpu_ms": round(cpu * 1e3 / max(len(latencies) + errors, 1), 2),  # the load generator's, per request
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    import ray
    from ray import serve as ray_serve

    from glimpse.demo.bundles import PACKAGED, sat_bundle
    from glimpse.runtime.session import cpu_threads
    from glimpse.serve import app as serve

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levels", nargs="+", type=int, default=[1, 8, 32, 64], help="concurrent clients")
    p.add_argument("--seconds", type=float, default=20.0, help="per level (default 20)")
    p.add_argument("--max-requests", type=int, default=20_000, help="per level, whatever the time (default 20000)")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 1], help="server --max-batch-size runs")
    p.add_argument("--replicas", type=int, default=2, help="server replicas (default 2: one per core here)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per replica (default 1)")
    a = p.parse_args()
    if 1 not in a.levels:
        a.levels = [1, *a.levels]  # the one-at-a-time baseline of the ratios

    images = scene_pngs(32)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        bundle = sat_bundle(PACKAGED, Path(tmp) / "sat-bundle", print)
        for batch in a.batch_sizes:
            port = free_port()
            options = serve.ModelOptions(max_batch_size=batch, batch_wait_ms=5.0, threads=a.threads)
            serve.run([str(bundle.path)], port=port, replicas=a.replicas, model=options, blocking=False)
            url = f"http://127.0.0.1:{port}/v1/caption"
            asyncio.run(load(url, images, 4, 3.0, 10_000))  # warm-up: sessions, arenas, connections
            for clients in a.levels:
                row = asyncio.run(load(url, images, clients, a.seconds, a.max_requests))
                row["max_batch_size"] = batch
                runs.append(row)
                print(json.dumps(row), flush=True)
            ray_serve.shutdown()
            ray.shutdown()

    lines = [
        "| max batch | clients | requests | errors | requests/s | vs 1 client | p50 ms | p95 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        base = next(b for b in runs if b["max_batch_size"] == r["max_batch_size"] and b["clients"] == 1)
        ratio = r["requests_per_s"] / base["requests_per_s"]
        lines.append(
            f"| {r['max_batch_size']} | {r['clients']} | {r['requests']} | {r['errors']} | {r['requests_per_s']:.1f}"
            f" | {ratio:.2f}x | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} |"
        )
    print("\n".join(lines))
    result = {
        "benchmark": "serve_load",
        "model": f"demo captioner, beam 3, ONNX Runtime CPU, {a.replicas} replicas x {a.threads} threads",
        "seconds_per_level": a.seconds,
        "threads": cpu_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "runs": runs,
    }
    note = (
        f"{a.seconds:g} s per level, {a.replicas} replicas x {a.threads} ONNX Runtime threads,"
        f" {cpu_threads()} cores, `python benchmarks/serve_load.py`"
    )
    save("serve_load", result, lines, note)


if __name__ == "__main__":
    main()
