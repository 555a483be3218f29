"""``glimpse quantize``: fp16 and int8 graphs (TensorRT's, and int8 for ONNX Runtime's CPU provider) beside a
bundle's fp32 ones, checked against them."""

from __future__ import annotations

from glimpse.cli.base import Tool, add_bundle_argument, log
from glimpse.errors import GlimpseError


class Quantize(Tool):
    """write fp16 and int8 versions of a bundle's graphs, checked against fp32

    Write <graph>.fp16.onnx (onnxruntime's float16 converter; fp32 inputs/outputs; softmax, normalisations and
    reductions kept in fp32) and/or <graph>.int8.onnx (Q/DQ by onnxruntime's quantize_static with TensorRT's
    rules: symmetric int8, zero points 0, per-channel weights, float bias, only Conv/MatMul/Gemm) beside the fp32
    graphs, measure each against fp32 on the calibration inputs and record them in the manifest. The step graph
    calibrates on the states seen while decoding. An m2 bundle calibrates on detection features
    (--calibration-features) instead of images.

    int8 also writes <graph>.int8-cpu.onnx, for ONNX Runtime's CPU provider, which fuses none of the TensorRT
    graph's Q/DQ: u8s8-static (uint8 asymmetric activations, int8 per-channel weights, on the same ranges) for
    the graphs that read images, int8-dynamic (onnxruntime's quantize_dynamic) for the others; where it is no faster
    than fp32 here, the fp32 graph is kept for the CPU. The manifest's precisions.int8 is the TensorRT graph,
    precisions.int8.cpu the CPU one; --precision int8 runs the CPU one on ONNX Runtime's CPU provider.
    """

    name = "quantize"
    examples = (
        "glimpse quantize sat-bundle --precision fp16 int8",
        "glimpse quantize sat-bundle --precision int8 --calibration-images photos/ --calibration-size 64",
        "glimpse quantize m2-bundle --precision int8 --calibration-features val_detections.hdf5",
    )

    def add_arguments(self, q):
        add_bundle_argument(q)
        q.add_argument("--precision", nargs="+", choices=["fp16", "int8"], required=True)
        q.add_argument(
            "--calibration-images",
            nargs="+",
            metavar="PATH",
            help="images (files or directories) to calibrate on (default: generated validation scenes)",
        )
        q.add_argument(
            "--calibration-features",
            nargs="+",
            metavar="FILE",
            help="m2: detection features to calibrate on, as glimpse caption --features reads them (default, for an"
            " m2 of the demo scenes: their validation scenes' grid cells)",
        )
        q.add_argument("--calibration-size", type=int, default=32, help="at most this many images (default 32)")

    def run(self, args):
        from glimpse import families
        from glimpse.bundle import Bundle
        from glimpse.demo import scenes
        from glimpse.export.precision import quantize

        bundle = Bundle(args.bundle)
        family = families.get(bundle.family)
        if family.reads == "regions":
            from glimpse.cli.regions import calibration_regions

            if args.calibration_images:
                raise GlimpseError(
                    f"an {bundle.family} bundle reads detection features: calibrate it with --calibration-features"
                )
            inputs = calibration_regions(bundle, args.calibration_features, args.calibration_size)
        elif args.calibration_features:
            raise GlimpseError(
                f"--calibration-features is for m2 bundles; a {bundle.family} bundle calibrates on images"
            )
        else:
            inputs = calibration_pixels(bundle, args.calibration_images, args.calibration_size)
        record = families.recorder(bundle, scenes.calibration_texts(family.task))
        for precision in args.precision:
            quantize(bundle, precision, inputs, record, log=log)


def calibration_pixels(bundle, sources: list[str] | None, size: int):
    """(N, 3, H, W) preprocessed images for ``glimpse quantize``: the files given, or generated
    validation scenes."""
    import numpy as np

    from glimpse.images import image_files, load_image

    if sources:
        files = image_files(sources)[:size]
        if not files:
            raise GlimpseError("no images found in " + " ".join(sources))
        images = [load_image(f) for f in files]
    else:
        from glimpse.demo import scenes

        log(f"calibrating on {size} generated validation scenes (--calibration-images for yours)")
        side = bundle.preprocess.output_size[0]
        images = [s.image(side) for s in scenes.scenes("val", size)]
    return np.stack([bundle.preprocess(im) for im in images])
