"""The ``voxvec`` command line: one module per subcommand.

Each module in :data:`COMMANDS` defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int`` (the exit code). A module parses its arguments, calls one library function and
prints or writes the result; the work itself lives in the library.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from voxvec import __version__

COMMANDS: tuple[str, ...] = ("embed", "similarity", "models", "prepare", "eval", "train", "export")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand attached."""
    parser = argparse.ArgumentParser(
        prog="voxvec", description="Speaker embeddings: embed, compare, train and evaluate."
    )
    parser.add_argument("--version", action="version", version=f"voxvec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"voxvec.cli.{name}")
        sp = sub.add_parser(
            name.replace("_", "-"),
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sp)
        sp.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``voxvec`` and ``python -m voxvec``; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._run(args))
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as err:
        print(f"voxvec {args.command}: error: {err}", file=sys.stderr)
        return 2
