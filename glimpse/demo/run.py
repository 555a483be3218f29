"""``glimpse demo``: the packaged demo checkpoint imported and exported like any tutorial checkpoint,
then run on held-out generated scenes with ONNX Runtime, scored, cross-checked against the torch
backend and timed against the tutorial's own decoding loop."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from glimpse.bundle import Bundle
from glimpse.demo import scenes, train_nic
from glimpse.demo.bundles import PACKAGED, sat_bundle
from glimpse.demo.train_sat import IMAGE_SIZE


def run(
    out: Path,
    checkpoints: Path = PACKAGED,
    count: int = 500,
    show: int = 8,
    beam_size: int = 3,
    speed_scenes: int = 20,
    attention_plot: Path | None = None,
    threads: int | None = None,
    vqa: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Caption ``count`` test scenes; print ``show`` of them beside the truth, the scores, the
    agreement of the two backends and the speed against the reference; then (``vqa``) answer their
    questions with the demo VQA models, retrieve them by their captions with the m-DAN and caption them
    with the demo M2. -> the figures."""
    from glimpse.demo.metrics import caption_scores
    from glimpse.families.sat.pipeline import CaptionPipeline

    out.mkdir(parents=True, exist_ok=True)
    bundle = sat_bundle(checkpoints, out / "sat-bundle", log)
    test = scenes.scenes("test", count)
    images = [s.image(IMAGE_SIZE) for s in test]
    log(f"captioning {count} held-out test scenes with ONNX Runtime (CPU), beam {beam_size}")
    pipe = CaptionPipeline(bundle, threads=threads)
    onnx = pipe(images, beam_size=beam_size, batch_size=50)
    fused = pipe(images, beam_size=beam_size, batch_size=50, fused=True)
    eager = CaptionPipeline(bundle, backend="torch", threads=threads)(images, beam_size=beam_size, batch_size=50)

    (out / "scenes").mkdir(exist_ok=True)
    for s, image, cap in list(zip(test, images, onnx))[:show]:
        name = f"scenes/test-{s.index:04d}.png"
        image.save(out / name)
        mark = "  (word for word one of the five references)" if cap.caption in s.captions else ""
        print(f"\n{name}{mark}\n  glimpse    {scenes.pretty(cap.caption)}\n  reference  {scenes.pretty(s.captions[0])}")
    if attention_plot:
        from glimpse.plot import attention_plot as plot

        cap = onnx[0]
        plot(images[0], cap.words + ["<end>"] * cap.finished, cap.alphas, attention_plot)

    scores = caption_scores([c.caption for c in onnx], [s.captions for s in test])
    identical = sum(a.tokens == b.tokens for a, b in zip(onnx, eager))
    identical_fused = sum(a.tokens == b.tokens for a, b in zip(onnx, fused))
    exact = sum(c.caption in s.captions for c, s in zip(onnx, test))
    print(
        f"\naccuracy on {count} test scenes (beam {beam_size}): " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items())
    )
    print(f"captions equal to one of the references: {exact}/{count}")
    print(f"torch backend: {identical}/{count} captions identical to ONNX Runtime's")
    print(f"fused step (beam selection inside the graph): {identical_fused}/{count} captions identical")
    figures = {"scenes": count, "beam_size": beam_size, **scores, "exact": exact, "identical_to_torch": identical}
    figures["identical_fused"] = identical_fused
    if speed_scenes:
        figures.update(speed(bundle, images[:speed_scenes], beam_size, threads))
        print(
            f"speed at batch 1, beam {beam_size}, median of {speed_scenes} scenes: the tutorial's caption.py"
            f" {figures['reference_ms']:.1f} ms/image, glimpse on ONNX Runtime {figures['glimpse_ms']:.1f} ms/image"
            f" ({figures['reference_ms'] / figures['glimpse_ms']:.1f}x)"
        )
    if attention_plot:
        print(f"attention maps of test scene 0's caption: {attention_plot}")
    if vqa:
        from glimpse.demo import m2 as m2_demo
        from glimpse.demo import matching
        from glimpse.demo import vqa as vqa_demo

        figures["vqa"] = vqa_demo.run(out, checkpoints, count, threads, log)
        figures["matching"] = matching.run(out, checkpoints, count, threads, log)
        figures["m2"] = m2_demo.run(out, checkpoints, count, threads, log)
        if (checkpoints / train_nic.DECODER).is_file():
            from glimpse.demo import nic as nic_demo

            figures["nic"] = nic_demo.run(out, checkpoints, count, beam_size, threads, log)
        print("\n" + attention_table(figures), end="")
    return figures


def attention_table(figures: dict) -> str:
    """What attention buys: the captioners and VQA models of the demo side by side on the same test scenes,
    the no-attention baselines (nic, naive) first, as markdown."""
    from glimpse.demo.vqa import KINDS

    lines = ["| model | attention | test scenes | BLEU-4 | CIDEr |", "|---|---|---|---|---|"]
    captioners = [("nic", "none", figures.get("nic")), ("sat", "soft, 4x4 grid", figures)]
    captioners.append(("m2", "meshed memory, 16 regions", figures.get("m2")))
    for name, kind, f in captioners:
        if f:
            beam = f.get("beam_size", figures["beam_size"]) if name != "m2" else 5
            lines.append(
                f"| {name} (beam {beam}) | {kind} | {figures['scenes']} | {f['BLEU-4']:.3f} | {f['CIDEr']:.3f} |"
            )
    vqa = figures.get("vqa", {}).get("families", {})
    if vqa:
        lines += ["", "| model | " + " | ".join(("all", *KINDS)) + " |", "|---" * (len(KINDS) + 2) + "|"]
        for name in sorted(vqa, key=lambda n: n != "naive"):  # the baseline first
            cells = " | ".join(f"{vqa[name][k]:.3f}" if k in vqa[name] else "-" for k in ("all", *KINDS))
            lines.append(f"| {name} | {cells} |")
    return "What attention buys (top-1 VQA accuracy by kind of question below):\n\n" + "\n".join(lines) + "\n"


def speed(bundle: Bundle, images: list, beam_size: int, threads: int | None) -> dict:
    """Median ms per image, one image at a time from its PIL image, in this process: caption.py's loop
    on the tutorial modules (eager PyTorch), then glimpse's ONNX Runtime pipeline."""
    from glimpse import families

    times = {}
    for name, key in (("reference", "reference_ms"), ("onnxruntime", "glimpse_ms")):
        caption = families.get(bundle.family).contender(name, bundle, "cpu", threads, compile=False)
        caption(images[:1], beam_size, 1)  # warm-up
        ms = []
        for image in images:
            t = time.perf_counter()
            caption([image], beam_size, 1)
            ms.append((time.perf_counter() - t) * 1e3)
        times[key] = statistics.median(ms)
    return times
