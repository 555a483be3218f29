"""What every command shares: the ``Tool`` base, argument groups, ``log`` and the exit codes.

A command is a ``Tool``: its docstring's first line is its one-line help in ``glimpse --help``, the rest
its description in ``glimpse COMMAND --help``; ``examples`` are command lines shown below the options.
Bad input (``GlimpseError``) prints ``glimpse: error: ...`` on one line to stderr and exits 2, never a
traceback; a missing optional extra names the one to install and exits 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import inspect
import sys

from glimpse.errors import GlimpseError
from glimpse.export.compare import TOLERANCE

BACKENDS = {
    "onnxruntime": "onnxruntime (default; the bundle's ONNX graphs)",
    "torch": "torch (the reference modules)",
    "tensorrt": "tensorrt (the engines glimpse build made; a GPU)",
}
PRECISIONS = ("fp32", "fp16", "int8")
THREADS = "CPU threads (default: the cores this process may use)"

# top-level module -> (the extra that installs it, what it brings), for the line a missing one prints
EXTRAS = {
    **dict.fromkeys(("torch", "torchvision", "onnx", "onnxscript"), ("export", "PyTorch and ONNX")),
    **dict.fromkeys(
        ("ray", "fastapi", "starlette", "multipart", "python_multipart", "prometheus_client"),
        ("serve", "Ray Serve and FastAPI"),
    ),
    "matplotlib": ("plot", "matplotlib"),
    "pycocoevalcap": ("demo", "the COCO caption evaluation"),
    "faiss": ("faiss", "FAISS"),
    "h5py": ("hdf5", "h5py"),
}


def log(message: str) -> None:
    """Progress and notes go to stderr, so that stdout holds only the results."""
    print(message, file=sys.stderr, flush=True)


class Tool:
    """One command of ``glimpse``: ``name``, ``add_arguments(parser)`` and ``run(args)`` -> exit code."""

    name: str = ""
    examples: tuple[str, ...] = ()  # command lines, shown under the options
    shares_threads = False  # it only runs pipelines: the glimpse program gives them one thread pool (share_threads)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        pass

    def run(self, args: argparse.Namespace) -> int | None:
        raise NotImplementedError

    def _doc(self) -> tuple[str, str]:
        first, _, rest = inspect.cleandoc(type(self).__doc__ or "").partition("\n")
        return first.strip(), rest.strip()

    @property
    def help(self) -> str:
        return self._doc()[0]

    @property
    def description(self) -> str | None:
        return self._doc()[1] or None

    @property
    def epilog(self) -> str | None:
        if not self.examples:
            return None
        return ("example: " if len(self.examples) == 1 else "examples: ") + " | ".join(self.examples)

    def add_to(self, subparsers) -> argparse.ArgumentParser:
        """Add this command to ``subparsers``; ``args.tool`` is this tool when it is chosen."""
        parser = subparsers.add_parser(self.name, help=self.help, description=self.description, epilog=self.epilog)
        self.add_arguments(parser)
        parser.set_defaults(tool=self)
        return parser


def execute(tool: Tool, args: argparse.Namespace) -> int:
    """``tool.run(args)`` -> its exit code: 0 (or its own), 2 for bad input or a missing extra, 130 for Ctrl-C."""
    try:
        code = tool.run(args)
    except GlimpseError as e:
        print(f"glimpse: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("glimpse: interrupted", file=sys.stderr)
        return 130
    except ImportError as e:
        missing = (e.name or "").split(".")[0]
        if missing not in EXTRAS:
            raise  # not an optional package: a bug, shown as one
        extra, what = EXTRAS[missing]
        print(
            f"glimpse: error: glimpse {tool.name} needs {what} ({e.name} is missing): pip install 'glimpse[{extra}]'",
            file=sys.stderr,
        )
        return 2
    return code or 0


# --------------------------------------------------------------------------- argument groups


def add_bundle_argument(parser: argparse.ArgumentParser, help: str = "bundle directory") -> None:
    parser.add_argument("bundle", help=help)


def add_threads_argument(parser: argparse.ArgumentParser, help: str = THREADS) -> None:
    parser.add_argument("--threads", type=int, default=None, help=help)


def add_runtime_arguments(
    parser: argparse.ArgumentParser,
    backends: tuple[str, ...] = tuple(BACKENDS),
    device: bool = True,
    cuda_graphs: bool = False,
    threads: str = THREADS,
) -> None:
    """--backend, --precision, [--device], [--cuda-graphs], --threads: how a bundle's graphs are run."""
    names = [BACKENDS[b] for b in backends]
    parser.add_argument(
        "--backend",
        choices=backends,
        default="onnxruntime",
        help=", ".join(names[:-1]) + " or " + names[-1],
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="which graphs to run (default fp32; fp16/int8 are made by glimpse quantize; onnxruntime, tensorrt)",
    )
    if device:
        add_device_argument(parser)
    if cuda_graphs:
        parser.add_argument(
            "--cuda-graphs",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="on CUDA, capture each graph once per input shape and replay it (default on)",
        )
    add_threads_argument(parser, threads)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")


def add_export_output_arguments(parser: argparse.ArgumentParser, images: bool) -> None:
    """--out, --tolerance, --force; and, for a family that reads images, --images and --max-images."""
    parser.add_argument("--out", required=True, help="bundle directory to write")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=TOLERANCE,
        help="largest error accepted per output: the larger of max|onnx - torch| / std(torch) and the relative"
        " L2 error (default %(default)g: above the float32 reordering noise of ResNet-152 at 448, far below an"
        " export mistake's)",
    )
    parser.add_argument("--force", action="store_true", help="replace --out even if it is not a bundle")
    if images:
        parser.add_argument(
            "--images",
            nargs="+",
            metavar="PATH",
            help="real images (files or directories) to check the graphs on, besides noise images",
        )
        parser.add_argument("--max-images", type=int, default=8, help="at most this many of --images (default 8)")


def open_pipeline(bundle, task: str, **options):
    """The pipeline of ``bundle`` (a directory or a ``Bundle``), whose family must do ``task``;
    ``options``: backend, device, threads, precision, cuda_graphs."""
    from glimpse import families
    from glimpse.bundle import Bundle
    from glimpse.errors import BundleError

    bundle = bundle if isinstance(bundle, Bundle) else Bundle(bundle)
    if families.get(bundle.family).task != task:
        what = {"caption": "a captioner", "vqa": "a VQA model", "match": "an image-text matching model"}[task]
        raise BundleError(f"{bundle.path}: a '{bundle.family}' bundle, not {what}")
    return families.open_pipeline(bundle, **options)
