"""``glimpse bench``: captioning latency, throughput and memory of glimpse against the reference.

Contenders, on one device, in one run, each in a process of its own (so that its peak memory is its
own), measured in turn image by image so that a slow spell of a shared machine falls on all of them:

    reference    the tutorial's caption.py: one image at a time, the features copied per beam, the
                 attention projection recomputed every step, top-k on the host, eager PyTorch
    reference-compiled
                 the same loop with the encoder and the decode step under torch.compile (inductor): what a
                 user would try first; compiled while the contender starts, the time reported apart
    torch        glimpse's graph split on its torch backend, eager (``--compile``: torch.compile)
    torch-graphs the same on CUDA, each graph captured as a CUDA graph per shape and replayed
    onnxruntime  glimpse's ONNX graphs on ONNX Runtime
    tensorrt, tensorrt-fp16
                 engines glimpse build makes, where TensorRT is installed (a GPU)
    onnxruntime-fp16, onnxruntime-int8
                 the graphs glimpse quantize makes, on ONNX Runtime (made on demand for the tutorial
                 and demo models, calibrated on generated validation scenes)

Figures: latency of one image at batch 1 per beam width (p50/p90/p99 over the images; the median
split into preprocess, encoder, init and decode; decode steps per caption), throughput in images/s per
batch size (batched beam search; the reference has no batching, so its images/s is one image at a
time at every batch size), peak memory, start-up time, how many captions have the reference's tokens,
every figure as a ratio to the reference's and the compiled reference's, and the encoder and a decode step
against the machine's limits (``glimpse.bench.limits``).
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from glimpse import families
from glimpse.bundle import Bundle, is_bundle
from glimpse.errors import GlimpseError
from glimpse.runtime.pipeline import CONTENDERS as PIPELINES
from glimpse.runtime.pipeline import PHASES

CONTENDERS = ("reference", "reference-compiled", "torch", "onnxruntime")
REFERENCES = ("reference", "reference-compiled")  # one image at a time: no batching
PRECISION_CONTENDERS = ("onnxruntime-fp16", "onnxruntime-int8")
GPU_CONTENDERS = ("torch-graphs", "tensorrt", "tensorrt-fp16")


# --------------------------------------------------------------------------- models


def tutorial_bundle(out: Path, log: Callable[[str], None]) -> Bundle:
    """The tutorial-size captioner (ResNet-101, 512/512/512, 9,490 words, 256x256) with random weights
    and trained-like BatchNorm statistics, exported once to ``out``."""
    if is_bundle(out) and Bundle(out).manifest["source"].get("model") == "tutorial-size, random, seed 0":
        return Bundle(out)
    import torch

    from glimpse.families.sat.export import export_sat
    from glimpse.families.sat.model import SATConfig, ShowAttendTell, settle_batchnorm
    from glimpse.preprocess import Preprocess
    from glimpse.vocab import Vocab

    log(f"exporting the tutorial-size model (random weights) to {out}")
    torch.manual_seed(0)
    model = ShowAttendTell(SATConfig())
    settle_batchnorm(model.encoder)
    n = model.config.vocab_size  # the tutorial's word map: <pad> 0, words, <unk> <start> <end>
    itos = ["<pad>", *(f"w{i}" for i in range(1, n - 3)), "<unk>", "<start>", "<end>"]
    vocab = Vocab(itos, {"pad": 0, "unk": n - 3, "start": n - 2, "end": n - 1})
    source = {"model": "tutorial-size, random, seed 0"}
    return Bundle(export_sat(model.eval(), vocab, Preprocess(), out, force=True, source=source, log=log))


def demo_bundle(out: Path, log: Callable[[str], None]) -> Bundle:
    from glimpse.demo.bundles import PACKAGED, sat_bundle

    return sat_bundle(PACKAGED, out, log)


def quantized(bundle: Bundle, precision: str, log: Callable[[str], None]) -> Bundle:
    """``bundle`` with its ``precision`` graphs, calibrated on 32 generated validation scenes."""
    from glimpse import families
    from glimpse.demo import scenes
    from glimpse.export.precision import quantize

    side = bundle.preprocess.output_size[0]
    pixels = np.stack([bundle.preprocess(s.image(side)) for s in scenes.scenes("val", 32)])
    return quantize(bundle, precision, pixels, families.recorder(bundle, []), log=log)


# --------------------------------------------------------------------------- one contender (a worker process)


def serve(spec: dict) -> None:
    """The worker process: load one contender, then caption on request, one JSON line in, one out."""
    from glimpse.demo import scenes
    from glimpse.runtime.session import share_threads

    bundle = Bundle(spec["bundle"])
    side = bundle.preprocess.output_size[0]
    images = [s.image(side) for s in scenes.scenes("test", spec["images"])]
    family = families.get(bundle.family)
    share_threads(spec["threads"])  # this process only runs its contender
    t = time.perf_counter()
    caption = family.contender(spec["contender"], bundle, spec["device"], spec["threads"], spec["compile"])
    load = time.perf_counter() - t
    caption(images[:1], 1, 1)  # warm-up: first-run allocations, lazy initialisation
    _reply({"ready": True, "startup": {"load_s": load, "first_caption_s": time.perf_counter() - t - load}})
    for line in sys.stdin:
        ask = json.loads(line)
        if ask["op"] == "memory":
            _reply(memory(spec["device"]))
            continue
        batch = [images[i % len(images)] for i in range(ask["first"], ask["first"] + ask["count"])]
        # Timed warm: the same work first, untimed. On a VM a process idle for 0.1 s (the other contenders'
        # turns) ran its next few milliseconds up to 2.5x slower, a penalty that falls hardest on the fastest.
        caption(batch, ask["beam"], ask["batch"])
        t = time.perf_counter()
        phases = caption(batch, ask["beam"], ask["batch"])
        _reply({"total": time.perf_counter() - t, **phases})


REPLY = "@glimpse-bench "  # marks the worker's answers among anything a library prints
SETTLE_S = 0.05  # before each request: ONNX Runtime's shared pool spins ~30 ms after a run, not on the next contender


def _reply(message: dict) -> None:
    print(REPLY + json.dumps(message), flush=True)


class Worker:
    """A contender in a process of its own (its peak memory is its own; no thread pool of another
    contender lingers in it), answering requests over its stdin and stdout."""

    def __init__(self, spec: dict):
        self.name = spec["contender"]
        self.log = tempfile.TemporaryFile(mode="w+")
        command = [sys.executable, "-m", "glimpse.bench.run", json.dumps(spec)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        self.startup = self._answer()["startup"]

    def caption(self, first: int, count: int, beam: int, batch: int) -> dict:
        return self._ask({"op": "caption", "first": first, "count": count, "beam": beam, "batch": batch})

    def memory(self) -> dict:
        return self._ask({"op": "memory"})

    def _ask(self, request: dict) -> dict:
        time.sleep(SETTLE_S)
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def _answer(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY) :])
        self.log.seek(0)
        last = (self.log.read().strip().splitlines() or ["no output"])[-1]
        raise GlimpseError(f"the {self.name} contender stopped: {last}")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()
        self.log.close()


def measure(workers: dict[str, Worker], spec: dict, log: Callable[[str], None]) -> dict:
    """Latency and throughput of every contender, interleaved image by image (and batch by batch), so
    that a slow spell of a shared machine falls on all of them and the ratios hold; each timed warm (``serve``)."""
    results = {name: {"latency": {}, "throughput": {}, "same_tokens": {}} for name in workers}
    n = spec["images"]
    for beam in spec["beams"]:
        log(f"latency at beam {beam}: {n} images, one at a time")
        runs: dict[str, list] = {name: [] for name in workers}
        for i in range(n):
            for name, w in _rotated(workers, i):
                runs[name].append(w.caption(i, 1, beam, 1))
        for name, r in runs.items():
            results[name]["latency"][beam] = _latency(r)
        if "reference" in runs:
            truth = [r["tokens"][0] for r in runs["reference"]]
            for name, r in runs.items():
                if all("tokens" in x for x in r):
                    results[name]["same_tokens"][beam] = sum(x["tokens"][0] == t for x, t in zip(r, truth))

    beam, batched = spec["throughput_beam"], {k: w for k, w in workers.items() if k not in REFERENCES}
    for b in spec["batches"]:
        log(f"throughput at batch {b}, beam {beam}")
        seconds: dict[str, list] = {name: [] for name in batched}
        for r in range(3):  # the median of three rounds
            for name, w in _rotated(batched, r):
                seconds[name].append(w.caption(0, b, beam, b)["total"])
        for name, t in seconds.items():
            results[name]["throughput"][b] = b / statistics.median(t)
    for name in REFERENCES:  # no batching: one image at a time at every batch size
        if name in workers:
            lat = results[name]["latency"]
            per_image = lat[beam]["mean_ms"] / 1e3 if beam in lat else workers[name].caption(0, n, beam, 1)["total"] / n
            results[name]["throughput"] = dict.fromkeys(spec["batches"], 1 / per_image)
    for name, w in workers.items():
        results[name]["memory"] = w.memory()
        results[name]["startup"] = w.startup
    return results


def _rotated(workers: dict, i: int) -> list:
    """The contenders in turn, starting from a different one each time (no one always goes first)."""
    items = list(workers.items())
    return items[i % len(items) :] + items[: i % len(items)]


def _latency(runs: list[dict]) -> dict:
    totals = np.array([r["total"] for r in runs]) * 1e3
    return {
        **{f"p{q}_ms": float(np.percentile(totals, q)) for q in (50, 90, 99)},
        "mean_ms": float(totals.mean()),
        **{f"{p}_ms": statistics.median(r[p] for r in runs) * 1e3 for p in PHASES},
        "steps": statistics.mean(r["steps"] for r in runs),
    }


def memory(device: str) -> dict:
    """Peak resident memory of this process (and peak CUDA memory allocated through torch), MiB."""
    out = {"peak_rss_mib": _peak_rss_kib() / 1024}
    if device.startswith("cuda"):
        import torch

        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _peak_rss_kib() -> float:
    """VmHWM: the peak of this process image. Not ru_maxrss, which on Linux keeps the peak of the
    parent that forked us across exec (every worker would report the suite's own)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # elsewhere; KiB on Linux, bytes on macOS


# --------------------------------------------------------------------------- the suite


def run(
    model: str,
    out: Path,
    cache: Path,
    device: str = "cpu",
    contenders: tuple[str, ...] | None = None,
    beams: tuple[int, ...] = (1, 3, 5),
    batches: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64),
    images: int = 12,
    throughput_beam: int = 5,
    threads: int | None = None,
    compile: bool = False,
    reference_compiled: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Measure every contender on ``model`` ("tutorial", "demo" or a bundle directory; by default all,
    reference-compiled where the family has it and ``reference_compiled``, the fp16/int8 graphs of a bundle
    directory only where glimpse quantize made them); write ``out/<family>-<model>-<device>.{json,md,png}``
    and print the table. -> the results."""
    from glimpse.bench.limits import limits, machine_peaks, model_work
    from glimpse.bench.report import markdown, plot
    from glimpse.runtime.session import cpu_threads

    if model == "tutorial":
        bundle = tutorial_bundle(cache / "tutorial-bundle", log)
    elif model == "demo":
        bundle = demo_bundle(cache / "demo-bundle", log)
    else:
        bundle, model = Bundle(model), Path(model).name
    if contenders is None:
        made = bundle.graphs["step"].get("precisions", {})
        own = model in ("tutorial", "demo")
        compiled = reference_compiled and families.get(bundle.family).compiled_reference
        contenders = tuple(c for c in CONTENDERS if compiled or c != "reference-compiled")
        contenders += tuple(c for c in PRECISION_CONTENDERS if own or PIPELINES[c][1] in made)
        if device.startswith("cuda"):
            from glimpse.runtime.tensorrt import unavailable

            trt = unavailable() is None
            contenders += tuple(c for c in GPU_CONTENDERS if trt or not c.startswith("tensorrt"))
    for name in contenders:
        precision = PIPELINES.get(name, ("", "fp32"))[1]
        if precision != "fp32" and precision not in bundle.graphs["step"].get("precisions", {}):
            if model not in ("tutorial", "demo"):
                bundle.graph_path("step", precision)  # says how to make it
            bundle = quantized(bundle, precision, log)
        if PIPELINES.get(name, ("",))[0] == "tensorrt":
            from glimpse.runtime.tensorrt import build

            build(bundle, precision, log)
    spec = {
        "bundle": str(bundle.path),
        "device": device,
        "beams": list(beams),
        "batches": list(batches),
        "images": images,
        "throughput_beam": throughput_beam,
        "threads": threads,
        "compile": compile,
    }
    results = {
        "family": bundle.family,
        "model": model,
        "config": bundle.config,
        "machine": machine(device, threads),
        # results are committed beside the code: the bundle by its name, never a path of the machine that ran them
        "settings": {**spec, "bundle": bundle.path.name},
    }
    if device == "cpu":
        log("counting the model's work and measuring this machine's FLOP/s and memory bandwidth")
        work = model_work(bundle, list(beams))
        peaks = machine_peaks(threads or cpu_threads(), work["step_weight_bytes"])
    log(f"starting {', '.join(contenders)} on {device}")
    workers = {}
    try:
        for name in contenders:
            workers[name] = Worker({**spec, "contender": name})
        results["contenders"] = measure(workers, spec, log)
    finally:
        for w in workers.values():
            w.close()
    if device == "cpu":  # measured again: on a shared machine the better of two spells is nearer the peak
        again = machine_peaks(threads or cpu_threads(), work["step_weight_bytes"])
        peaks = {
            k: max(v, again[k]) if k != "how" else f"{v}; before and after the contenders, the better"
            for k, v in peaks.items()
        }
        results["limits"] = {"work": work, "peaks": peaks, "bounds": limits(work, peaks)}
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{bundle.family}-{model}-{device.replace(':', '')}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    stem.with_suffix(".md").write_text(table)
    plot(results, stem.with_suffix(".png"))
    print(table)
    log(f"wrote {stem}.json, .md and .png")
    return results


def machine(device: str, threads: int | None) -> dict:
    import onnxruntime
    import torch

    from glimpse.runtime.session import cpu_threads

    info = {
        "cpu": _cpu_name(),
        "cores_usable": cpu_threads(),
        "threads": threads or cpu_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":  # a worker process
    serve(json.loads(sys.argv[1]))
