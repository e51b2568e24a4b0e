"""MRML glue against Slicer's real libraries (slicer-core from PyPI): nodes, segments, .seg.nrrd files."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
import vtk  # noqa: E402

from MedSegEfficientLib.errors import InputImageError  # noqa: E402
from MedSegEfficientLib.slicer.scene import labels_to_segmentation_node, volume_from_node  # noqa: E402
from MedSegEfficientLib.io.seg_nrrd import write_seg_nrrd  # noqa: E402
from MedSegEfficientLib.volume import Volume  # noqa: E402
from models_for_tests import LABELS  # noqa: E402
from phantoms import make_phantom, oblique_direction  # noqa: E402


def add_volume_node(scene, volume: Volume, name="CT"):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, volume.ijk_to_ras()[row, column])
    node.SetIJKToRASMatrix(matrix)
    slicer.util.updateVolumeFromArray(node, volume.array)
    return node


def segmentation_as_labels(logics, segmentation_node, reference_node) -> np.ndarray:
    labelmap = logics.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    ids = vtk.vtkStringArray()
    segmentation_node.GetSegmentation().GetSegmentIDs(ids)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segmentation_node, ids, labelmap,
                                                                                 reference_node)
    # Export numbers segments 1..n in ID order; map them back to the label values by name.
    exported = slicer.util.arrayFromVolume(labelmap)
    values = {label.name: label.value for label in LABELS}
    result = np.zeros_like(exported)
    for index in range(ids.GetNumberOfValues()):
        name = segmentation_node.GetSegmentation().GetSegment(ids.GetValue(index)).GetName()
        result[exported == index + 1] = values[name]
    return result


def test_volume_node_geometry_is_slicers(slicer_logics):
    image, _ = make_phantom(direction=oblique_direction(25))
    node = add_volume_node(slicer_logics.scene, image)
    volume = volume_from_node(node)
    assert np.allclose(volume.ijk_to_ras(), image.ijk_to_ras())
    assert np.shares_memory(volume.array, slicer.util.arrayFromVolume(node))  # a view, no copy
    # A voxel's RAS position agrees with Slicer's own matrix
    ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ras)
    assert np.allclose(ras.MultiplyPoint((3, 4, 5, 1)), volume.ijk_to_ras() @ [3, 4, 5, 1])


def test_parent_transform_is_applied(slicer_logics):
    image, _ = make_phantom()
    node = add_volume_node(slicer_logics.scene, image)
    transform = slicer_logics.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = vtk.vtkMatrix4x4()
    shift.SetElement(0, 3, 12.5)
    transform.SetMatrixTransformToParent(shift)
    node.SetAndObserveTransformNodeID(transform.GetID())
    moved = volume_from_node(node)
    assert moved.ijk_to_ras()[0, 3] == pytest.approx(image.ijk_to_ras()[0, 3] + 12.5)


def test_labels_become_named_coloured_coded_segments(slicer_logics):
    slicer_logics.load_terminologies()
    image, labels = make_phantom(direction=oblique_direction())
    reference = add_volume_node(slicer_logics.scene, image)
    before = slicer_logics.scene.GetNumberOfNodes()
    node = labels_to_segmentation_node(slicer_logics.scene, labels.array, reference, LABELS)
    assert slicer_logics.scene.GetNumberOfNodes() == before + 2  # the segmentation and its display node
    segmentation = node.GetSegmentation()
    names = [segmentation.GetSegment(i).GetName() for i in segmentation.GetSegmentIDs()]
    assert names == ["big", "small"]
    big = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("big"))
    assert big.GetColor() == pytest.approx((221 / 255, 130 / 255, 101 / 255))
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer_logics.terminologies.DeserializeTerminologyEntry(big.GetTerminology(), entry)
    assert entry.GetTypeObject().GetCodeMeaning() == "Liver"
    assert np.array_equal(segmentation_as_labels(slicer_logics, node, reference), labels.array)


def test_existing_segmentation_is_replaced_only_when_given(slicer_logics):
    image, labels = make_phantom()
    reference = add_volume_node(slicer_logics.scene, image)
    first = labels_to_segmentation_node(slicer_logics.scene, labels.array, reference, LABELS)
    second = labels_to_segmentation_node(slicer_logics.scene, labels.array, reference, LABELS)
    assert first is not second
    only_big = np.where(labels.array == 1, 1, 0).astype(np.uint8)
    replaced = labels_to_segmentation_node(slicer_logics.scene, only_big, reference, LABELS, segmentation_node=first)
    assert replaced is first and first.GetSegmentation().GetNumberOfSegments() == 1


def test_mismatched_labels_leave_the_scene_untouched(slicer_logics):
    image, _ = make_phantom()
    reference = add_volume_node(slicer_logics.scene, image)
    before = slicer_logics.scene.GetNumberOfNodes()
    with pytest.raises(InputImageError):
        labels_to_segmentation_node(slicer_logics.scene, np.zeros((3, 3, 3), np.uint8), reference, LABELS)
    assert slicer_logics.scene.GetNumberOfNodes() == before


def read_seg_nrrd(logics, path):
    node = logics.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    logics.scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    return node


def test_seg_nrrd_written_without_slicer_reads_back_in_slicer(slicer_logics, tmp_path):
    image, labels = make_phantom(direction=oblique_direction())
    path = write_seg_nrrd(labels.array, image, LABELS, tmp_path / "phantom.seg.nrrd")
    node = read_seg_nrrd(slicer_logics, path)
    reference = add_volume_node(slicer_logics.scene, image)
    segmentation = node.GetSegmentation()
    assert [segmentation.GetSegment(i).GetName() for i in segmentation.GetSegmentIDs()] == ["big", "small"]
    assert "SCT^78961009^Spleen" in segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("small")).GetTerminology()
    assert np.array_equal(segmentation_as_labels(slicer_logics, node, reference), labels.array)
