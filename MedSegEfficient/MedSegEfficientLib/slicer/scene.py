"""MRML glue that the Slicer Logic uses: volume node -> Volume, labels -> segmentation node.

Every function takes an explicit ``vtkMRMLScene`` (``slicer.mrmlScene`` inside Slicer), so the same code runs
under the ``slicer-core`` package from PyPI. ``slicer`` and ``vtk`` are imported inside functions: the rest of
the core never needs them.
"""

from __future__ import annotations

import numpy as np

from MedSegEfficientLib.model.card import LabelInfo
from MedSegEfficientLib.errors import InputImageError
from MedSegEfficientLib.model.terminology import terminology_entry
from MedSegEfficientLib.volume import Volume


def volume_from_node(volume_node) -> Volume:
    """The node's voxels (a view, not a copy) with its IJK-to-RAS geometry, parent linear transforms included."""
    import slicer
    import vtk

    image = volume_node.GetImageData() if volume_node is not None else None
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        raise InputImageError("the selected volume has no image data")
    if volume_node.GetParentTransformNode() is not None and not volume_node.GetParentTransformNode().IsLinear():
        raise InputImageError("the volume is under a non-linear transform; harden the transform first")
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(ijk_to_ras)
    parent = volume_node.GetParentTransformNode()
    if parent is not None:
        to_world = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(to_world)
        vtk.vtkMatrix4x4.Multiply4x4(to_world, ijk_to_ras, ijk_to_ras)
    matrix = np.array([[ijk_to_ras.GetElement(r, c) for c in range(4)] for r in range(4)])
    return Volume.from_ijk_to_ras(slicer.util.arrayFromVolume(volume_node), matrix)


def labels_to_segmentation_node(scene, labels: np.ndarray, reference_node, label_infos: list[LabelInfo],
                                segmentation_node=None, name: str | None = None):
    """One named, coloured, terminology-coded segment per label present, with the input as reference geometry.

    A new node unless ``segmentation_node`` is given, whose segments are then replaced. The scene only changes
    here, after the whole run has succeeded; on failure a newly created node is removed again.
    """
    import slicer

    if labels.shape != tuple(slicer.util.arrayFromVolume(reference_node).shape[:3]):
        raise InputImageError(f"labels {labels.shape} do not match the reference volume's grid")
    created = segmentation_node is None
    labelmap = colors = None
    try:
        if created:
            segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
            segmentation_node.SetName(name or f"{reference_node.GetName()} segmentation")
            segmentation_node.CreateDefaultDisplayNodes()
        else:
            segmentation_node.GetSegmentation().RemoveAllSegments()
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
        if reference_node.GetParentTransformNode() is None and segmentation_node.GetParentTransformNode() is None:
            _add_shared_labelmap_segments(segmentation_node, labels, reference_node, label_infos)
        else:  # Slicer's import brings the labels from the volume's transformed frame into the segmentation's
            labelmap, colors = _temporary_labelmap(scene, labels, reference_node, label_infos)
            if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap,
                                                                                          segmentation_node):
                raise RuntimeError("Slicer could not import the label map into the segmentation")
        _apply_label_details(segmentation_node, label_infos)
    except Exception:
        if created and segmentation_node is not None:
            scene.RemoveNode(segmentation_node)
        raise
    finally:
        temporary = [labelmap.GetDisplayNode(), labelmap] if labelmap is not None else []
        for node in temporary + [colors]:
            if node is not None:
                scene.RemoveNode(node)
    return segmentation_node


