"""File in, segmentation file out: the path the CLI, the benchmark and batch processing share.

The outputs are checked before the image is read (format, folder, never the input), the result's shape before the
network runs, and nothing existing is replaced unless every output of the run was written completely: they are
staged under temporary names and renamed together at the end.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from MedSegEfficientLib.files import StagedOutputs
from MedSegEfficientLib.inference.engine import CancelCheck, ProgressCallback, RunReport, Segmenter
from MedSegEfficientLib.inference.peak_ram import peak_ram_bytes
from MedSegEfficientLib.inference.preflight import require_ram
from MedSegEfficientLib.io.images import read_image, read_image_info, write_label_image
from MedSegEfficientLib.io.outputs import SEGMENTATION_SUFFIX, RunOutputs, check_outputs, check_result_fits
from MedSegEfficientLib.io.overlay import write_overlay_png
from MedSegEfficientLib.io.seg_nrrd import write_seg_nrrd
from MedSegEfficientLib.model.card import LabelInfo
from MedSegEfficientLib.volume import Volume


@dataclass
class FileResult:
    output: Path
    labels_found: list[str]
    report: RunReport
    overlay: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        """The run report as ``--json`` writes it."""
        return {"output": str(self.output), "segments": self.labels_found, "seconds": self.report.seconds,
                "peak_ram_bytes": self.report.peak_ram_bytes, "peak_gpu_bytes": self.report.peak_gpu_bytes,
                "device": self.report.device, "notices": self.report.notices}


def segment_file(segmenter: Segmenter, input_path: str | os.PathLike, output: str | os.PathLike,
                 progress: ProgressCallback | None = None, cancel: CancelCheck | None = None,
                 overlay: str | os.PathLike | None = None, report: str | os.PathLike | None = None,
                 series: str | None = None) -> FileResult:
    """Segment one image file (or DICOM folder; ``series`` picks one of several) into ``output``, and optionally a
    PNG ``overlay`` and a JSON ``report``. Raises before anything is written when an output cannot be written as
    asked, and before the voxels are read when the run would not fit in memory."""
    outputs = RunOutputs(Path(output), Path(overlay) if overlay else None, Path(report) if report else None)
    check_outputs([Path(input_path)], outputs)
    started = time.perf_counter()
    header = read_image_info(input_path, series)
    check_result_fits(outputs, header.grid_shape[0])
    if segmenter.options.check_memory:  # from the header: a file claiming 2000^3 voxels is refused unread
        require_ram(header, segmenter.card, segmenter.device.type == "cuda")
    notices: list[str] = []
    volume = read_image(input_path, series, notices, checked=True)  # read_image_info ran the checks
    load_seconds = time.perf_counter() - started
    result = segmenter.segment(volume, progress=progress, cancel=cancel)
    run_report = result.report
    run_report.notices[:0] = notices
    run_report.seconds = {"load": load_seconds, **run_report.seconds}
    started = time.perf_counter()
    present = set(np.unique(result.labels).tolist())
    found = [label.name for label in segmenter.card.labels if label.value in present]
    file_result = FileResult(outputs.labels, found, run_report, outputs.overlay)
    with StagedOutputs() as staged:
        write_segmentation(result.labels, volume, segmenter.card.labels, outputs.labels, staged)
        if outputs.overlay is not None:
            write_overlay_png(volume, result.labels, segmenter.card.labels, outputs.overlay, outputs=staged,
                              modality=segmenter.card.modality)
        run_report.seconds["save"] = time.perf_counter() - started
        run_report.peak_ram_bytes = peak_ram_bytes()
        if outputs.report is not None:
            text = json.dumps(file_result.as_dict(), indent=2)
            staged.stage(outputs.report, lambda temporary: temporary.write_text(text))
    return file_result


def write_segmentation(labels: np.ndarray, reference: Volume, label_infos: list[LabelInfo],
                       output: str | os.PathLike, outputs: StagedOutputs | None = None) -> Path:
    """A Slicer .seg.nrrd (named, coloured, coded segments) or a plain label map, chosen by the file name."""
    output = Path(output)
    if output.name.lower().endswith(SEGMENTATION_SUFFIX):
        return write_seg_nrrd(labels, reference, label_infos, output, outputs)
    return write_label_image(labels, reference, output, outputs)
