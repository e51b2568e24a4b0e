"""File in, segmentation file out: the path the CLI, the benchmark and batch processing share."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from MedSegEfficientLib.model.card import LabelInfo
from MedSegEfficientLib.inference.engine import CancelCheck, ProgressCallback, RunReport, Segmenter
from MedSegEfficientLib.io.images import read_image, write_label_image
from MedSegEfficientLib.io.overlay import write_overlay_png
from MedSegEfficientLib.inference.peak_ram import peak_ram_bytes
from MedSegEfficientLib.io.seg_nrrd import write_seg_nrrd
from MedSegEfficientLib.volume import Volume


@dataclass
class FileResult:
    output: Path
    labels_found: list[str]
    report: RunReport
    overlay: Path | None = None


def segment_file(segmenter: Segmenter, input_path: str | os.PathLike, output: str | os.PathLike,
                 progress: ProgressCallback | None = None, cancel: CancelCheck | None = None,
                 overlay: str | os.PathLike | None = None) -> FileResult:
    """Nothing is written unless the whole run succeeds (outputs are written atomically at the end)."""
    started = time.perf_counter()
    volume = read_image(input_path)
    load_seconds = time.perf_counter() - started
    result = segmenter.segment(volume, progress=progress, cancel=cancel)
    report = result.report
    report.seconds = {"load": load_seconds, **report.seconds}
    started = time.perf_counter()
    output = write_segmentation(result.labels, volume, segmenter.card.labels, output)
    overlay_path = write_overlay_png(volume, result.labels, segmenter.card.labels, overlay) if overlay else None
    report.seconds["save"] = time.perf_counter() - started
    report.peak_ram_bytes = peak_ram_bytes()
    present = set(np.unique(result.labels).tolist())
    found = [label.name for label in segmenter.card.labels if label.value in present]
    return FileResult(output, found, report, overlay_path)


def write_segmentation(labels: np.ndarray, reference: Volume, label_infos: list[LabelInfo],
                       output: str | os.PathLike) -> Path:
    """A Slicer .seg.nrrd (named, coloured, coded segments) or a plain label map, chosen by the file name."""
    output = Path(output)
    if output.name.endswith(".seg.nrrd"):
        return write_seg_nrrd(labels, reference, label_infos, output)
    return write_label_image(labels, reference, output)
