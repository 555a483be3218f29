"""M2: what glimpse knows of it, for the registry (glimpse.families)."""

from __future__ import annotations

import argparse
from pathlib import Path

from glimpse.families.base import Family


class MeshedMemory(Family):
    name, task, reads, demo_beam = "m2", "caption", "regions", 5
    title = "Meshed-Memory Transformer (aimagelab/meshed-memory-transformer)"
    description = (
        "Export an M2 captioner: encoder.onnx (detection regions -> the encoder's three levels and mask),"
        " init.onnx (levels -> each decoder layer's cross-attention keys and values, once per image) and"
        " step.onnx (one token for K beams per image over fixed-size self-attention caches and a position), each"
        " checked against the public stateful decoding."
    )
    example = "glimpse export m2 --checkpoint meshed_memory_transformer.pth --vocab vocab.pkl --out m2-bundle"

    def add_import_arguments(self, parser):
        parser.add_argument(
            "--checkpoint",
            required=True,
            help="meshed_memory_transformer.pth or a train.py save ({'state_dict', RNG states, ...}; loaded through"
            " an allow-list: no code from it runs)",
        )
        parser.add_argument(
            "--vocab",
            required=True,
            help="the repository's vocab.pkl (only its itos list is read), or a JSON list of words",
        )
        parser.add_argument("--heads", type=int, default=8, help="attention heads (default 8, the public model's)")
        parser.add_argument(
            "--regions",
            type=int,
            default=50,
            help="detections per image: fewer are zero-padded, more cut (default 50, the public max_detections)",
        )

    def export(self, args: argparse.Namespace, images, log) -> Path:
        from glimpse.families.m2.checkpoint import import_m2
        from glimpse.families.m2.export import export_m2

        log(f"importing {args.checkpoint} and {args.vocab}")
        model, vocab = import_m2(args.checkpoint, args.vocab, args.heads, args.regions)
        c = model.config
        log(f"m2: {c.layers} layers, width {c.d_model}, {c.heads} heads, {c.memory} memory slots, {c.vocab_size} words")
        source = {"checkpoint": Path(args.checkpoint).name, "vocab": Path(args.vocab).name}
        return export_m2(model, vocab, args.out, force=args.force, tolerance=args.tolerance, source=source, log=log)

    def pipeline(self, bundle, **options):
        from glimpse.families.m2.pipeline import M2Pipeline

        return M2Pipeline(bundle, **options)

    def calibrate(self, pipe, inputs, texts, beam, offset):
        pipe.decode(inputs, beam, min(20, pipe.config["max_len"]))  # the public test script's 20 steps


FAMILY = MeshedMemory()
