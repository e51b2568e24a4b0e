"""``medseg sample-data``: fetch the real sample CTs (TotalSegmentator 2.18.0, via pip) and print their paths."""

from __future__ import annotations

import argparse
import json

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.io.sample_data import sample_paths


def add_parser(commands) -> None:
    sample = commands.add_parser("sample-data", help="fetch the real sample CTs (TotalSegmentator 2.18.0, via pip)")
    sample.add_argument("--json", action="store_true")
    sample.add_argument("--path", metavar="NAME", help="print only this sample's path (e.g. example_ct)")
    sample.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    paths = sample_paths()
    if args.path:
        if args.path not in paths:
            raise MedSegError(f"no sample named '{args.path}' (samples: {', '.join(paths)})")
        print(paths[args.path])
        return 0
    if args.json:
        print(json.dumps({name: str(path) for name, path in paths.items()}, indent=2))
    else:
        for name, path in paths.items():
            print(f"{name:<18} {path}")
    return 0
