"""Soak on ``glimpse serve``: 32 clients for 10 minutes on the demo captioner, and each replica's memory.

The demo captioner is served on a free loopback port (``--replicas`` replicas, one ONNX Runtime thread each); after
a warm-up, ``--clients`` clients each send one request after another (held-out demo scenes in turn, beam 3) for
``--minutes`` minutes. Each minute is a row: requests, errors, throughput, p50/p99 latency, and the resident memory
(RSS) of every serving replica at its end; the start's is taken after a minute's warm-up at the same load. Memory
growth is each replica's last RSS over its start.

    python benchmarks/serve_soak.py [--minutes 10] [--clients 32] [--replicas 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path

from saved import save, scene_pngs  # benchmarks/ is on sys.path when a script in it runs
from serve_faults import free_port, replica_pids, rss_mib
from serve_load import load


def main() -> None:
    import ray
    from ray import serve as ray_serve

    from glimpse.demo.bundles import PACKAGED, sat_bundle
    from glimpse.serve import app as serve

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=int, default=10)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--bundle", type=Path, help="the captioner to serve (default: the demo's, exported first)")
    a = p.parse_args()

    images = scene_pngs(32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bundle = a.bundle or sat_bundle(PACKAGED, Path(tmp) / "sat-bundle", print).path
        port = free_port()
        options = serve.ModelOptions(threads=1)
        serve.run([str(bundle)], port=port, replicas=a.replicas, model=options, blocking=False)
        url = f"http://127.0.0.1:{port}/v1/caption"
        try:
            # Warm-up at full load, so that the start is the working set of serving 32 clients (sessions, ONNX
            # Runtime's arenas grown to the largest batch, connections), not of an idle server.
            asyncio.run(load(url, images, a.clients, 60.0, 10**9))
            pids = replica_pids()
            start = {pid: rss_mib(pid) for pid in pids}
            for minute in range(1, a.minutes + 1):
                row = asyncio.run(load(url, images, a.clients, 60.0, 10**9))
                row |= {"minute": minute, "rss_mib": [round(rss_mib(pid), 1) for pid in pids]}
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            ray_serve.shutdown()
            ray.shutdown()

    growth = [rows[-1]["rss_mib"][i] / start[pid] - 1 for i, pid in enumerate(pids)]
    lines = [
        "| minute | requests | errors | requests/s | p50 ms | p99 ms | replica RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---|",
        f"| start | | | | | | {', '.join(f'{v:.1f}' for v in start.values())} |",
    ]
    for r in rows:
        lines.append(
            f"| {r['minute']} | {r['requests']} | {r['errors']} | {r['requests_per_s']:.1f} | {r['p50_ms']}"
            f" | {r['p99_ms']} | {', '.join(f'{v:.1f}' for v in r['rss_mib'])} |"
        )
    total, errors = sum(r["requests"] for r in rows), sum(r["errors"] for r in rows)
    summary = (
        f"{total} requests, {errors} errors in {a.minutes} min at {a.clients} clients;"
        f" p99 per minute {min(r['p99_ms'] for r in rows)}-{max(r['p99_ms'] for r in rows)} ms;"
        f" replica memory growth {', '.join(f'{g:+.1%}' for g in growth)}"
    )
    print("\n".join(lines) + "\n\n" + summary)
    result = {
        "benchmark": "serve_soak",
        "model": f"demo captioner, beam 3, ONNX Runtime CPU, {a.replicas} replicas x 1 thread",
        "clients": a.clients,
        "minutes": a.minutes,
        "cores": os.cpu_count(),
        "rss_start_mib": [round(v, 1) for v in start.values()],
        "rss_growth": [round(g, 4) for g in growth],
        "requests": total,
        "errors": errors,
        "minutes_rows": rows,
    }
    note = f"{summary}; {os.cpu_count()} cores, `python benchmarks/serve_soak.py`"
    save("serve_soak", result, lines, note)


if __name__ == "__main__":
    main()
