"""Show and Tell: what glimpse knows of it, for the registry (glimpse.families)."""

from __future__ import annotations

import argparse
from pathlib import Path

from glimpse.families.base import Family


class ShowAndTell(Family):
    name, task = "nic", "caption"
    title = "Show and Tell, no attention (yunjey/pytorch-tutorial image_captioning)"
    description = (
        "Export a Show and Tell captioner: encoder.onnx (image -> the image's embedding), init.onnx (the"
        " embedding as the LSTM's first input -> the first token's log-probs and the state after it, once per"
        " image) and step.onnx (one decode step for K beams per image)."
    )
    example = (
        "glimpse export nic --encoder encoder-5-3000.pkl --decoder decoder-5-3000.pkl --vocab vocab.pkl"
        " --out nic-bundle"
    )

    def add_import_arguments(self, parser):
        parser.add_argument(
            "--encoder",
            required=True,
            help="the EncoderCNN state dict train.py saves (encoder-5-3000.pkl or .ckpt; read through an"
            " allow-list: no code from it runs)",
        )
        parser.add_argument("--decoder", required=True, help="the DecoderRNN state dict (decoder-5-3000.pkl or .ckpt)")
        parser.add_argument(
            "--vocab",
            required=True,
            help="build_vocab.py's vocab.pkl (its word2idx is read), or a JSON list of words in id order",
        )

    def export(self, args: argparse.Namespace, images, log) -> Path:
        from glimpse.families.nic.checkpoint import import_nic
        from glimpse.families.nic.export import export_nic

        log(f"importing {args.encoder}, {args.decoder} and {args.vocab}")
        model, vocab, preprocess = import_nic(args.encoder, args.decoder, args.vocab)
        c = model.config
        log(
            f"nic: {c.backbone}, embedding {c.embed_size}, {c.num_layers} LSTM layer(s) of {c.hidden_size},"
            f" vocabulary {c.vocab_size}"
        )
        source = {name: Path(getattr(args, name)).name for name in ("encoder", "decoder", "vocab")}
        options = {"force": args.force, "tolerance": args.tolerance, "source": source, "log": log}
        return export_nic(model, vocab, preprocess, args.out, images=images(preprocess), **options)

    def pipeline(self, bundle, **options):
        from glimpse.families.nic.pipeline import NICPipeline

        return NICPipeline(bundle, **options)

    def calibrate(self, pipe, inputs, texts, beam, offset):
        pipe.decode(inputs, beam)

    def reference(self, bundle, device, threads):
        from glimpse.families.nic.contenders import reference

        return reference(bundle, device, threads)


FAMILY = ShowAndTell()
