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
import os
import sys
import traceback
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
    "serve",
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


def _error_message(err: BaseException) -> str:
    """One line for ``err``: its message, or the last line of an error re-raised from a
    DataLoader worker (whose message embeds the worker's traceback)."""
    lines = str(err).strip().splitlines()
    if any(line.startswith("Original Traceback") for line in lines):
        return lines[-1]
    return lines[0] if len(lines) == 1 else " ".join(line.strip() for line in lines)


def _traceback_if_verbose(args: argparse.Namespace | None) -> None:
    """Print the traceback of the error being handled when ``--verbose`` was given."""
    if args is not None and args.verbose:
        traceback.print_exc(file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``voxvec`` and ``python -m voxvec``; returns the exit code.

    No traceback reaches the user unless ``--verbose`` is given (then it is printed before the
    message): an error is one line and exit code 2, Ctrl-C is ``interrupted`` and exit code
    130, a closed output pipe (``| head``) ends the command quietly.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    name = _command(argv)
    prefix = "voxvec" if name is None else f"voxvec {name}"
    args: argparse.Namespace | None = None
    try:
        args = build_parser(name).parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(levelname)s %(name)s: %(message)s",
        )
        return int(args._run(args))
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away: drop what is still buffered, without an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except MemoryError:
        _traceback_if_verbose(args)
        print(
            f"{prefix}: error: out of memory; try a smaller --batch-size, shorter "
            "windows (--window-s) or fewer inputs at a time",
            file=sys.stderr,
        )
        return 2
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as err:
        _traceback_if_verbose(args)
        print(f"{prefix}: error: {_error_message(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # a dependency's own error type (e.g. SafetensorError)
        _traceback_if_verbose(args)
        print(
            f"{prefix}: error: {type(err).__name__}: {_error_message(err)} "
            "(run with -v for the traceback)",
            file=sys.stderr,
        )
        return 2
