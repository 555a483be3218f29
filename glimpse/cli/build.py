"""``glimpse build``: TensorRT engines from a bundle's graphs."""

from __future__ import annotations

from glimpse.cli.base import PRECISIONS, Tool, add_bundle_argument, log


class Build(Tool):
    """build TensorRT engines from a bundle's graphs (needs TensorRT and an NVIDIA GPU)

    Parse each graph of the bundle at each --precision with TensorRT's ONNX parser (strongly typed: the precision
    is the graph's own, made by glimpse quantize), with one optimisation profile over the image and beam axes
    (glimpse.runtime.profiles), and write the engines to the bundle's cache, engines/sm<compute
    capability>-<GPU name>-trt<version>/<graph>.<precision>.<sha256>.plan, with a timing cache. Engines already
    built for this GPU model, TensorRT version and graph are kept. A graph TensorRT cannot parse or build is
    named in one line. Then: glimpse caption BUNDLE IMAGE --backend tensorrt --device cuda.
    """

    name = "build"
    examples = (
        "glimpse quantize sat-bundle --precision fp16 && glimpse check sat-bundle && glimpse build sat-bundle"
        " --precision fp32 fp16",
    )

    def add_arguments(self, parser):
        add_bundle_argument(parser)
        parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=["fp32"])
        parser.add_argument("--device", default="cuda", help="the GPU to build for: cuda (the current one) or cuda:N")

    def run(self, args):
        from glimpse.bundle import Bundle
        from glimpse.runtime import tensorrt

        tensorrt.device_index(args.device)  # a device that is not a GPU, in one line
        bundle = Bundle(args.bundle)
        tensorrt.require()  # one line on a machine without TensorRT or a GPU
        for precision in args.precision:
            tensorrt.build(bundle, precision, log=log, device=args.device)
