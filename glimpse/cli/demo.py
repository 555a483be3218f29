"""``glimpse demo`` and ``glimpse demo train``: the packaged demo models on generated scenes."""

from __future__ import annotations

import argparse
from pathlib import Path

from glimpse.cli.base import Tool, add_threads_argument, log


class Demo(Tool):
    """run the packaged demo models on generated scenes: captions, answers, retrieval; scored and timed

    Import the packaged demo checkpoint (a Show-Attend-Tell model trained on generated scenes of coloured shapes,
    saved in the tutorial's format), export it to a bundle (once; reused), caption held-out test scenes with ONNX
    Runtime on the CPU, print them beside their reference captions with BLEU and CIDEr (pycocoevalcap), check the
    torch backend gives the same captions, and time glimpse against the tutorial's caption.py loop. Then the
    packaged VQA models (naive, saaa, san, rdan; pytorch-vqa's checkpoint format) answer every question of those
    scenes (accuracy per kind of question), the m-DAN matching model retrieves them by their captions (R@1/5/10
    both ways), each checked against the torch backend, and M2 and Show and Tell caption them, each checked
    against its public decoding. A last table sets the models with attention beside those without.
    """

    name = "demo"
    examples = (
        "glimpse demo",
        "glimpse demo --attention-plot attention.png",
        "glimpse demo train --out my-demo && glimpse demo --checkpoints my-demo",
    )

    def add_arguments(self, d):
        d.add_argument(
            "--out", default="glimpse-demo", help="directory for the bundle and scene images (default glimpse-demo)"
        )
        d.add_argument(
            "--checkpoints", help="a directory written by 'glimpse demo train' (default: the packaged model)"
        )
        d.add_argument(
            "--scenes", type=int, default=500, help="held-out test scenes to caption and score (default 500)"
        )
        d.add_argument("--show", type=int, default=8, help="scenes to print beside their references (default 8)")
        d.add_argument("--beam-size", "-b", type=int, default=3, help="beam width (default 3)")
        d.add_argument(
            "--speed-scenes",
            type=int,
            default=20,
            help="scenes to time at batch 1 against the reference (default 20; 0 skips)",
        )
        d.add_argument("--attention-plot", metavar="OUT.png", help="write the first scene's attention maps")
        d.add_argument(
            "--vqa",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="also answer the scenes' questions with the demo VQA models (naive, saaa, san, rdan), retrieve them by"
            " their captions with the demo m-DAN and caption them with the demo M2 (default: yes)",
        )
        add_threads_argument(d)
        DemoTrain().add_to(d.add_subparsers(dest="demo_command", metavar="train"))

    def run(self, args):
        from glimpse.demo import run
        from glimpse.demo.bundles import PACKAGED

        run.run(
            Path(args.out),
            checkpoints=Path(args.checkpoints) if args.checkpoints else PACKAGED,
            count=args.scenes,
            show=args.show,
            beam_size=args.beam_size,
            speed_scenes=args.speed_scenes,
            attention_plot=Path(args.attention_plot) if args.attention_plot else None,
            threads=args.threads,
            vqa=args.vqa,
            log=log,
        )


class DemoTrain(Tool):
    """train the demo models from scratch (about 40 minutes on 2 CPU cores)

    Train the demo Show-Attend-Tell captioner on freshly generated scenes as the tutorial's train.py trains, and
    write the checkpoint with the best validation BLEU-4 in the tutorial's layout (BEST_checkpoint_shapes.pth.tar,
    WORDMAP_shapes.json); then the VQA models saaa, san, rdan and naive on the scenes' questions over the captioner's
    frozen CNN, as pytorch-vqa's train.py trains, each written as pytorch-vqa writes its checkpoints
    (<family>_shapes.pth); then the m-DAN matching model on the scenes' captions (mdan_shapes.pth); then the
    Meshed-Memory Transformer on the grid cells of the captioner's CNN as its regions (m2_shapes.pth,
    m2_vocab.json); then Show and Tell over the captioner's frozen CNN, as yunjey's train.py trains
    (nic_decoder_shapes.ckpt, nic_head_shapes.ckpt, nic_vocab_shapes.pkl).
    """

    name = "train"
    examples = (
        "glimpse demo train --out my-demo",
        "glimpse demo train --out my-demo --models saaa (the VQA models need the captioner in --out)",
    )

    def add_arguments(self, t):
        from glimpse.demo.train import MODELS

        t.add_argument("--out", required=True, help="directory to write the checkpoints into")
        t.add_argument(
            "--models",
            nargs="+",
            choices=MODELS,
            default=list(MODELS),
            help="which to train (default all; the captioner first, its CNN feeds the others)",
        )
        t.add_argument(
            "--steps", type=int, help="optimizer steps (default 1500 sat, 3000 VQA, 2000 mdan, 3000 m2, 5000 nic)"
        )
        t.add_argument("--batch-size", type=int, help="scenes (sat 32, mdan 64) or questions (VQA 128) per step")
        t.add_argument("--val-every", type=int, help="validate and keep the best every N steps (default 250 / 500)")
        t.add_argument("--seed", type=int, help="random seed of the initialisation and data order (default 0)")

    def run(self, args):
        from glimpse.demo.train import train

        keys = ("steps", "batch_size", "val_every", "seed")
        train(Path(args.out), args.models, {k: getattr(args, k) for k in keys if getattr(args, k) is not None}, log)
