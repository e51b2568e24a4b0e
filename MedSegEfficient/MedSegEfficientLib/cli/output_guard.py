"""Every file a command reads is a regular file (or a folder), and an input is never an output, for every
``medseg`` command: checked once, from the parsed arguments, before a command runs. A file given as an input (image, model, card, checkpoint, prepared run, label
map, a pair's either side) is never written; inside a folder given as an input (a dataset, a DICOM series, a
trained-model folder) no existing file is replaced, though a new one may be written there."""

from __future__ import annotations

import argparse
from pathlib import Path

from MedSegEfficientLib.errors import InputImageError, OutputError
from MedSegEfficientLib.files import resolved

# Arguments that name something a command reads, and those that name what it writes.
INPUT_ARGUMENTS = ("input", "inputs", "data", "source", "card", "init", "prepared", "model", "image", "reference",
                   "teacher", "label_map", "pairs", "student", "labels", "cases", "base_data")
OUTPUT_ARGUMENTS = {"output": "-o", "json": "--json", "overlay": "--overlay"}  # argument -> its option


def refuse_outputs_that_are_inputs(args: argparse.Namespace) -> None:
    for given in _input_paths(args):  # a FIFO, device or socket would hang the reader or never end
        if not (given.is_file() or given.is_dir()):
            raise InputImageError(f"{given} is not a regular file or a folder (a pipe, device or socket)")
    if getattr(args, "command", None) == "batch":
        return  # an output folder, which may be the input folder: batch/cases.py keeps its inputs apart
    outputs = {option: Path(value) for name, option in OUTPUT_ARGUMENTS.items()
               if isinstance(value := getattr(args, name, None), str)}
    for given in _input_paths(args):
        source = resolved(given)
        for option, output in outputs.items():
            target = resolved(output)
            if target == source:
                raise OutputError(f"{option} {output} is the input {given}: choose another output name")
            if source.is_dir() and source in target.parents and target.exists():
                raise OutputError(f"{option} {output} would replace a file inside the input folder {given}: "
                                  "choose another output name")


def _input_paths(args: argparse.Namespace) -> list[Path]:
    paths: list[Path] = []
    for name in INPUT_ARGUMENTS:
        value = getattr(args, name, None)
        values = value if isinstance(value, list) else [value]
        for item in values:
            if not isinstance(item, str) or not item:
                continue
            parts = item.rsplit(":", 1) if name == "pairs" else [item]  # IMAGE:LABEL
            paths += [Path(part) for part in parts if part and Path(part).exists()]
    return paths


__all__ = ["refuse_outputs_that_are_inputs"]
