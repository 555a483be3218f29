"""The ``glimpse`` command: one module per command, each a ``Tool`` (base.py).

Bad input prints one line to stderr and exits 2, never a traceback. Heavy packages (torch, onnx, ray) are
imported when a command runs, so ``glimpse --help`` needs none of them. Nothing in glimpse imports this package.
"""

from __future__ import annotations

import argparse

from glimpse import __version__
from glimpse.cli.base import Tool, execute, log
from glimpse.cli.bench import Bench
from glimpse.cli.build import Build
from glimpse.cli.caption import Caption
from glimpse.cli.check import Check
from glimpse.cli.demo import Demo
from glimpse.cli.eval import Eval
from glimpse.cli.export import Export
from glimpse.cli.index import Index
from glimpse.cli.inspect import Inspect
from glimpse.cli.match import Match
from glimpse.cli.quantize import Quantize
from glimpse.cli.search import Search
from glimpse.cli.serve import Serve
from glimpse.cli.vqa import VQA

# in the order glimpse --help lists them
TOOLS: tuple[type[Tool], ...] = (
    Export,
    Caption,
    VQA,
    Index,
    Search,
    Match,
    Serve,
    Demo,
    Quantize,
    Bench,
    Build,
    Check,
    Eval,
    Inspect,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="glimpse",
        description="Export, check and run attention-based vision-language models (Show-Attend-Tell, ...).",
        epilog="Run 'glimpse COMMAND --help' for the options of each command.",
    )
    p.add_argument("--version", action="version", version=f"glimpse {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for tool in TOOLS:
        tool().add_to(sub)
    return p


def main(argv: list[str] | None = None, own_process: bool = False) -> int:
    """Run one command; -> its exit code. ``own_process``: this process is the glimpse program, so a command that
    only runs pipelines puts all their ONNX Runtime sessions on one thread pool (see share_threads), which would
    refuse the sessions of anything run in the process after it."""
    args = parser().parse_args(argv)
    if own_process and args.tool.shares_threads:
        from glimpse.runtime.session import share_threads

        share_threads(args.threads)
    return execute(args.tool, args)


def program() -> int:
    """The ``glimpse`` program: its console script and ``python -m glimpse.cli``."""
    return main(own_process=True)


__all__ = ["Tool", "TOOLS", "log", "main", "parser", "program"]
