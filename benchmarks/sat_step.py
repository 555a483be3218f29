"""Cost of one Show-Attend-Tell decode step at beam K: the tutorial's step against glimpse's step.onnx,
alone and with the host search's beam selection, and against step_fused.onnx, which selects in-graph.

The tutorial (caption.py) runs attention over K copies of the image features and recomputes the
``encoder_att`` projection of all of them at every step. glimpse's step reads one copy of the
features and the projection computed once by init.onnx. Same device (CPU), same thread count, one run;
medians over repeats, and the ratio measured in that run.

    python benchmarks/sat_step.py [--beam 5] [--repeats 200]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch
from saved import RESULTS, save  # benchmarks/ is on sys.path when a script in it runs

from glimpse.export import onnx as onnx_export
from glimpse.families.sat.model import GRAPH_IO, DecoderWithAttention, FusedStepGraph, StepGraph, reference_step
from glimpse.runtime.search import top_candidates
from glimpse.runtime.session import OnnxRuntimeSession, cpu_threads, share_threads


def median_ms(fn, repeats: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--vocab", type=int, default=9490, help="tutorial COCO word map size")
    a = p.parse_args()
    share_threads()  # the step's sessions as the glimpse program runs them
    torch.manual_seed(0)
    torch.set_num_threads(cpu_threads())
    k, P = a.beam, 196
    decoder = DecoderWithAttention(512, 512, 512, a.vocab, 2048).eval()
    features = torch.randn(1, P, 2048).abs()
    h, c = decoder.init_hidden_state(features)
    att_proj = decoder.attention.encoder_att(features)

    enc_k = features.expand(k, P, 2048)  # the tutorial's K copies
    words, hk, ck = torch.zeros(k, dtype=torch.int64), h.expand(k, -1).contiguous(), c.expand(k, -1).contiguous()
    tutorial = median_ms(lambda: reference_step(decoder, enc_k, words, hk, ck), a.repeats)

    step = StepGraph(decoder)
    inputs = {"features": features, "att_proj": att_proj, "tokens": words[None], "h": hk[None], "c": ck[None]}
    torch_step = median_ms(lambda: step(*inputs.values()), a.repeats)

    path = RESULTS / "_step.onnx"
    onnx_export.export(
        onnx_export.Graph(
            "step",
            step,
            {n: v.repeat(2, *([1] * (v.dim() - 1))) for n, v in inputs.items()},
            ["logprobs", "h_next", "c_next", "alpha"],
            {
                "features": {0: "batch"},
                "att_proj": {0: "batch"},
                "tokens": {0: "batch", 1: "beam"},
                "h": {0: "batch", 1: "beam"},
                "c": {0: "batch", 1: "beam"},
            },
        ),
        path,
    )
    session = OnnxRuntimeSession(path)
    np_inputs = {n: v.numpy() for n, v in inputs.items()}
    onnx_step = median_ms(lambda: session.run(np_inputs), a.repeats)
    scores = -np.random.default_rng(0).uniform(0, 10, (1, k)).astype(np.float32)

    def host_selected():  # what the host search does with the step's log-probs
        top_candidates(scores, session.run(np_inputs)["logprobs"], k)

    onnx_selected = median_ms(host_selected, a.repeats)
    path.unlink()

    fused_inputs = {**inputs, "scores": torch.from_numpy(scores), "width": torch.tensor([k])}
    onnx_export.export(
        onnx_export.Graph(
            "step_fused",
            FusedStepGraph(decoder, end=1),
            {n: v.repeat(2, *([1] * (v.dim() - 1))) for n, v in fused_inputs.items()},
            GRAPH_IO["step_fused"][1],
            {n: {0: "batch"} for n in fused_inputs},
        ),
        path,
    )
    fused = OnnxRuntimeSession(path)
    np_fused = {n: v.numpy() for n, v in fused_inputs.items()}
    onnx_fused = median_ms(lambda: fused.run(np_fused), a.repeats)
    path.unlink()

    rows = [
        ("tutorial step, eager PyTorch, K feature copies", tutorial),
        ("glimpse StepGraph, eager PyTorch", torch_step),
        ("glimpse step.onnx, ONNX Runtime CPU", onnx_step),
        ("glimpse step.onnx + host beam selection", onnx_selected),
        ("glimpse step_fused.onnx (selection in the graph)", onnx_fused),
    ]
    result = {
        "benchmark": "sat_step",
        "beam": k,
        "vocab": a.vocab,
        "dims": "512/512/512, encoder 2048, P=196",
        "threads": cpu_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "repeats": a.repeats,
        "median_ms": {name: round(ms, 3) for name, ms in rows},
        "speedup_vs_tutorial": {name: round(tutorial / ms, 2) for name, ms in rows},
    }
    lines = [f"| contender (K={k}) | median ms/step | speed-up vs tutorial |", "|---|---:|---:|"]
    lines += [f"| {name} | {ms:.3f} | {tutorial / ms:.2f}x |" for name, ms in rows]
    print("\n".join(lines))
    note = f"{cpu_threads()} threads, `python benchmarks/sat_step.py`"
    save("sat_step", result, lines, note)


if __name__ == "__main__":
    main()
