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


def add_parser(commands) -> None:
    segment = commands.add_parser("segment", help="segment an image (NIfTI, NRRD, MHA or a DICOM folder)")
    segment.add_argument("input", help="image file, or a folder holding one DICOM series")
    segment.add_argument("-o", "--output", required=True, help="OUT.seg.nrrd (Slicer) or a label map .nii.gz/.nrrd")
    segment.add_argument("--model", help="model file or name (default: the shipped abdominal CT demo model)")
    segment.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda or mps")
    segment.add_argument("--fast", action="store_true", help="fewer overlapping tiles: about half the time")
    segment.add_argument("--batch-size", type=int, help="tiles or slices per forward pass")
    segment.add_argument("--overlay", help="also write a PNG picture of the result over the image")
    segment.add_argument("--quiet", action="store_true", help="no progress bar")
    segment.add_argument("--json", help="write the run report (times per stage, memory, device) as JSON")
    segment.set_defaults(handler=run)


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
