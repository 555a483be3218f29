"""Faults on ``glimpse serve`` under load: a serving replica killed (SIGKILL) while clients wait.

The demo captioner is served on a free loopback port with ``--replicas`` replicas, under HAProxy's retry settings
as Ray leaves them or as ``glimpse serve`` sets them (``--retries``). Eight client threads send 400 caption requests
(held-out demo scenes in turn, beam 3), one after another each; when the 100th answer arrives one replica process
is killed with SIGKILL, and Ray restarts it. Every request is counted by its answer's status, or as a dropped
connection (closed with no answer) or a client timeout; of those in flight at the kill, how many were answered 200.
HAProxy's access log (syslog over UDP) counts the requests it sent more than once, and keeps its lines for those it
did not answer 200. Every 200 answer, and a round of requests once the replica is back, must equal
``glimpse caption --json`` on the same image.

    python benchmarks/serve_faults.py [--replicas 2 1] [--retries ray glimpse] [--runs 2] [--requests 400]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from saved import save  # benchmarks/ is on sys.path when a script in it runs

REPLICA = "ray::ServeReplica:glimpse:glimpse"  # the process title Ray gives a replica of glimpse serve
TIMEOUT_S = 30.0
RAY_DEFAULTS = {  # Ray 2.60's HAProxy retry settings, which glimpse serve's replace
    "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure",
    "RAY_SERVE_HAPROXY_RETRIES": "3",  # HAProxy's own default, which Ray leaves in place
    "RAY_SERVE_HAPROXY_TUNE_BUFSIZE": "16384",
}  # the server's --timeout; a client waits this and 10 s more


def descendants(root: int) -> list[int]:
    """The processes below ``root`` (from /proc), so that a replica of another server on the machine is left alone."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        below = children.get(todo.pop(), [])
        out += below
        todo += below
    return out


def replica_pids() -> list[int]:
    """This process's serving replicas of glimpse serve (Ray starts them below it)."""
    pids = []
    for pid in descendants(os.getpid()):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == REPLICA.encode():
                pids.append(pid)
        except OSError:
            continue
    return pids


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for {pid}")


class HAProxyLog:
    """HAProxy's access log, received as syslog over UDP (``RAY_SERVE_HAPROXY_LOG_TARGET``): per request its
    status, termination state and retries (``+`` when sent on to another replica)."""

    LINE = re.compile(r'(\S+) (\d+) \d+ - - (\S{4}) \d+/\d+/\d+/\d+/(\+?)(\d+) \d+/\d+ "(\S+) (\S+)')

    def __init__(self):
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.target = f"127.0.0.1:{self.socket.getsockname()[1]}"
        self.lines: list[str] = []
        threading.Thread(target=self.receive, daemon=True).start()

    def receive(self):
        while True:
            self.lines.append(self.socket.recv(65536).decode(errors="replace"))

    def requests(self, since: int = 0) -> list[dict]:
        out = []
        for line in self.lines[since:]:
            m = self.LINE.search(line)
            if m and m[7].startswith("/v1/"):
                out.append(
                    {
                        "timers": m[1],
                        "status": int(m[2]),
                        "state": m[3],
                        "redispatched": m[4] == "+",
                        "retries": int(m[5]),
                        "line": line,
                    }
                )
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_captions(bundle: Path, files: list[Path]) -> dict[str, list]:
    """``glimpse caption --json -b 3``: {file name: tokens}."""
    argv = [sys.executable, "-m", "glimpse.cli", "caption", str(bundle), *map(str, files), "--json", "-b", "3"]
    lines = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.splitlines()
    return {Path(f).name: json.loads(line)["tokens"] for f, line in zip(files, lines)}


