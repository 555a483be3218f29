"""Where the encoder's time goes on ONNX Runtime, per operator type: fp32, TensorRT's int8, the CPU int8 variant, fp16;
ONNX Runtime's own profiler over the tutorial-size encoder (ResNet-101 at 256x256), batch 1.

    python benchmarks/encoder_profile.py [--bundle runs/bench/tutorial-bundle] [--runs 20]

The bundle needs its fp16/int8 graphs (glimpse bench makes them for the tutorial model). Writes
benchmarks/results/encoder_profile.{json,md}.
"""

import argparse
import collections
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from glimpse.bundle import Bundle
from glimpse.runtime.session import cpu_threads


def profile(path: Path, image: np.ndarray, runs: int) -> tuple[float, dict]:
    """-> (median ms per run, {operator type: median ms per run})."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = cpu_threads()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.enable_profiling = True
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    session.run(None, {"image": image})  # warm-up
    totals = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, {"image": image})
        totals.append((time.perf_counter() - t) * 1e3)
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    per_run: dict = collections.defaultdict(lambda: collections.defaultdict(float))
    run = -1
    for e in events:
        if e.get("cat") == "Session" and e["name"] == "model_run":
            run += 1
        elif e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and run > 0:  # run 0: warm-up
            per_run[run][e["args"]["op_name"]] += e["dur"] / 1e3
    ops = {
        op: statistics.median(r.get(op, 0.0) for r in per_run.values())
        for op in {o for r in per_run.values() for o in r}
    }
    return statistics.median(totals), ops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="runs/bench/tutorial-bundle")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    bundle = Bundle(args.bundle)
    side = bundle.preprocess.output_size[0]
    image = np.random.default_rng(0).standard_normal((1, 3, side, side)).astype(np.float32)
    results = {}
    paths = {p: bundle.graph_path("encoder", p) for p in ("fp32", "int8", "fp16")}
    paths = {**paths, "int8 (CPU variant)": bundle.cpu_graph_path("encoder", "int8")}
    for precision, path in paths.items():
        total, ops = profile(path, image, args.runs)
        results[precision] = {"median_ms": total, "ops_ms": dict(sorted(ops.items(), key=lambda kv: -kv[1]))}
    lines = [
        f"## Encoder on ONNX Runtime {ort.__version__} (CPU, {cpu_threads()} threads), batch 1, {side}x{side}:"
        f" median of {args.runs} runs, operator kernel time per run (ms)",
        "",
        "| precision | total ms | fp32 / this | top operators (kernel ms) |",
        "|---|---:|---:|---|",
    ]
    for p, r in results.items():
        top = ", ".join(f"{op} {ms:.1f}" for op, ms in list(r["ops_ms"].items())[:6])
        lines.append(f"| {p} | {r['median_ms']:.1f} | {results['fp32']['median_ms'] / r['median_ms']:.2f}x | {top} |")
    table = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "encoder_profile.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "encoder_profile.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
