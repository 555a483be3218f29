"""int8 on ONNX Runtime's CPU provider: each graph of a bundle in fp32, as TensorRT's int8 graph (symmetric Q/DQ,
which the CPU kernels do not fuse), and as the CPU int8 candidates, timed in turns in one run; then whole
captions (batch 1) with fp32, TensorRT-int8 and the CPU variant glimpse quantize chooses (``cpu_scheme``).

Candidates (``glimpse.export.precision``): ``u8s8-static`` (uint8 asymmetric activations, int8 per-channel
weights, Q/DQ around Conv/MatMul/Gemm/Relu/MaxPool, calibrated) and the same with its convolution weights at
zero point -1 (``offset_conv_weights``; glimpse quantize keeps the faster of the two), ``int8-dynamic``
(onnxruntime's quantize_dynamic on MatMul/Gemm/LSTM/Gather, convolutions left fp32), ``weight-only``
(MatMulNBits, 8 bits, blocks of 32, int8 compute). Inputs: the graphs' own, recorded while captioning
generated validation scenes at batch 1 and beam 5; the static graphs calibrate on them, and the error is
measured on a spread of them: max |int8 - fp32| / max |fp32| over the float outputs, and for a step the share
of (image, beam) rows whose best next word is fp32's.

    python benchmarks/int8_cpu.py SAT_BUNDLE [--images 8] [--rounds 5] [--captions 4]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from glimpse import families
from glimpse.bundle import Bundle
from glimpse.demo import scenes
from glimpse.export.precision import (
    cpu_calibration_cache,
    cpu_scheme,
    median_ms,
    offset_conv_weights,
    recorded_feeds,
    to_cpu_int8,
    to_int8,
)
from glimpse.runtime.session import OnnxRuntimeSession, cpu_threads

RESULTS = Path(__file__).parent / "results"


def weight_only(src: Path, dst: Path, feeds, cache) -> None:
    """MatMulNBits, 8 bits: weights read as int8 blocks, activations quantized per block (accuracy level 4)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, accuracy_level=4, bits=8)
    quantizer = MatMulNBitsQuantizer(onnx.load(src), algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), False)


def u8s8_offset(src: Path, dst: Path, feeds, cache) -> None:
    to_cpu_int8(src, dst, feeds, cpu_calibration_cache(cache), "u8s8-static")
    offset_conv_weights(dst, dst)


CANDIDATES = {
    "int8 TensorRT": lambda src, dst, feeds, cache: to_int8(src, dst, feeds, cache),
    "u8s8-static": lambda src, dst, feeds, cache: to_cpu_int8(
        src, dst, feeds, cpu_calibration_cache(cache), "u8s8-static"
    ),
    "u8s8-static, zero point -1": u8s8_offset,
    "int8-dynamic": lambda src, dst, feeds, cache: to_cpu_int8(src, dst, feeds, cache, "int8-dynamic"),
    "weight-only": weight_only,
}


