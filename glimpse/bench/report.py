"""Tables and the figure of a ``glimpse bench`` run: every figure beside its ratio to the reference."""

from __future__ import annotations

import statistics
from pathlib import Path

COMPILED = "reference-compiled"  # the tutorial's loop under torch.compile

# The bar set for a 2-core CPU at beam 5 (issue 23), as (label, how to read it off the results, {contender: ratio}).
GOALS = (
    ("end-to-end latency at batch 1", "p50_ms", {"onnxruntime": 7.0, "onnxruntime-int8": 10.0}),
    ("decode steps alone at batch 1", "decode_ms", {"onnxruntime": 10.0, "onnxruntime-int8": 10.0}),
    ("throughput at batch 32", "throughput32", {"onnxruntime": 15.0, "onnxruntime-int8": 15.0}),
)


def markdown(r: dict) -> str:
    c, m, s = r["config"], r["machine"], r["settings"]
    ref, comp = r["contenders"].get("reference"), r["contenders"].get(COMPILED)
    lines = [
        f"## {r.get('family', 'sat')}, {r['model']} model: "
        + ", ".join(f"{k} {v}" for k, v in c.items())
        + f", on {s['device']}",
        "",
        f"{m.get('gpu', m['cpu'])}; {m['threads']} threads of {m['cores_usable']} usable cores; torch {m['torch']},"
        f" onnxruntime {m['onnxruntime']}, Python {m['python']}; {m['date']}. {s['images']} generated test scenes,"
        " each contender in its own process, all measured in turn image by image, each timed right after the same"
        " caption untimed.",
        "",
        "### Latency of one image at batch 1 (ms)",
        "",
        "| contender | beam | p50 | p90 | p99 | preprocess | encoder | init | decode | steps | same tokens"
        " | p50 speed-up | against compiled |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, res in r["contenders"].items():
        for beam, t in res["latency"].items():
            ratios = [_ratio(base and base["latency"][beam]["p50_ms"], t["p50_ms"]) for base in (ref, comp)]
            same = res.get("same_tokens", {}).get(beam)
            same = "-" if same is None else f"{same}/{s['images']}"
            ms = " | ".join(f"{t[k]:.1f}" for k in ("p50_ms", "p90_ms", "p99_ms", "preprocess_ms", "encoder_ms"))
            lines.append(
                f"| {name} | {beam} | {ms} | {t['init_ms']:.2f} | {t['decode_ms']:.1f} | {t['steps']:.1f}"
                f" | {same} | {' | '.join(ratios)} |"
            )
    batches = s["batches"]
    speedups = [
        f"{name} {beam}: {_ratio(base['latency'][beam]['decode_ms'], t['decode_ms'])}"
        for base in (ref, comp)
        if base
        for name, res in r["contenders"].items()
        if name not in ("reference", COMPILED)
        for beam, t in res["latency"].items()
    ]
    lines += [
        "",
        "p50/p90/p99 over the scenes; the phases are medians. Same tokens: captions whose tokens are the reference's"
        " (where no hypothesis reaches <end>, as with random weights, that is agreement on finding none)."
        + (
            f" Decode speed-up at each beam, against the reference then the compiled one: {', '.join(speedups)}."
            if speedups
            else ""
        ),
        "",
        f"### Throughput (images/s) at beam {s['throughput_beam']}",
        "",
        "| contender | "
        + " | ".join(f"batch {b}" for b in batches)
        + " | speed-up at the largest batch | against compiled |",
        "|---|" + "---:|" * (len(batches) + 2),
    ]
    for name, res in r["contenders"].items():
        tp = res["throughput"]
        ratios = [_ratio(base and 1 / base["throughput"][batches[-1]], 1 / tp[batches[-1]]) for base in (ref, comp)]
        lines.append(f"| {name} | " + " | ".join(f"{tp[b]:.2f}" for b in batches) + f" | {' | '.join(ratios)} |")
    lines += [
        "",
        "The reference captions one image at a time (the public code has no batching), compiled or not: its images/s"
        " is the same at every batch size.",
        "",
        "### Peak memory (MiB) and start-up (s)",
        "",
        "| contender | peak RSS | peak CUDA (torch allocator) | load | first caption |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, res in r["contenders"].items():
        mem, start = res["memory"], res["startup"]
        cuda = f"{mem['peak_cuda_mib']:.0f}" if "peak_cuda_mib" in mem else "-"
        lines.append(
            f"| {name} | {mem['peak_rss_mib']:.0f} | {cuda} | {start['load_s']:.1f} | {start['first_caption_s']:.1f} |"
        )
    lines += [
        "",
        f"{COMPILED} compiles while it loads (its encoder and its step for every shape caption.py gives it);"
        " inductor caches compiled code on disk, so a second run loads faster.",
    ]
    lines += limits_table(r)
    lines += precision_table(r)
    lines += against_compiled(r)
    goals = goal_table(r)
    if goals:
        lines += ["", "### Goals (beam 5, glimpse on ONNX Runtime against the reference)", "", *goals]
    return "\n".join(lines) + "\n"


def limits_table(r: dict) -> list[str]:
    """Encoder and decode step of every contender at batch 1 against the lower bounds of this machine."""
    if "limits" not in r:
        return []
    work, peaks, bound = r["limits"]["work"], r["limits"]["peaks"], r["limits"]["bounds"]
    beams = list(bound["step_ms"])
    rows = [
        "",
        "### Against the machine's limits (batch 1)",
        "",
        f"This machine, {peaks['how']}: {peaks['fp32_flops'] / 1e9:.0f} GFLOP/s float32; it reads the step's weights"
        f" at {peaks['weights_bytes_per_s'] / 1e9:.1f} GB/s (memory: {peaks['memory_bytes_per_s'] / 1e9:.1f} GB/s)."
        f" The model: the encoder {work['encoder_flop'] / 1e9:.2f} GFLOP an image (a multiply-add counts 2); a step"
        f" {', '.join(f'{f / 1e6:.0f}' for f in work['step_flop'].values())} MFLOP at beam"
        f" {', '.join(map(str, beams))},"
        f" reading {work['step_weight_bytes'] / 1e6:.1f} MB of weights (step.onnx's initializers, less the tables it"
        " gathers rows of). Lower bounds: the encoder at peak FLOP/s; a step at the slower of its FLOPs at peak and"
        " its weights read once. In brackets: the measured time over the bound. A shared machine measures its"
        " kernels below its peak: a contender can come in under the bound. At any batch size the encoder alone at"
        f" peak caps throughput at {1e3 / bound['encoder_ms']:.1f} images/s.",
        "",
        "| contender | encoder ms | " + " | ".join(f"ms/step, beam {b}" for b in beams) + " |",
        "|---|---:|" + "---:|" * len(beams),
        "| lower bound | "
        + f"{bound['encoder_ms']:.1f} | "
        + " | ".join(f"{bound['step_ms'][b]:.2f}" for b in beams)
        + " |",
    ]
    for name, res in r["contenders"].items():
        lat = res["latency"]
        enc = statistics.median(t["encoder_ms"] for t in lat.values())
        cells = [f"{enc:.1f} ({enc / bound['encoder_ms']:.1f}x)"]
        for b in beams:
            step = lat[b]["decode_ms"] / lat[b]["steps"]
            cells.append(f"{step:.2f} ({step / bound['step_ms'][b]:.1f}x)")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def against_compiled(r: dict) -> list[str]:
    """Where glimpse on ONNX Runtime is not ahead of the compiled reference: each latency and throughput point."""
    comp, ours = r["contenders"].get(COMPILED), r["contenders"].get("onnxruntime")
    if not comp or not ours:
        return []
    behind = [
        f"latency at beam {b} ({ours['latency'][b]['p50_ms']:.1f} against {t['p50_ms']:.1f} ms)"
        for b, t in comp["latency"].items()
        if ours["latency"][b]["p50_ms"] >= t["p50_ms"]
    ] + [
        f"throughput at batch {b} ({ours['throughput'][b]:.2f} against {t:.2f} images/s)"
        for b, t in comp["throughput"].items()
        if ours["throughput"][b] <= t
    ]
    verdict = (
        "ahead at every measured point (p50 latency at each beam, throughput at each batch)"
        if not behind
        else "not ahead at: " + "; ".join(behind)
    )
    return ["", "### Against torch.compile", "", f"glimpse on ONNX Runtime against {COMPILED}: {verdict}."]


def precision_table(r: dict) -> list[str]:
    """Each fp16/int8 contender against fp32 ONNX Runtime: time, and fp32's time over it (>1: faster)."""
    fp32, c = r["contenders"].get("onnxruntime"), r["contenders"]
    others = [n for n in c if n.startswith("onnxruntime-")]
    if not fp32 or not others:
        return []
    beam, batch = max(fp32["latency"]), r["settings"]["batches"][-1]
    rows = [
        "",
        f"### ONNX Runtime by precision (beam {beam} at batch 1; throughput at batch {batch}, beam"
        f" {r['settings']['throughput_beam']}); in brackets fp32's time over this one's",
        "",
        "| graphs | encoder ms | decode ms | p50 ms | images/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ["onnxruntime", *others]:
        t, tp = c[name]["latency"][beam], c[name]["throughput"][batch]
        cells = [f"{t[k]:.1f} ({fp32['latency'][beam][k] / t[k]:.2f}x)" for k in ("encoder_ms", "decode_ms", "p50_ms")]
        cells.append(f"{tp:.2f} ({tp / fp32['throughput'][batch]:.2f}x)")
        rows.append(f"| {name.partition('-')[2] or 'fp32'} | " + " | ".join(cells) + " |")
    return rows


def goal_table(r: dict) -> list[str]:
    ref = r["contenders"].get("reference")
    if r["model"] != "tutorial" or not ref or 5 not in ref["latency"]:  # the goals are the tutorial-size model's
        return []
    rows = ["| goal | contender | target | measured | met |", "|---|---|---:|---:|---|"]
    for label, key, targets in GOALS:
        for name, target in targets.items():
            ours = r["contenders"].get(name)
            if not ours or 5 not in ours["latency"] or (key == "throughput32" and 32 not in ours["throughput"]):
                continue
            if key == "throughput32":
                got = ours["throughput"][32] / ref["throughput"][32]
            else:
                got = ref["latency"][5][key] / ours["latency"][5][key]
            rows.append(f"| {label} | {name} | {target:.0f}x | {got:.1f}x | {'yes' if got >= target else 'no'} |")
    return rows if len(rows) > 2 else []


def _ratio(reference_value, value) -> str:
    return f"{reference_value / value:.1f}x" if reference_value else "-"


def plot(r: dict, out: Path) -> Path | None:
    """Latency of a batch and throughput against batch size, one line per contender."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None  # the tables are the results; the figure is a convenience
    batches = r["settings"]["batches"]
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(11, 4))
    for name, res in r["contenders"].items():
        tp = [res["throughput"][b] for b in batches]
        lat.plot(batches, [b / t * 1e3 for b, t in zip(batches, tp)], marker="o", label=name)
        thr.plot(batches, tp, marker="o", label=name)
    for ax, title in ((lat, "latency of a batch (ms)"), (thr, "throughput (images/s)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"sat, {r['model']} model, beam {r['settings']['throughput_beam']}, {r['settings']['device']}")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
