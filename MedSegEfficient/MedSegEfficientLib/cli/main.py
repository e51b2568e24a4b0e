"""The ``medseg`` command line: the parser and the one place where failures become exit codes.

Every user-facing failure is one line on stderr and exit code 2; a cancel (Ctrl-C) is 130. The arguments are in
``arguments.py`` (light); each command runs from its own module of this package, imported only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from MedSegEfficientLib import __version__
from MedSegEfficientLib.cli.arguments import add_commands
from MedSegEfficientLib.errors import Cancelled, MedSegError

EXIT_ERROR = 2
EXIT_CANCELLED = 130


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        command = importlib.import_module(f"MedSegEfficientLib.cli.{args.module}")
        return int(getattr(command, args.handler)(args) or 0)
    except Cancelled as error:
        print(f"medseg: {error}", file=sys.stderr)
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        print("medseg: cancelled; nothing was written", file=sys.stderr)
        return EXIT_CANCELLED
    except MedSegError as error:
        print(f"medseg: error: {error}", file=sys.stderr)
        return EXIT_ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medseg", description="Efficient medical image segmentation.")
    parser.add_argument("--version", action="version", version=f"medseg {__version__}")
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


if __name__ == "__main__":
    sys.exit(main())
