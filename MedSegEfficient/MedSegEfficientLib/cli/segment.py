"""``medseg segment``: one image (a file or a DICOM folder) in, a label map or Slicer segmentation out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from MedSegEfficientLib.cli.progress import ProgressBar
from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.inference.file_pipeline import segment_file
from MedSegEfficientLib.io.dicom_series import list_series
from MedSegEfficientLib.io.outputs import RunOutputs, check_outputs
from MedSegEfficientLib.model.library import default_model_path


def run(args: argparse.Namespace) -> int:
    if args.list_series:
        return list_dicom_series(Path(args.input))
    if not args.output:
        raise MedSegError("medseg segment needs -o OUTPUT (a .seg.nrrd, .nii.gz, .nrrd or .mha file)")
    # The outputs first: a name that cannot be written is said before the model loads.
    check_outputs([Path(args.input)], RunOutputs(Path(args.output), args.overlay and Path(args.overlay),
                                                 args.json and Path(args.json)))
    if args.batch_size is not None and args.batch_size < 1:
        raise MedSegError(f"--batch-size must be 1 or more, not {args.batch_size}")
    options = SegmentOptions(device=args.device, fast=args.fast, batch_size=args.batch_size,
                             check_memory=not args.force)
    segmenter = Segmenter.from_file(args.model or default_model_path(), options)
    with ProgressBar(enabled=not args.quiet) as bar:
        result = segment_file(segmenter, args.input, args.output, progress=bar.update, overlay=args.overlay,
                              report=args.json, series=args.series)
    for notice in result.report.notices:
        print(f"medseg: note: {notice}", file=sys.stderr)
    found = ", ".join(result.labels_found) or "nothing"
    count = len(result.labels_found)
    print(f"{result.output}: {count} segment{'' if count == 1 else 's'} ({found}) in {result.report.summary()}")
    return 0


def list_dicom_series(folder: Path) -> int:
    if not folder.is_dir():
        raise MedSegError(f"--list-series needs a DICOM folder; {folder} is not a folder")
    series = list_series(folder)
    if not series:
        raise MedSegError(f"{folder} holds no DICOM series")
    for number, entry in enumerate(series, start=1):
        print(entry.line(number))
    print("pick one with --series UID, or --series NUMBER (the first column)", file=sys.stderr)
    return 0
