"""Segment a Slicer volume node: the Logic's whole body, on an explicit scene, without Qt.

The network runs on a copy-free view of the node's voxels; the scene changes only at the very end, after the
run has succeeded, so a failure or a cancel leaves it exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

from .engine import CancelCheck, ProgressCallback, RunReport, SegmentOptions, Segmenter
from .scene import labels_to_segmentation_node, volume_from_node


@dataclass
class NodeResult:
    segmentation_node: object
    report: RunReport


class VolumeNodeSegmenter:
    """Keeps the model loaded between runs, as a Slicer session segments one volume after another."""

    def __init__(self) -> None:
        self._segmenter: Segmenter | None = None
        self._key: tuple | None = None

    def segmenter_for(self, model_path: str, options: SegmentOptions) -> Segmenter:
        key = (str(model_path), options.device, options.fast, options.batch_size)
        if self._segmenter is None or self._key != key:
            self._segmenter = Segmenter.from_file(model_path, options)
            self._key = key
        return self._segmenter

    def run(self, scene, volume_node, model_path: str, options: SegmentOptions | None = None,
            progress: ProgressCallback | None = None, cancel: CancelCheck | None = None,
            segmentation_node=None) -> NodeResult:
        segmenter = self.segmenter_for(model_path, options or SegmentOptions())
        volume = volume_from_node(volume_node)
        result = segmenter.segment(volume, progress=progress, cancel=cancel)
        node = labels_to_segmentation_node(scene, result.labels, volume_node, segmenter.card.labels,
                                           segmentation_node=segmentation_node,
                                           name=f"{volume_node.GetName()} {segmenter.card.name}")
        return NodeResult(node, result.report)


def model_choices() -> list[dict]:
    """Shipped and imported models for the panel's picker, each with what a user needs to choose."""
    from .catalog import list_model_files

    return [entry for entry in list_model_files() if "error" not in entry]


__all__ = ["NodeResult", "VolumeNodeSegmenter", "model_choices"]
