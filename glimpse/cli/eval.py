"""``glimpse eval``: a demo model's fp16/int8 graphs against its fp32 ones on the demo's test scenes."""

from __future__ import annotations

from pathlib import Path

from glimpse.cli.base import PRECISIONS, Tool, add_bundle_argument, add_threads_argument, log


class Eval(Tool):
    """accuracy of a demo model's fp16/int8 graphs (captioner, VQA, matching) against fp32 on the test scenes

    Run the demo's held-out test scenes through the fp32 graphs and through each --precision. A captioner (sat,
    or m2 on the scenes' grid cells): captions identical to fp32's, BLEU-4 and CIDEr and their change from fp32,
    and the max/mean error of the step's log-probabilities on the inputs fp32 decoding fed it. A VQA model (saaa,
    san, rdan): every question of the scenes, top-1 answers identical to fp32's, accuracy and its change, and the
    max/mean error of the answer probabilities. A matching model (mdan): R@1/5/10 both ways, the share of first
    results equal to fp32's and the embeddings' error. The bundle must be a model of the demo scenes (glimpse
    demo's, or one trained by glimpse demo train).
    """

    name = "eval"
    shares_threads = True
    examples = (
        "glimpse quantize runs/demo/sat-bundle --precision fp16 int8 && glimpse eval runs/demo/sat-bundle"
        " --precision fp16 int8",
        "glimpse eval runs/demo/san-bundle",
    )

    def add_arguments(self, v):
        add_bundle_argument(v)
        v.add_argument("--precision", nargs="+", choices=PRECISIONS, default=["fp16", "int8"])
        v.add_argument("--scenes", type=int, default=500, help="test scenes (default 500)")
        v.add_argument("--beam-size", type=int, help="captioners: beam width (default the demo's: 3 for sat, 5 for m2)")
        add_threads_argument(v)
        v.add_argument("--json", metavar="FILE", help="also write the figures as JSON")

    def run(self, args):
        from glimpse.bundle import Bundle
        from glimpse.demo.evaluate import evaluate, table, write

        results = evaluate(Bundle(args.bundle), args.precision, args.scenes, args.beam_size, args.threads, log=log)
        print(table(results), end="")
        if args.json:
            write(results, Path(args.json))
            log(f"wrote {args.json}")
