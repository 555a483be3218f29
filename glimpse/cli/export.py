"""``glimpse export FAMILY``: one subcommand per family of the registry."""

from __future__ import annotations

from pathlib import Path

from glimpse.cli.base import Tool, add_export_output_arguments, log


class Export(Tool):
    """import a trained checkpoint and write a bundle of checked ONNX graphs

    Import a checkpoint of a public implementation and write a bundle: ONNX graphs cut for fast decoding, each
    checked against the PyTorch reference on ONNX Runtime before anything is written.
    """

    name = "export"

    def add_arguments(self, parser):
        from glimpse import families

        sub = parser.add_subparsers(dest="family", required=True, metavar="FAMILY")
        for name in families.names():
            f = families.get(name)
            p = sub.add_parser(name, help=f.title, description=f.description, epilog="example: " + f.example)
            f.add_import_arguments(p)
            add_export_output_arguments(p, images=f.reads == "images")

    def run(self, args):
        from glimpse import families
        from glimpse.bundle import check_output_dir

        check_output_dir(Path(args.out), args.force)  # before the slow import

        def images(preprocess):
            """The user's --images, preprocessed as the model reads them: (N, 3, H, W), or None."""
            paths = getattr(args, "images", None)
            if not paths:
                return None
            import numpy as np

            from glimpse.images import image_files, load_image

            return np.stack([preprocess(load_image(p)) for p in image_files(paths)[: args.max_images]])

        out = families.get(args.family).export(args, images, log)
        log(f"wrote bundle {out}")
