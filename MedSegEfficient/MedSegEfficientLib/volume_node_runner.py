"""Segment a Slicer volume node: the Logic's whole body, on an explicit scene, without Qt.

Three steps, so that the panel can run the middle one off the main thread: ``prepare`` reads the node (and the
optional region) on the main thread; ``compute`` runs the network and touches no node; ``apply`` writes the
segmentation on the main thread. The scene changes only in ``apply``, after the run has succeeded, so a failure
or a cancel leaves it exactly as it was. A run into an existing segmentation keeps a snapshot to undo it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .engine import CancelCheck, ProgressCallback, RunReport, SegmentationResult, SegmentOptions, Segmenter
from .region import Box, crop, paste, voxel_box
from .scene import SegmentationSnapshot, labels_to_segmentation_node, place_in_study, volume_from_node
from .volume import Volume


@dataclass
class PreparedRun:
    volume_node: object
    volume: Volume  # the region to segment (the whole volume without an ROI)
    grid_shape: tuple[int, int, int]  # the whole volume's
    box: Box | None
    model_path: str
    options: SegmentOptions


@dataclass
class NodeResult:
    segmentation_node: object
    report: RunReport
    undo: SegmentationSnapshot | None = None  # set when the run replaced an existing segmentation


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

    def prepare(self, volume_node, model_path: str, options: SegmentOptions | None = None,
                roi_bounds=None) -> PreparedRun:
        volume = volume_from_node(volume_node)
        box = voxel_box(volume, roi_bounds) if roi_bounds is not None else None
        region = crop(volume, box) if box is not None else volume
        return PreparedRun(volume_node, region, volume.grid_shape, box, str(model_path), options or SegmentOptions())

    def compute(self, prepared: PreparedRun, progress: ProgressCallback | None = None,
                cancel: CancelCheck | None = None) -> SegmentationResult:
        segmenter = self.segmenter_for(prepared.model_path, prepared.options)
        return segmenter.segment(prepared.volume, progress=progress, cancel=cancel)

    def apply(self, scene, prepared: PreparedRun, result: SegmentationResult, segmentation_node=None) -> NodeResult:
        card = self._segmenter.card
        labels = result.labels if prepared.box is None else paste(result.labels, prepared.box, prepared.grid_shape)
        undo = SegmentationSnapshot(segmentation_node) if segmentation_node is not None else None
        node = labels_to_segmentation_node(scene, labels, prepared.volume_node, card.labels,
                                           segmentation_node=segmentation_node,
                                           name=f"{prepared.volume_node.GetName()} {card.name}")
        if segmentation_node is None:
            place_in_study(scene, node, prepared.volume_node)
        return NodeResult(node, result.report, undo)

    def run(self, scene, volume_node, model_path: str, options: SegmentOptions | None = None,
            progress: ProgressCallback | None = None, cancel: CancelCheck | None = None,
            segmentation_node=None, roi_bounds=None) -> NodeResult:
        prepared = self.prepare(volume_node, model_path, options, roi_bounds)
        result = self.compute(prepared, progress, cancel)
        return self.apply(scene, prepared, result, segmentation_node)


__all__ = ["NodeResult", "PreparedRun", "VolumeNodeSegmenter"]