def _add_shared_labelmap_segments(segmentation_node, labels: np.ndarray, reference_node,
                                  label_infos: list[LabelInfo]) -> None:
    """Every label present as a segment of one shared label map (Slicer's own layout since 4.11, which its import
    also makes): the labels are wrapped once instead of split per segment by Slicer's import."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    present = labels != 0
    if not present.any():
        return
    # The label map covers the labels' bounding box only, as Slicer's import leaves it (extent in the input's IJK).
    low, high = zip(*((int(np.argmax(hit)), len(hit) - int(np.argmax(hit[::-1])))
                      for hit in (present.any(axis=(1, 2)), present.any(axis=(0, 2)), present.any(axis=(0, 1)))))
    box = np.ascontiguousarray(labels[low[0]:high[0], low[1]:high[1], low[2]:high[2]])
    flat = box.ravel()
    counts = np.bincount(flat.astype(np.int64, copy=False) if flat.dtype.kind == "i" else flat)
    image = slicer.vtkOrientedImageData()
    image.SetExtent(low[2], high[2] - 1, low[1], high[1] - 1, low[0], high[0] - 1)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(flat, deep=True))
    ijk_to_ras = vtk.vtkMatrix4x4()
    reference_node.GetIJKToRASMatrix(ijk_to_ras)
    image.SetImageToWorldMatrix(ijk_to_ras)
    segmentation = segmentation_node.GetSegmentation()
    representation = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    segmentation.SetSourceRepresentationName(representation)
    names = {label.value: label.name for label in label_infos}
    for value in np.flatnonzero(counts[1:]) + 1:  # the labels present, background left out
        segment = slicer.vtkSegment()
        segment.SetName(names.get(int(value), f"label {int(value)}"))
        segment.SetLabelValue(int(value))
        segment.AddRepresentation(representation, image)
        segmentation.AddSegment(segment)


def _temporary_labelmap(scene, labels: np.ndarray, reference_node, label_infos: list[LabelInfo]):
    import slicer
    import vtk

    colors = scene.AddNewNodeByClass("vtkMRMLColorTableNode")
    colors.SetTypeToUser()
    colors.SetHideFromEditors(True)
    colors.SetNumberOfColors(max(label.value for label in label_infos) + 1)
    colors.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
    for label in label_infos:
        r, g, b = (c / 255 for c in label.color)
        colors.SetColor(label.value, label.name, r, g, b, 1.0)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    labelmap.SetHideFromEditors(True)
    ijk_to_ras = vtk.vtkMatrix4x4()
    reference_node.GetIJKToRASMatrix(ijk_to_ras)
    labelmap.SetIJKToRASMatrix(ijk_to_ras)
    if reference_node.GetParentTransformNode() is not None:
        labelmap.SetAndObserveTransformNodeID(reference_node.GetParentTransformNode().GetID())
    slicer.util.updateVolumeFromArray(labelmap, np.ascontiguousarray(labels))
    labelmap.CreateDefaultDisplayNodes()
    labelmap.GetDisplayNode().SetAndObserveColorNodeID(colors.GetID())
    return labelmap, colors


def _apply_label_details(segmentation_node, label_infos: list[LabelInfo]) -> None:
    """Exact colours and terminology for every imported segment, matched by name."""
    segmentation = segmentation_node.GetSegmentation()
    by_name = {label.name: label for label in label_infos}
    for segment_id in list(segmentation.GetSegmentIDs()):
        segment = segmentation.GetSegment(segment_id)
        label = by_name.get(segment.GetName())
        if label is None:
            continue
        segment.SetColor(*(c / 255 for c in label.color))
        entry = terminology_entry(label)
        if entry:
            segment.SetTerminology(entry)


def place_in_study(scene, segmentation_node, reference_node) -> None:
    """Put the segmentation beside its input in Subject Hierarchy (under the input's study, if it has one)."""
    import slicer

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if hierarchy is None:
        return
    parent = hierarchy.GetItemParent(_hierarchy_item(hierarchy, reference_node))
    hierarchy.SetItemParent(_hierarchy_item(hierarchy, segmentation_node), parent)


def _hierarchy_item(hierarchy, node) -> int:
    # Slicer's application adds an item for every new node; without it (slicer-core, scripts) we add it here.
    return hierarchy.GetItemByDataNode(node) or hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)


class SegmentationSnapshot:
    """The segments of an existing segmentation before a run replaces them, so that the run can be undone."""

    def __init__(self, segmentation_node) -> None:
        import slicer

        self.node = segmentation_node
        self.saved = slicer.vtkSegmentation()
        self.saved.DeepCopy(segmentation_node.GetSegmentation())

    def restore(self) -> None:
        self.node.GetSegmentation().DeepCopy(self.saved)
        self.node.Modified()
