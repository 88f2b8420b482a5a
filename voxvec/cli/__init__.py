"""The ``voxvec`` command line: one module per subcommand.

Each module in :data:`COMMANDS` defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int`` (the exit code). A module parses its arguments, calls one library function and
prints or writes the result; the work itself lives in the library.

Only the command being run gets its options attached (``add_arguments`` may import what its
choices come from), and the command modules import nothing heavy at module level, so
``voxvec --help``, ``voxvec --version`` and ``voxvec COMMAND --help`` start quickly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from voxvec import __version__

COMMANDS: tuple[str, ...] = (
    "embed",
    "similarity",
    "verify",
    "calibrate",
    "enroll",
    "identify",
    "speakers",
    "models",
    "prepare",
    "eval",
    "train",
    "export",
    "diarize",
)


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv``: its first word that is not an option, or None.

    The top-level options take no value, so the first such word is the subcommand.
    """
    return next((arg for arg in argv if not arg.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; every subcommand is listed, ``command``'s options are attached.

    Args:
        command: the subcommand whose options to attach (and whose ``run`` to set as the
            ``_run`` default); None attaches none (enough for ``voxvec --help``).

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="voxvec", description="Speaker embeddings: embed, compare, train and evaluate."
    )
    parser.add_argument("--version", action="version", version=f"voxvec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"voxvec.cli.{name}")
        sp = sub.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == command:
            module.add_arguments(sp)
            sp.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``voxvec`` and ``python -m voxvec``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_command(argv)).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._run(args))
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as err:
        print(f"voxvec {args.command}: error: {err}", file=sys.stderr)
        return 2
