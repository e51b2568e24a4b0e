"""``medseg segment``: one image (a file or a DICOM folder) in, a label map or Slicer segmentation out."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from MedSegEfficientLib.cli.progress import ProgressBar
from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.files import write_atomically
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.inference.file_pipeline import segment_file
from MedSegEfficientLib.model.library import default_model_path


def run(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if output.is_dir():
        raise MedSegError(f"{output} is a folder; give a file name such as {output / 'segmentation.seg.nrrd'}")
    options = SegmentOptions(device=args.device, fast=args.fast, batch_size=args.batch_size)
    segmenter = Segmenter.from_file(args.model or default_model_path(), options)
    with ProgressBar(enabled=not args.quiet) as bar:
        result = segment_file(segmenter, args.input, output, progress=bar.update, overlay=args.overlay)
    for notice in result.report.notices:
        print(f"medseg: note: {notice}", file=sys.stderr)
    found = ", ".join(result.labels_found) or "nothing"
    print(f"{result.output}: {len(result.labels_found)} segments ({found}) in {result.report.summary()}")
    if args.json:
        report = {"output": str(result.output), "segments": result.labels_found, "seconds": result.report.seconds,
                  "peak_ram_bytes": result.report.peak_ram_bytes, "peak_gpu_bytes": result.report.peak_gpu_bytes,
                  "device": result.report.device, "notices": result.report.notices}
        write_atomically(args.json, lambda temporary: temporary.write_text(json.dumps(report, indent=2)))
    return 0
