"""The VQA families saaa, san, rdan and naive: what glimpse knows of them, for the registry (glimpse.families)."""

from __future__ import annotations

import argparse
from pathlib import Path

from glimpse.families.base import Family, add_cnn_arguments


class VQAFamily(Family):
    task = "vqa"

    def __init__(self, name: str, title: str, caffe: bool = False):
        self.name, self.title, self.caffe = name, title, caffe
        self.description = (
            f"Export a {title} VQA model: encoder.onnx (image -> grid), question.onnx (tokens, lengths -> the"
            " question's encoding; the lengths act as the packed batch did) and head.onnx (grid, question ->"
            " answer logits and glimpse maps)."
        )
        self.example = (
            f"glimpse export {name} --checkpoint logs/2017-08-04_00.55.19.pth --cnn resnet152-95e0e999.pth"
            " --out vqa-bundle"
        )

    def add_import_arguments(self, parser):
        parser.add_argument(
            "--checkpoint",
            required=True,
            help="a checkpoint as pytorch-vqa's train.py writes it ({'weights', 'vocab', ...}; loaded through"
            " an allow-list: no code from it runs)",
        )
        add_cnn_arguments(parser, self.caffe)
        parser.add_argument(
            "--max-question-length",
            type=int,
            default=23,
            help="longest question the model reads; longer ones are cut with a warning (default 23)",
        )

    def export(self, args: argparse.Namespace, images, log) -> Path:
        from glimpse.families.vqa.checkpoint import import_vqa
        from glimpse.families.vqa.export import export_vqa

        log(f"importing {args.checkpoint} and {args.cnn}")
        model, questions, answers, preprocess = import_vqa(
            self.name,
            args.checkpoint,
            args.cnn,
            args.caffe,
            args.image_size,
            args.max_question_length,
            args.central_fraction,
        )
        c = model.config
        log(
            f"{self.name}: {c.backbone}{' (Caffe)' if c.caffe else ''} at {c.image_size}, {len(questions) - 1}"
            f" question words, {len(answers)} answers"
        )
        source = {"checkpoint": Path(args.checkpoint).name, "cnn": Path(args.cnn).name}
        options = {"force": args.force, "tolerance": args.tolerance, "source": source, "log": log}
        return export_vqa(
            model, self.name, questions, answers, preprocess, args.out, images=images(preprocess), **options
        )

    def pipeline(self, bundle, **options):
        from glimpse.families.vqa.pipeline import VQAPipeline

        return VQAPipeline(bundle, **options)

    def calibrate(self, pipe, inputs, texts, beam, offset):
        grids = pipe.sessions["encoder"].run({"image": inputs})["grid"]
        pipe.answer_batch(grids, [pipe.read(texts[(offset + n) % len(texts)]).ids for n in range(len(grids))])


SAAA = VQAFamily("saaa", "Show, Ask, Attend, and Answer (Cyanogenoid/pytorch-vqa)", caffe=True)
SAN = VQAFamily("san", "Stacked Attention Networks (glimpse's canonical layout)")
RDAN = VQAFamily("rdan", "Dual Attention Networks, r-DAN (glimpse's canonical layout)")
NAIVE = VQAFamily("naive", "Naive VQA, no attention (image vector x question LSTM, pytorch-vqa's checkpoint layout)")
