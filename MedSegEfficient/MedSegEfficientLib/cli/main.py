"""The ``medseg`` command line: the parser and the one place where failures become exit codes.

Every user-facing failure is one line on stderr and exit code 2; a cancel (Ctrl-C) is 130. Each command lives
in its own module of this package, with ``add_parser`` and the handler it sets.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from MedSegEfficientLib import __version__
from MedSegEfficientLib.cli import bench, evaluate, importing, models, sample_data, segment, train
from MedSegEfficientLib.errors import Cancelled, MedSegError

EXIT_ERROR = 2
EXIT_CANCELLED = 130
COMMANDS = (segment, models, evaluate, sample_data, importing, train, bench)  # in the order --help lists them


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
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
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
