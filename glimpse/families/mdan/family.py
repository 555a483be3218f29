"""m-DAN: what glimpse knows of it, for the registry (glimpse.families)."""

from __future__ import annotations

import argparse
from pathlib import Path

from glimpse.families.base import Family, add_cnn_arguments


class MDAN(Family):
    name, task = "mdan", "match"
    title = "Dual Attention Networks for matching, m-DAN (glimpse's canonical layout)"
    description = (
        "Export an m-DAN image-text matching model: encoder.onnx (image -> grid), image_embed.onnx (grid -> z_v,"
        " glimpse maps) and text_embed.onnx (tokens, lengths -> z_u, word weights); the similarity of an image"
        " and a sentence is <z_v, z_u>."
    )
    example = "glimpse export mdan --checkpoint mdan.pth --cnn resnet152.pth --out mdan-bundle"

    def add_import_arguments(self, parser):
        parser.add_argument(
            "--checkpoint", required=True, help="{'weights', 'vocab'[, 'config']} (docs/families/mdan.md)"
        )
        add_cnn_arguments(parser, caffe=False)
        parser.add_argument("--max-sentence-length", type=int, default=40, help="longer sentences are cut (default 40)")

    def export(self, args: argparse.Namespace, images, log) -> Path:
        from glimpse.families.mdan.checkpoint import import_mdan
        from glimpse.families.mdan.export import export_mdan

        log(f"importing {args.checkpoint} and {args.cnn}")
        model, vocab, preprocess = import_mdan(
            args.checkpoint, args.cnn, args.caffe, args.image_size, args.max_sentence_length, args.central_fraction
        )
        c = model.config
        log(f"mdan: {c.backbone} at {c.image_size}, {len(vocab) - 1} words, embeddings of {c.embedding_size}")
        source = {"checkpoint": Path(args.checkpoint).name, "cnn": Path(args.cnn).name}
        options = {"force": args.force, "tolerance": args.tolerance, "source": source, "log": log}
        return export_mdan(model, vocab, preprocess, args.out, images=images(preprocess), **options)

    def pipeline(self, bundle, **options):
        from glimpse.families.mdan.pipeline import MatchPipeline

        return MatchPipeline(bundle, **options)

    def calibrate(self, pipe, inputs, texts, beam, offset):
        pipe.sessions["image_embed"].run(pipe.sessions["encoder"].run({"image": inputs}))
        pipe.embed_texts(texts)


FAMILY = MDAN()
