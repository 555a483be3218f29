"""Cost of an M2 caption: the public stateful decoding against glimpse's graphs, at the public model's size.

The reference is the public test script's ``model.beam_search(images, 20, eos, 5)`` restated in
glimpse.families.m2.reference: eager PyTorch, every step re-projecting the self-attention keys and values
of the whole prefix and the cross-attention keys and values of the three encoder levels, and copying
the encoder output once per beam; reference-compiled is the same decoding with the encoder and each
decoder layer under torch.compile (inductor, dynamic shapes: the prefix grows every step), its first call
at each batch size (the compilation) timed apart. glimpse runs encoder.onnx, init.onnx (the cross-attention projections,
once per image) and step.onnx (one position's projections into fixed-size caches) on ONNX Runtime, with
M2's search on the host. Random weights at the public sizes (3 layers, width 512, 40 memory slots,
10,201 words), 50 regions of 2048 features per image, beam 5, 20 steps; the same device (CPU) and
thread count, one run, medians, the ratio measured in that run, and the tokens of both compared.
glimpse-int8 is glimpse on the CPU int8 graphs (glimpse quantize, calibrated on 16 other images).

    python benchmarks/m2_decode.py [--images 8] [--repeats 3] [--no-compiled] [--no-int8]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from saved import save  # benchmarks/ is on sys.path when a script in it runs

from glimpse import families
from glimpse.bundle import Bundle
from glimpse.export.precision import quantize
from glimpse.families.m2.export import export_m2
from glimpse.families.m2.model import M2, M2Config, trained_layer_norms
from glimpse.families.m2.pipeline import M2Pipeline, pad_regions
from glimpse.families.m2.reference import beam_search as public_beam_search
from glimpse.runtime.session import cpu_threads, share_threads
from glimpse.vocab import Vocab


def median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--max-len", type=int, default=20)
    p.add_argument("--no-compiled", dest="compiled", action="store_false", help="leave out reference-compiled")
    p.add_argument("--no-int8", dest="int8", action="store_false", help="leave out glimpse-int8 (its calibration)")
    a = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(cpu_threads())
    config = M2Config()
    model = M2(config).eval()
    trained_layer_norms(model)
    itos = ["<unk>", "<pad>", "<bos>", "<eos>"] + [f"w{i}" for i in range(config.vocab_size - 4)]
    vocab = Vocab(itos, {"unk": 0, "pad": 1, "start": 2, "end": 3})
    rng = np.random.default_rng(0)
    sizes = rng.integers(20, 51, a.images)  # detections per image
    images = [rng.exponential(1.0, (int(n), config.d_in)).astype(np.float32) for n in sizes]
    padded = torch.from_numpy(np.stack([pad_regions(x, config.regions) for x in images]))
    beam, steps = a.beam, a.max_len

    with tempfile.TemporaryDirectory() as tmp:
        bundle = export_m2(model, vocab, Path(tmp) / "m2-bundle", log=print)
        if a.int8:  # calibrated on other images than those timed
            calibration = [rng.exponential(1.0, (int(n), config.d_in)).astype(np.float32) for n in np.tile(sizes, 2)]
            inputs = np.stack([pad_regions(x, config.regions) for x in calibration])
            quantize(Bundle(bundle), "int8", inputs, families.recorder(Bundle(bundle), []), log=print)
        share_threads()  # from here on the process only runs pipelines, as the glimpse program does
        pipe = M2Pipeline(bundle)
        if a.int8:
            pipe_int8 = M2Pipeline(bundle, precision="int8")  # ONNX Runtime on the CPU: the CPU int8 variant

        # the modules compiled, not reference_step whole: on torch 2.14 that returned wrong self-attention
        # inputs at batch 1 (the empty prefix of the first step), and other tokens (docs/benchmarks.md)
        compiled = copy.deepcopy(model)
        compiled.encoder = torch.compile(compiled.encoder, dynamic=True)
        for i, layer in enumerate(compiled.decoder.layers):
            compiled.decoder.layers[i] = torch.compile(layer, dynamic=True)

        def reference(batch: int, m: M2 = model) -> list[list[int]]:
            out = []
            for i in range(0, a.images, batch):
                found, _, _ = public_beam_search(m, padded[i : i + batch], steps, 2, 3, beam)
                out += [t[0].tolist() for t in found]
            return out

        def glimpse(batch: int, p: M2Pipeline = pipe) -> list[list[int]]:
            return [c.tokens for c in p(images, beam_size=beam, max_length=steps, batch_size=batch)]

        contenders = {"reference": reference, "glimpse": glimpse}
        if a.compiled:
            contenders["reference-compiled"] = partial(reference, m=compiled)
        if a.int8:
            contenders["glimpse-int8"] = partial(glimpse, p=pipe_int8)
        rows, tokens = [], {}
        for batch in (1, a.images):
            for name, fn in contenders.items():
                t = time.perf_counter()
                tokens[name, batch] = fn(batch)  # warm-up (compilation), and the tokens to compare
                first = time.perf_counter() - t
                seconds = median_s(partial(fn, batch), a.repeats)
                ms = round(seconds / a.images * 1e3, 1)
                rows.append({"contender": name, "batch": batch, "ms_per_caption": ms, "first_call_s": round(first, 1)})
                print(json.dumps(rows[-1]), flush=True)

    # glimpse's tokens stop at <eos>; the reference's run on to max_len
    def same(name: str, batch: int) -> str:
        found = sum(r[: len(g)] == g for r, g in zip(tokens["reference", batch], tokens[name, batch]))
        return f"{found}/{a.images}"

    against = [c for c in ("reference", "reference-compiled") if c in contenders]
    lines = [
        "| batch | contender | ms/caption | " + "".join(f"speed-up against {c} | " for c in against) + "same tokens |",
        "|---:|---|---:|" + "---:|" * (len(against) + 1),
    ]
    for batch in (1, a.images):
        ms = {r["contender"]: r["ms_per_caption"] for r in rows if r["batch"] == batch}
        for name in contenders:
            ratios = "".join(f"{ms[c] / ms[name]:.1f}x | " for c in against)
            lines.append(f"| {batch} | {name} | {ms[name]} | {ratios}{same(name, batch)} |")
    if "reference-compiled" in contenders:
        first = {r["batch"]: r["first_call_s"] for r in rows if r["contender"] == "reference-compiled"}
        lines += [
            "",
            "reference-compiled's first call (compilation): "
            + ", ".join(f"{s:.0f} s at batch {b}" for b, s in first.items()),
        ]
    print("\n".join(lines))
    result = {
        "benchmark": "m2_decode",
        "model": f"M2 at the public sizes, random weights; 50 regions x 2048; beam {beam}, {steps} steps",
        "images": a.images,
        "repeats": a.repeats,
        "threads": cpu_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "runs": rows,
    }
    note = f"{a.images} images, medians of {a.repeats}, {cpu_threads()} threads: `python benchmarks/m2_decode.py`"
    save("m2_decode", result, lines, note)


if __name__ == "__main__":
    main()
