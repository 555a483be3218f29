"""Show, Attend and Tell: what glimpse knows of it, for the registry (glimpse.families)."""

from __future__ import annotations

import argparse
from pathlib import Path

from glimpse.families.base import Family


class ShowAttendTell(Family):
    name, task = "sat", "caption"
    compiled_reference = True
    title = "Show, Attend and Tell (sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning)"
    description = (
        "Export a Show-Attend-Tell captioner: encoder.onnx (image -> features), init.onnx (features -> attention"
        " projection, h0, c0) and step.onnx (one decode step for K beams per image)."
    )
    example = (
        "glimpse export sat --checkpoint BEST_checkpoint_coco_5_cap_per_img_5_min_word_freq.pth.tar"
        " --word-map WORDMAP_coco_5_cap_per_img_5_min_word_freq.json --out sat-bundle"
    )

    def add_import_arguments(self, parser):
        parser.add_argument(
            "--checkpoint",
            required=True,
            help="the tutorial's .pth.tar (whole pickled modules, loaded through an allow-list: no code from it"
            " runs), or a state dict with encoder./decoder. keys",
        )
        parser.add_argument("--word-map", required=True, help="the tutorial's WORDMAP_*.json")
        parser.add_argument(
            "--image-size",
            type=int,
            default=256,
            help="side images were resized to in training (default 256, the tutorial's; checkpoints do not say)",
        )
        parser.add_argument(
            "--fused-beam",
            type=int,
            default=5,
            metavar="K",
            help="slots of step_fused.onnx, the step with the beam selection inside (GPU serving), which serves"
            " beam sizes up to K (default 5; 0: no fused step)",
        )

    def export(self, args: argparse.Namespace, images, log) -> Path:
        from glimpse.families.sat.checkpoint import import_sat
        from glimpse.families.sat.export import export_sat

        log(f"importing {args.checkpoint}")
        model, vocab, preprocess = import_sat(args.checkpoint, args.word_map, args.image_size)
        c = model.config
        log(
            f"sat: {c.backbone}, attention {c.attention_dim}, embedding {c.embed_dim}, decoder {c.decoder_dim},"
            f" vocabulary {c.vocab_size}"
        )
        source = {"checkpoint": Path(args.checkpoint).name, "word_map": Path(args.word_map).name}
        return export_sat(
            model,
            vocab,
            preprocess,
            args.out,
            images=images(preprocess),
            force=args.force,
            tolerance=args.tolerance,
            fused_beam=args.fused_beam,
            log=log,
            source=source,
        )

    def pipeline(self, bundle, **options):
        from glimpse.families.sat.pipeline import CaptionPipeline

        return CaptionPipeline(bundle, **options)

    def reference(self, bundle, device, threads, compiled=False):
        from glimpse.families.sat.contenders import reference

        return reference(bundle, device, threads, compiled)

    def calibrate(self, pipe, inputs, texts, beam, offset):
        pipe.decode(inputs, beam, fused=False)
        if "step_fused" in pipe.sessions:
            pipe.decode(inputs, beam, fused=True)


FAMILY = ShowAttendTell()
