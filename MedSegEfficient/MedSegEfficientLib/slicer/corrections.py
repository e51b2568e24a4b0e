"""A corrected segmentation back to labels in a model's numbering (for "Add to my training cases"): each segment
exported on the input volume's grid by Slicer's own export, matched to the model's labels by name. A segment the
model does not know is refused by name before anything is exported. Runs on Slicer's main thread; the case's files
are written by the worker (training/user_cases.py)."""

from __future__ import annotations

import numpy as np

from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.training.user_cases import check_segment_names, labels_from_segment_names


def labels_from_segmentation_node(scene, segmentation_node, reference_node, card: ModelCard) -> np.ndarray:
    """(k, j, i) labels on ``reference_node``'s grid; a later segment wins where segments overlap."""
    import slicer
    import vtk

    segmentation = segmentation_node.GetSegmentation()
    ids = list(segmentation.GetSegmentIDs())
    names = [segmentation.GetSegment(segment_id).GetName() for segment_id in ids]
    shape = tuple(slicer.util.arrayFromVolume(reference_node).shape[:3])
    check_segment_names(names, card)  # before anything is exported
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    labelmap.SetHideFromEditors(True)
    try:
        masks = []
        for segment_id, name in zip(ids, names):
            one = vtk.vtkStringArray()
            one.InsertNextValue(segment_id)
            if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                    segmentation_node, one, labelmap, reference_node):
                raise RuntimeError(f"Slicer could not export segment '{name}'")
            array = slicer.util.arrayFromVolume(labelmap)
            if array.shape[:3] != shape:
                raise RuntimeError(f"segment '{name}' was exported on {array.shape}, not the volume's {shape}")
            masks.append((name, array != 0))
        return labels_from_segment_names(masks, card, shape)
    finally:
        for node in (labelmap.GetDisplayNode(), labelmap.GetStorageNode(), labelmap):
            if node is not None:
                scene.RemoveNode(node)


__all__ = ["labels_from_segmentation_node"]
