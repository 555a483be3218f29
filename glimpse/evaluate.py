"""``glimpse eval``: what fp16 and int8 cost in accuracy, measured on the demo's held-out test scenes.

For a captioner trained on the demo scenes: captions of every precision against fp32's (token for
token), BLEU-4 and CIDEr against the five references and their change from fp32, and the error of the
step's log-probabilities on the very inputs fp32 decoding fed it (so the error is the graph's own,
not one compounded over a diverging search).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from glimpse.bundle import Bundle
from glimpse.errors import GlimpseError

LOGIT_IMAGES = 50  # test scenes whose fp32 decoding supplies the step inputs of the logit error


def evaluate(
    bundle: Bundle,
    precisions: list[str],
    count: int = 500,
    beam_size: int = 3,
    threads: int | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """-> {"scenes", "beam_size", "precisions": {precision: figures}}, fp32 first."""
    from glimpse.demo import scenes
    from glimpse.demo.metrics import caption_scores
    from glimpse.export.precision import recorded_feeds
    from glimpse.runtime.caption import CaptionPipeline
    from glimpse.runtime.session import OnnxRuntimeSession

    if bundle.family != "sat":
        raise GlimpseError(f"{bundle.path}: glimpse eval knows captioners ('sat'), not '{bundle.family}' yet")
    test = scenes.scenes("test", count)
    unknown = {w for s in test for c in s.captions for w in c.split()} - set(bundle.vocab.itos)
    if unknown:
        raise GlimpseError(
            f"{bundle.path}: not a model of the demo scenes ({len(unknown)} of their words, e.g. "
            f"'{sorted(unknown)[0]}', are not in its vocabulary); train one with glimpse demo train"
        )
    for p in precisions:
        bundle.graph_path("step", p)  # a clear error now if glimpse quantize has not made it
    side = bundle.preprocess.output_size[0]
    images = [s.image(side) for s in test]
    references = [s.captions for s in test]
    step_feeds = recorded_feeds(bundle, np.stack([bundle.preprocess(im) for im in images[:LOGIT_IMAGES]]))["step"]
    fp32_step = OnnxRuntimeSession(bundle.graph_path("step"), threads=threads)

    results: dict = {"scenes": count, "beam_size": beam_size, "precisions": {}}
    fp32 = None
    for p in ["fp32", *(p for p in precisions if p != "fp32")]:
        log(f"captioning {count} test scenes with the {p} graphs, beam {beam_size}")
        captions = CaptionPipeline(bundle, threads=threads, precision=p)(images, beam_size=beam_size, batch_size=50)
        figures = caption_scores([c.caption for c in captions], references)
        fp32 = fp32 or (captions, figures)
        figures["agree_with_fp32"] = sum(a.tokens == b.tokens for a, b in zip(captions, fp32[0]))
        for metric in ("BLEU-4", "CIDEr"):
            figures[f"{metric} change"] = figures[metric] - fp32[1][metric]
        if p != "fp32":
            step = OnnxRuntimeSession(bundle.graph_path("step", p), threads=threads)
            diffs = [np.abs(step.run(f)["logprobs"] - fp32_step.run(f)["logprobs"]) for f in step_feeds]
            figures["logprob_error_max"] = float(max(d.max() for d in diffs))
            figures["logprob_error_mean"] = float(np.mean([d.mean() for d in diffs]))
        results["precisions"][p] = figures
    return results


def table(results: dict) -> str:
    n = results["scenes"]
    lines = [
        f"demo test split: {n} scenes, beam {results['beam_size']}; step log-prob error on the inputs of"
        f" {LOGIT_IMAGES} scenes' fp32 decoding",
        "",
        "| precision | captions = fp32 | BLEU-4 | change | CIDEr | change | log-prob error max | mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p, f in results["precisions"].items():
        err = f"{f['logprob_error_max']:.2e} | {f['logprob_error_mean']:.2e}" if "logprob_error_max" in f else "- | -"
        lines.append(
            f"| {p} | {f['agree_with_fp32']}/{n} | {f['BLEU-4']:.4f} | {100 * f['BLEU-4 change']:+.2f} pt"
            f" | {f['CIDEr']:.3f} | {f['CIDEr change']:+.3f} | {err} |"
        )
    return "\n".join(lines) + "\n"


def write(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
