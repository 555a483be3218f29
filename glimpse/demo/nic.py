"""The demo's Show and Tell captioner: the packaged files (the decoder, the encoder's linear and BatchNorm over
the demo captioner's frozen ResNet, the vocabulary) imported and exported like a released checkpoint, then
run on the held-out test scenes with ONNX Runtime, scored, and checked token for token against sample.py's
greedy loop on the reference modules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from glimpse.bundle import Bundle, sha256_of
from glimpse.demo.bundles import cached_bundle
from glimpse.demo.train_nic import DECODER, HEAD, VOCAB, encoder_file
from glimpse.demo.train_sat import CHECKPOINT
from glimpse.errors import GlimpseError

SIDE = 224  # sample.py's input size: the scenes are rendered at it


def nic_bundle(checkpoints: Path, out: Path, log: Callable[[str], None]) -> Bundle:
    from glimpse.families.nic.checkpoint import import_nic
    from glimpse.families.nic.export import export_nic

    decoder, vocab, bundle = checkpoints / DECODER, checkpoints / VOCAB, out / "nic-bundle"
    if not decoder.is_file():
        raise GlimpseError(f"{decoder}: no demo Show and Tell checkpoint (make one: glimpse demo train --models nic)")

    def export(source: dict) -> Path:
        encoder = encoder_file(checkpoints, out)
        log(f"importing {encoder.name}, {decoder} and {vocab} and exporting them to {bundle}")
        model, words, preprocess = import_nic(encoder, decoder, vocab)
        source = {"encoder": encoder.name, "decoder": decoder.name, "vocab": vocab.name, **source}
        return export_nic(model, words, preprocess, bundle, force=True, source=source, log=log)

    shas = {"sha256": sha256_of(decoder), "head_sha256": sha256_of(checkpoints / HEAD)}
    return cached_bundle(bundle, shas | {"cnn_sha256": sha256_of(checkpoints / CHECKPOINT)}, export, log)


def run(out: Path, checkpoints: Path, count: int, beam: int, threads, log: Callable[[str], None]) -> dict:
    """Caption ``count`` test scenes at ``beam`` and greedily; scores, and greedy tokens against sample.py's."""
    import torch

    from glimpse.demo import scenes
    from glimpse.demo.metrics import caption_scores
    from glimpse.families.nic.checkpoint import import_nic
    from glimpse.families.nic.pipeline import NICPipeline
    from glimpse.families.nic.reference import sample

    bundle = nic_bundle(checkpoints, out, log)
    test = scenes.scenes("test", count)
    images = [s.image(SIDE) for s in test]
    log(f"captioning {count} test scenes with Show and Tell on ONNX Runtime (CPU), beam {beam} and greedy")
    pipe = NICPipeline(bundle, threads=threads)
    caps, greedy = (pipe(images, beam_size=b, batch_size=50) for b in (beam, 1))
    model, words, preprocess = import_nic(encoder_file(checkpoints, out), checkpoints / DECODER, checkpoints / VOCAB)
    pixels = torch.from_numpy(np.stack([preprocess(im) for im in images]))
    want = [row for i in range(0, count, 50) for row in sample(model, pixels[i : i + 50], words.special["end"])]
    same = sum(c.tokens == w for c, w in zip(greedy, want))
    references = [s.captions for s in test]
    scores = caption_scores([c.caption for c in caps], references)
    print(
        f"\nShow and Tell on {count} test scenes (beam {beam}): " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items())
    )
    print(f"  {scenes.pretty(caps[0].caption)}  (test scene 0)")
    print(f"  greedy tokens equal to sample.py's on the reference modules: {same}/{count}")
    greedy_scores = caption_scores([c.caption for c in greedy], references)
    return {**scores, "greedy": greedy_scores, "identical_to_reference": same, "beam_size": beam}
