"""The ``medseg`` command line: the parser and the one place where failures become exit codes.

Every user-facing failure is one line on stderr and exit code 2; a cancel (Ctrl-C) is 130; anything else is a bug:
one line, exit code 1, and the traceback in a log file (``--debug`` prints it). The arguments are in
``arguments.py`` (light); each command runs from its own module of this package, imported only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import Sequence

from MedSegEfficientLib import __version__
from MedSegEfficientLib.cli.arguments import add_commands
from MedSegEfficientLib.cli.output_guard import refuse_outputs_that_are_inputs
from MedSegEfficientLib.errors import Cancelled, MedSegError

EXIT_INTERNAL = 1
EXIT_ERROR = 2
EXIT_CANCELLED = 130


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # What the cards record as the command that made a model: the words given, however main was called.
    args.command_line = "medseg " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    try:
        refuse_outputs_that_are_inputs(args)
        command = importlib.import_module(f"MedSegEfficientLib.cli.{args.module}")
        return int(getattr(command, args.handler)(args) or 0)
    except Cancelled as error:
        print(f"medseg: {error}", file=sys.stderr)
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        print("medseg: cancelled; nothing was written", file=sys.stderr)
        return EXIT_CANCELLED
    except MedSegError as error:
        if args.debug:
            traceback.print_exc()
        print(f"medseg: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:  # noqa: BLE001 - a bug, not the user's input: one line, the traceback kept
        if args.debug:
            traceback.print_exc()
        log = write_error_log()
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"medseg: internal error: {type(error).__name__}: {detail} (traceback in {log}; "
              "medseg --debug prints it)", file=sys.stderr)
        return EXIT_INTERNAL


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medseg", description="Efficient medical image segmentation.")
    parser.add_argument("--version", action="version", version=f"medseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the traceback of a failure")
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def write_error_log() -> Path:
    """The last internal error's traceback, for a bug report (the terminal gets one line)."""
    folder = Path(os.environ.get("MEDSEG_LOG_DIR") or Path.home() / ".cache" / "medsegefficient")
    path = folder / "last-error.log"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(f"medseg {__version__}: {' '.join(sys.argv)}\n{traceback.format_exc()}")
    except OSError:
        return Path("(not written: the log folder is not writable)")
    return path


if __name__ == "__main__":
    sys.exit(main())
