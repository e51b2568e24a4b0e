"""Running a multi-part model (model/multi_part.py): each part through the engine on its own grid, its labels
mapped by name into the merged map and written in part order, a later part's label replacing an earlier one's
where both say something (TotalSegmentator's merge, ``nnunet.py``). The progress bar is shared out between the
parts; Cancel stops the part that runs and nothing is returned."""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import numpy as np

from MedSegEfficientLib.inference.run_report import RunReport, SegmentationResult
from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.model.multi_part import merge_lookup
from MedSegEfficientLib.volume import Volume

ProgressCallback = Callable[[float, str], None]
CancelCheck = Callable[[], bool]


class PartSegmenter(Protocol):
    card: ModelCard

    def segment(self, volume: Volume, progress: ProgressCallback | None = None,
                cancel: CancelCheck | None = None) -> SegmentationResult: ...


def segment_parts(parts: Sequence[PartSegmenter], card: ModelCard, volume: Volume,
                  progress: ProgressCallback | None = None, cancel: CancelCheck | None = None) -> SegmentationResult:
    dtype = np.uint8 if card.out_channels <= 256 else np.uint16
    merged: np.ndarray | None = None
    report = RunReport()
    for index, part in enumerate(parts):
        result = part.segment(volume, _share(progress, index, len(parts), part.card.name), cancel)
        mapped = merge_lookup(part.card.labels, card.labels).astype(dtype)[result.labels]
        if merged is None:
            merged = mapped
        else:
            np.copyto(merged, mapped, where=mapped != 0)
        del mapped, result.labels
        _add(report, result.report, part.card.name)
    assert merged is not None
    return SegmentationResult(merged, report)


def _share(progress: ProgressCallback | None, index: int, count: int, name: str) -> ProgressCallback | None:
    if progress is None:
        return None

    def report(fraction: float, stage: str) -> None:
        progress((index + fraction) / count, f"part {index + 1}/{count} ({name}): {stage}")

    return report


def _add(total: RunReport, part: RunReport, name: str) -> None:
    """Stage times summed over the parts, peaks as the highest, every part's notices named by it."""
    total.device = total.device or part.device
    for stage, seconds in part.seconds.items():
        total.seconds[stage] = total.seconds.get(stage, 0.0) + seconds
    total.peak_gpu_bytes = max(total.peak_gpu_bytes, part.peak_gpu_bytes)
    total.peak_ram_bytes = max(total.peak_ram_bytes, part.peak_ram_bytes)
    total.notices.extend(f"{name}: {notice}" for notice in part.notices)


__all__ = ["segment_parts"]
