"""``glimpse bench``: the benchmark suite (glimpse.bench.run)."""

from __future__ import annotations

from pathlib import Path

from glimpse.cli.base import Tool, add_device_argument, add_threads_argument, log


class Bench(Tool):
    """measure captioning latency, throughput and memory against the tutorial's reference

    Run the benchmark suite: the tutorial's caption.py (eager PyTorch, one image at a time), the same loop under
    torch.compile, glimpse's torch backend and glimpse on ONNX Runtime, each in its own process on the same device.
    Prints a table and writes JSON, markdown and a PNG plot; every figure is also a ratio to the reference and to
    the compiled reference measured in the same run, and on a CPU the encoder and a decode step are set against
    this machine's limits (its FLOP/s and memory bandwidth, measured in the same run).
    """

    name = "bench"
    examples = (
        "glimpse bench",
        "glimpse bench --model demo --images 20",
        "glimpse bench --device cuda",
        "glimpse bench --model my-bundle --contenders onnxruntime --batches 1 8 32",
    )

    def add_arguments(self, b):
        from glimpse.bench.run import CONTENDERS, GPU_CONTENDERS, PRECISION_CONTENDERS  # numpy only

        b.add_argument(
            "--model",
            default="tutorial",
            help="tutorial (default: ResNet-101, 512/512/512, 9,490 words, random weights), demo (the packaged"
            " demo model), or a sat bundle directory",
        )
        add_device_argument(b)
        b.add_argument(
            "--contenders",
            nargs="+",
            choices=CONTENDERS + PRECISION_CONTENDERS + GPU_CONTENDERS,
            help="what to measure: the tutorial's loop (eager, and compiled: reference-compiled), glimpse on torch,"
            " glimpse on ONNX Runtime in fp32/fp16/int8,"
            " and on CUDA glimpse on torch with CUDA graphs and on TensorRT engines (default all that can run here;"
            " the fp16/int8 graphs are made for the tutorial and demo models, and used for a bundle directory where"
            " glimpse quantize made them)",
        )
        b.add_argument(
            "--beams", nargs="+", type=int, default=[1, 3, 5], help="beam widths for latency (default 1 3 5)"
        )
        b.add_argument(
            "--batches", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32, 64], help="batch sizes for throughput"
        )
        b.add_argument("--throughput-beam", type=int, default=5, help="beam width of the throughput runs (default 5)")
        b.add_argument("--images", type=int, default=12, help="test scenes timed per beam at batch 1 (default 12)")
        add_threads_argument(b)
        b.add_argument("--compile", action="store_true", help="torch contender: torch.compile each graph")
        b.add_argument(
            "--no-reference-compiled",
            dest="reference_compiled",
            action="store_false",
            help="leave out the tutorial's loop under torch.compile (its compilation takes minutes)",
        )
        b.add_argument(
            "--out", default="benchmarks/results", help="directory for the results (default benchmarks/results)"
        )
        b.add_argument("--cache", default="runs/bench", help="directory for the exported bundles (default runs/bench)")

    def run(self, args):
        from glimpse.bench import run as bench

        bench.run(
            args.model,
            out=Path(args.out),
            cache=Path(args.cache),
            device=args.device,
            contenders=args.contenders and tuple(args.contenders),
            beams=tuple(args.beams),
            batches=tuple(args.batches),
            images=args.images,
            throughput_beam=args.throughput_beam,
            threads=args.threads,
            compile=args.compile,
            reference_compiled=args.reference_compiled,
            log=log,
        )