def send(url: str, files: list[Path], n: int, threads: int, on_answer) -> list[dict]:
    """``n`` requests from ``threads`` threads, each sending one after another: one record per request."""
    records: list[dict] = []
    lock, next_index = threading.Lock(), iter(range(n))

    def client():
        with httpx.Client(timeout=TIMEOUT_S + 10) as http:
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                f = files[i % len(files)]
                start, record = time.perf_counter(), {"image": f.name}
                try:
                    r = http.post(url, files={"image": (f.name, f.read_bytes())}, data={"beam_size": 3})
                    record |= {"status": r.status_code, "retry_after": r.headers.get("retry-after")}
                    if r.status_code == 200:
                        record["tokens"] = r.json()["tokens"]
                except httpx.TimeoutException:
                    record["status"] = "timeout"
                except httpx.TransportError as e:  # closed, reset or refused with no answer
                    record["status"] = "dropped"
                    record["error"] = repr(e)
                record["seconds"] = time.perf_counter() - start
                record["start"], record["end"] = start, time.perf_counter()
                with lock:
                    records.append(record)
                    on_answer(len(records))

    pool = [threading.Thread(target=client) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return records


def wait_for_replicas(url: str, replicas: int, seconds: float = 120) -> float:
    """Seconds until ``replicas`` replica processes run again and the server answers."""
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        if len(replica_pids()) == replicas:
            try:
                if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                    return time.perf_counter() - start
            except httpx.TransportError:
                pass
        time.sleep(0.2)
    raise RuntimeError(f"{replicas} replica(s) were not back within {seconds:g} s")


def fault_run(bundle: Path, files: list[Path], want: dict, replicas: int, retries: str, a) -> dict:
    """One server, one replica killed under load: the counts of what the clients got."""
    import ray
    from ray import serve as ray_serve

    from glimpse.serve import app as serve

    port, log = free_port(), HAProxyLog()
    os.environ["RAY_SERVE_HAPROXY_LOG_TARGET"] = log.target  # Ray's settings are read when Ray starts
    limits = serve.Limits(timeout_s=TIMEOUT_S)
    for setting, value in (RAY_DEFAULTS if retries == "ray" else serve.haproxy_retries(limits)).items():
        os.environ[setting] = value
    options = serve.ModelOptions(threads=1)
    serve.run([str(bundle)], port=port, replicas=replicas, model=options, limits=limits, blocking=False)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_replicas(url, replicas)
        send(url + "/v1/caption", files, 16, a.threads, lambda n: None)  # warm-up
        seen, killed = len(log.lines), []

        def kill(answered: int):
            if answered == a.kill_after and not killed:
                pid = replica_pids()[0]
                killed.append(time.perf_counter())
                os.kill(pid, signal.SIGKILL)

        start = time.perf_counter()
        records = send(url + "/v1/caption", files, a.requests, a.threads, kill)
        elapsed = time.perf_counter() - start
        recovered_s = wait_for_replicas(url, replicas)
        logged = log.requests(seen)
        later = send(url + "/v1/caption", files, 2 * len(files), a.threads, lambda n: None)
    finally:
        ray_serve.shutdown()
        ray.shutdown()
    statuses = Counter(str(r["status"]) for r in records)
    wrong = sum(r["tokens"] != want[r["image"]] for r in records + later if r["status"] == 200)
    in_flight = [r for r in records if r["start"] < killed[0] < r["end"]]
    return {
        "retries": retries,
        "replicas": replicas,
        "requests": len(records),
        "statuses": dict(sorted(statuses.items())),
        "ok": statuses["200"],
        "retryable": statuses["503"] + statuses["504"] + statuses["408"],
        "dropped": statuses["dropped"],
        "timeouts": statuses["timeout"],
        "http_500": statuses["500"],
        "in_flight_at_kill": len(in_flight),
        "in_flight_answered": sum(r["status"] == 200 for r in in_flight),
        "haproxy_retried": sum(r["retries"] > 0 for r in logged),  # requests HAProxy sent more than once
        "haproxy_failed": [r["line"].split("]: ", 1)[-1] for r in logged if r["status"] != 200],
        "slowest_s": round(max(r["seconds"] for r in records), 2),
        "seconds": round(elapsed, 1),
        "back_after_s": round(recovered_s, 1),
        "after_recovery": f"{sum(r['status'] == 200 for r in later)}/{len(later)}",
        "wrong_captions": wrong,
        "client_errors": sorted({r["error"] for r in records if "error" in r}),
    }


def main() -> None:
    from glimpse.demo import scenes
    from glimpse.demo.bundles import PACKAGED, sat_bundle

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", nargs="+", type=int, default=[2, 1], help="replica counts")
    p.add_argument(
        "--retries",
        nargs="+",
        choices=["ray", "glimpse"],
        default=["ray", "glimpse"],
        help="HAProxy's retry settings: Ray's defaults, or those glimpse serve sets",
    )
    p.add_argument("--runs", type=int, default=2, help="runs of each setting")
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--kill-after", type=int, default=100, help="answers before a replica is killed")
    p.add_argument("--bundle", type=Path, help="the captioner to serve (default: the demo's, exported first)")
    a = p.parse_args()

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        bundle = a.bundle or sat_bundle(PACKAGED, Path(tmp) / "sat-bundle", lambda m: None).path
        files = []
        for s in scenes.scenes("test", 8):
            files.append(Path(tmp) / f"test-{s.index}.png")
            s.image(128).save(files[-1])
        want = cli_captions(bundle, files)
        for replicas in a.replicas:
            for retries in a.retries:
                for _ in range(a.runs):
                    runs.append(fault_run(bundle, files, want, replicas, retries, a))
                    print(json.dumps(runs[-1]), flush=True)

    lines = [
        "| HAProxy retries | replicas | requests | 200 | 503/504/408 | dropped | 500 | client timeouts"
        " | in flight at the kill: answered | resent by HAProxy | slowest s | after recovery 200"
        " | captions unlike the CLI's |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['retries']} | {r['replicas']} | {r['requests']} | {r['ok']} | {r['retryable']} | {r['dropped']}"
            f" | {r['http_500']} | {r['timeouts']} | {r['in_flight_answered']}/{r['in_flight_at_kill']}"
            f" | {r['haproxy_retried']} | {r['slowest_s']} | {r['after_recovery']} | {r['wrong_captions']} |"
        )
    print("\n".join(lines))
    result = {
        "benchmark": "serve_faults",
        "model": "demo captioner, beam 3, ONNX Runtime CPU, 1 thread a replica",
        "fault": f"one replica SIGKILLed after {a.kill_after} answers",
        "threads": a.threads,
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "runs": runs,
    }
    note = (
        f"{a.threads} client threads, {a.requests} requests, one replica SIGKILLed after {a.kill_after} answers;"
        f" {os.cpu_count()} cores, `python benchmarks/serve_faults.py`"
    )
    save("serve_faults", result, lines, note)


if __name__ == "__main__":
    main()