def error(got: dict, want: dict) -> tuple[float, float | None]:
    """max |got - want| / max |want| over float outputs; share of rows with fp32's best next word (a step)."""
    floats = [o for o, w in want.items() if w.dtype.kind == "f"]
    rel = max(float(np.abs(got[o] - want[o]).max() / max(float(np.abs(want[o]).max()), 1e-30)) for o in floats)
    same = float(np.mean(got["logprobs"].argmax(-1) == want["logprobs"].argmax(-1))) if "logprobs" in want else None
    return rel, same


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="a sat bundle (make tutorial makes the tutorial-size one)")
    p.add_argument("--images", type=int, default=8, help="validation scenes recorded and calibrated on")
    p.add_argument("--rounds", type=int, default=5, help="turns of timing, every candidate once a turn")
    p.add_argument("--captions", type=int, default=4, help="scenes captioned per variant in the caption timing")
    p.add_argument("--out", default=str(RESULTS / "int8_cpu"), help="writes OUT.json and OUT.md")
    a = p.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    bundle = Bundle(a.bundle)
    family = families.get(bundle.family)
    side = bundle.preprocess.output_size[0]
    pixels = np.stack([bundle.preprocess(s.image(side)) for s in scenes.scenes("val", a.images)])
    pipe = families.open_pipeline(bundle)
    feeds = recorded_feeds(pipe, lambda pipe, chunk, offset: family.calibrate(pipe, chunk, [], 5, offset), pixels, 1)

    rows, chosen = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in bundle.graphs:
            src, cache = bundle.graph_path(name), Path(tmp) / f"{name}.ranges.json"
            paths = {"fp32": src}
            for label, make in CANDIDATES.items():
                paths[label] = Path(tmp) / f"{name}.{label.replace(' ', '-').replace(',', '')}.onnx"
                make(src, paths[label], feeds[name], cache)
            sample = feeds[name][:: max(1, len(feeds[name]) // 6)][:6]
            ms = dict(zip(paths, median_ms(list(paths.values()), sample, a.rounds)))
            scheme = cpu_scheme(src)  # and of u8s8-static's two forms, the faster, as glimpse quantize keeps
            if scheme == "u8s8-static" and ms["u8s8-static, zero point -1"] < ms[scheme]:
                scheme = "u8s8-static, zero point -1"
            chosen[name] = {"fp32": src, "int8 TensorRT": paths["int8 TensorRT"], "int8 CPU": paths[scheme]}
            sessions = {label: OnnxRuntimeSession(path) for label, path in paths.items()}
            want = [sessions["fp32"].run(f) for f in sample]
            for label, session in sessions.items():
                errs = [error(session.run(f), w) for f, w in zip(sample, want)]
                same = None if errs[0][1] is None else float(np.mean([s for _, s in errs]))
                rows.append(
                    {
                        "graph": name,
                        "variant": label,
                        "chosen": label == scheme,
                        "median_ms": ms[label],
                        "speedup_vs_fp32": ms["fp32"] / ms[label],
                        "max_rel_error": max(e for e, _ in errs),
                        "same_best_word": same,
                    }
                )
                print(f"{name:<10} {label:<14} {ms[label]:9.2f} ms  {ms['fp32'] / ms[label]:5.2f}x", flush=True)
        images = [s.image(side) for s in scenes.scenes("val", a.captions, start=1000)]  # not calibrated on
        captions = caption_ms(bundle, chosen, images, a.rounds)

    result = {
        "benchmark": "int8_cpu",
        "bundle": bundle.path.name,
        "config": bundle.config,
        "threads": cpu_threads(),
        "machine": platform.processor() or platform.machine(),
        "graphs": rows,
        "captions": captions,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).with_suffix(".json").write_text(json.dumps(result, indent=1))
    Path(a.out).with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def caption_ms(bundle: Bundle, chosen: dict, images: list, rounds: int) -> dict:
    """Median ms per caption (batch 1, beam 5) for each variant: the pipeline's sessions swapped for the
    variant's graphs, the variants in turns."""
    pipes = {}
    for variant in ("fp32", "int8 TensorRT", "int8 CPU"):
        pipes[variant] = families.open_pipeline(bundle)
        pipes[variant].sessions = {n: OnnxRuntimeSession(chosen[n][variant]) for n in pipes[variant].sessions}
    times: dict = {v: [] for v in pipes}
    words = {v: [] for v in pipes}
    for r in range(rounds):
        for variant, pipe in pipes.items():
            for image in images:
                start = time.perf_counter()
                caption = pipe([image], beam_size=5)[0]
                times[variant].append((time.perf_counter() - start) * 1e3)
                if r == 0:
                    words[variant].append(caption.tokens)
    return {
        v: {
            "median_ms": float(np.median(t)),
            "same_caption_as_fp32": f"{sum(a == b for a, b in zip(words[v], words['fp32']))}/{len(images)}",
        }
        for v, t in times.items()
    }


def markdown(result: dict) -> str:
    lines = [
        "| graph | variant | median ms | vs fp32 | max rel error | best next word = fp32's |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in result["graphs"]:
        same = "" if r["same_best_word"] is None else f"{r['same_best_word']:.1%}"
        mark = " (chosen)" if r["chosen"] else ""
        lines.append(
            f"| {r['graph']} | {r['variant']}{mark} | {r['median_ms']:.2f} | {r['speedup_vs_fp32']:.2f}x |"
            f" {r['max_rel_error']:.1e} | {same} |"
        )
    lines += ["", "| caption, batch 1, beam 5 | median ms | vs fp32 | same caption as fp32 |", "|---|---:|---:|---:|"]
    fp32 = result["captions"]["fp32"]["median_ms"]
    for v, c in result["captions"].items():
        lines.append(f"| {v} | {c['median_ms']:.1f} | {fp32 / c['median_ms']:.2f}x | {c['same_caption_as_fp32']} |")
    lines += ["", f"{result['threads']} threads, `python benchmarks/int8_cpu.py BUNDLE` ({result['bundle']})", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
