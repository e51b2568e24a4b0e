"""The real panel (module file's widget and .ui) on real Qt offscreen, against a real slicer-core scene.

The Slicer application layer is the named stand-in of slicer_application_standin.py; every control is driven the
way a user drives it (buttons clicked, combo boxes chosen) or, for node selectors that need Slicer's own widget
classes, through the parameter node that connectGui binds them to.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
pytest.importorskip("PySide6")

from models_for_tests import write_threshold_model  # noqa: E402
from MedSegEfficientLib.model.library import SHIPPED_MODELS_DIR  # noqa: E402

SCREENSHOT = Path(__file__).resolve().parents[1] / "Resources" / "Screenshots" / "panel.png"


@pytest.fixture()
def panel(slicer_app):
    widget = slicer_app.open_module()
    widget.module = slicer_app.module
    return widget


def add_ct(slicer_logics, samples):
    node = slicer_logics.volumes.AddArchetypeVolume(str(samples["example_ct"]), "example_ct", 0, None)
    assert node is not None
    return node


def wait_until_done(widget, application, timeout=120.0):
    deadline = time.time() + timeout
    while widget._run is not None and time.time() < deadline:
        application.processEvents()
        time.sleep(0.02)
    assert widget._run is None, "the run did not finish"


def choose_model(widget, stem: str) -> None:
    selector = widget.ui.modelSelector.qobject
    index = next(i for i in range(selector.count()) if Path(selector.itemData(i)).stem == stem)
    selector.setCurrentIndex(index)


def test_segment_is_disabled_with_a_reason_until_a_volume_is_chosen(panel, slicer_logics, samples):
    button = panel.ui.segmentButton
    assert not button.enabled and button.toolTip == "Select an input volume."
    panel._parameterNode.inputVolume = add_ct(slicer_logics, samples)
    assert button.enabled and button.text == "Segment"
    titles = [panel.ui.modelSelector.qobject.itemText(i) for i in range(panel.ui.modelSelector.qobject.count())]
    assert len(titles) >= 5 and any("TokenSeg" in title for title in titles)
    assert "labels:" in panel.ui.modelInfoLabel.text and "MB" in panel.ui.modelInfoLabel.text
    assert panel.ui.deviceInfoLabel.text.startswith("Auto: ")


def test_exit_stops_listening_to_the_parameter_node_and_enter_listens_again(panel):
    wrapper = panel._parameterNode
    assert any(observation[0] is wrapper for observation in panel.Observations)
    panel.exit()
    assert panel._parameterNode is None
    assert not any(observation[0] is wrapper for observation in panel.Observations)
    panel.enter()
    assert any(observation[0] is panel._parameterNode for observation in panel.Observations)


def test_settings_persist_in_the_scene_parameter_node(panel, slicer_logics, samples):
    volume = add_ct(slicer_logics, samples)
    panel._parameterNode.inputVolume = volume
    panel.ui.qualitySelector.qobject.setCurrentText("Fast")
    panel.ui.deviceSelector.qobject.setCurrentText("CPU")
    choose_model(panel, "abdomen_ct_tm_unet")
    node = slicer_logics.scene.GetSingletonNode("MedSegEfficient", "vtkMRMLScriptedModuleNode")
    assert node.GetParameter("quality") == "Fast" and node.GetParameter("device") == "CPU"
    assert Path(node.GetParameter("modelPath")).stem == "abdomen_ct_tm_unet"
    assert node.GetNodeReference("inputVolume") is volume


def test_single_slice_rgb_input_offers_only_fitting_2d_models_and_says_why(panel, application, slicer_logics,
                                                                            user_models):
    user_models.mkdir(parents=True, exist_ok=True)
    write_threshold_model(user_models / "rgb.safetensors", spatial_dims=2, in_channels=3, name="RGB bands")
    rgb = slicer_logics.scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "photo")
    pixels = np.zeros((1, 64, 80, 3), np.uint8)
    pixels[0, 10:30, 20:50] = 60  # the test model's label 1 band
    slicer.util.updateVolumeFromArray(rgb, pixels)
    panel._parameterNode.inputVolume = rgb
    selector = panel.ui.modelSelector.qobject
    assert [selector.itemText(i) for i in range(selector.count())] == ["RGB bands"]
    shipped = len(list(SHIPPED_MODELS_DIR.glob("*.safetensors")))
    assert f"{shipped} model(s) hidden" in panel.ui.hiddenModelsLabel.text
    assert "needs 1 channel(s); the input has 3 channel(s)" in panel.ui.hiddenModelsLabel.text
    assert panel.ui.segmentButton.enabled
    panel.ui.segmentButton.click()  # the RGB slice through the 2D model
    wait_until_done(panel, application)
    assert panel.ui.statusLabel.text == "Done.", (panel.ui.statusLabel.text, panel.module.displayed_errors)
    segmentation = slicer_logics.scene.GetNodesByClass("vtkMRMLSegmentationNode").GetItemAsObject(0)
    names = [segmentation.GetSegmentation().GetSegment(i).GetName()
             for i in segmentation.GetSegmentation().GetSegmentIDs()]
    assert names == ["big"] and panel.ui.progressBar.value == 100, (names, panel.ui.statusLabel.text)
    gray = slicer_logics.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "one slice")
    slicer.util.updateVolumeFromArray(gray, np.zeros((1, 64, 80), np.int16))
    panel._parameterNode.inputVolume = gray
    titles = [selector.itemText(i) for i in range(selector.count())]
    assert titles and all("2D" in title for title in titles)  # the shipped 2D CT models
    assert "a 3D model; the input is a single slice" in panel.ui.hiddenModelsLabel.text


@pytest.mark.slow
def test_the_nuclei_model_segments_a_real_single_slice_image(panel, application, slicer_logics, samples):
    """stardist's fluorescence image as a one-slice volume: the 2D nuclei model is offered and its segment
    agrees with the image's nucleus mask (the right part of it was never trained on)."""
    import vtk
    from MedSegEfficientLib.io.images import read_image

    image, instances = read_image(samples["nuclei_2d"]), read_image(samples["nuclei_2d_mask"])
    node = slicer_logics.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "nuclei")
    slicer.util.updateVolumeFromArray(node, image.array)
    panel._parameterNode.inputVolume = node
    panel.ui.deviceSelector.qobject.setCurrentText("CPU")
    choose_model(panel, "nuclei_2d_tm_unet")
    panel.ui.segmentButton.click()
    wait_until_done(panel, application)
    segmentation = slicer_logics.scene.GetNodesByClass("vtkMRMLSegmentationNode").GetItemAsObject(0)
    ids = vtk.vtkStringArray()
    segmentation.GetSegmentation().GetSegmentIDs(ids)
    assert [segmentation.GetSegmentation().GetSegment(ids.GetValue(0)).GetName()] == ["nucleus"]
    labelmap = slicer_logics.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segmentation, ids, labelmap, node)
    found, truth = slicer.util.arrayFromVolume(labelmap) > 0, instances.array > 0
    assert 2 * (found & truth).sum() / (found.sum() + truth.sum()) > 0.9


def test_import_of_a_good_and_a_bad_model_file(panel, slicer_logics, samples, user_models, tmp_path):
    panel._parameterNode.inputVolume = add_ct(slicer_logics, samples)
    good = write_threshold_model(tmp_path / "bands.safetensors", name="Imported bands")
    panel.chooseModelFile = lambda: str(good)
    panel.ui.importModelButton.click()
    assert (user_models / "bands.safetensors").is_file()
    assert panel.ui.modelSelector.qobject.currentText() == "Imported bands"
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 100)
    panel.chooseModelFile = lambda: str(bad)
    with pytest.raises(Exception, match="not a readable model file"):
        panel.onImportModel()
    assert any("cannot be imported" in text for text in panel.module.displayed_errors)
    assert not (user_models / "broken.safetensors").exists()


@pytest.mark.slow
def test_a_run_reaches_100_percent_shows_the_result_line_and_editable_segments(panel, application, slicer_logics,
                                                                                samples, tmp_path):
    volume = add_ct(slicer_logics, samples)
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer_logics.scene)
    study = hierarchy.CreateStudyItem(hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "patient"), "study")
    hierarchy.CreateItem(study, volume)  # as Slicer's DICOM import places a series under its study
    panel._parameterNode.inputVolume = volume
    panel.ui.deviceSelector.qobject.setCurrentText("CPU")
    panel.ui.qualitySelector.qobject.setCurrentText("Fast")
    seen = []
    panel._timer.timeout.connect(lambda: seen.append(panel.ui.progressBar.value))
    panel.ui.segmentButton.click()
    assert panel.ui.segmentButton.text == "Cancel"
    wait_until_done(panel, application)
    assert panel.ui.progressBar.value == 100 and panel.ui.segmentButton.text == "Segment"
    assert "device CPU" in panel.ui.resultLabel.text and "peak RAM" in panel.ui.resultLabel.text
    # The model's card finds the pancreas poorly on its held-out scan: the panel says so beside the result.
    assert "Note: model" in panel.ui.resultLabel.text and "Dice below 0.5 for" in panel.ui.resultLabel.text
    assert "pancreas 0.00" in panel.ui.resultLabel.text
    segmentations = [node for node in slicer_logics.scene.GetNodesByClass("vtkMRMLSegmentationNode")]
    assert len(segmentations) == 1
    segmentation = segmentations[0].GetSegmentation()
    names = {segmentation.GetSegment(i).GetName() for i in segmentation.GetSegmentIDs()}
    assert {"liver", "spleen"} <= names
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(segmentations[0])) == study  # beside its input
    assert seen and max(seen) <= 100 and seen == sorted(seen)  # the bar only moves forward
    assert "last run here" in panel.ui.modelInfoLabel.text  # the measured speed
    # The README's screenshot: this panel after this run (MEDSEG_UPDATE_SCREENSHOT=1 refreshes the committed one).
    path = tmp_path / "panel.png"
    assert panel.parent.grab().save(str(path)) and path.stat().st_size > 10_000
    if os.environ.get("MEDSEG_UPDATE_SCREENSHOT"):
        shutil.copyfile(path, SCREENSHOT)


def test_cancel_mid_run_stops_and_leaves_the_scene_as_it_was(panel, application, slicer_logics, samples):
    panel._parameterNode.inputVolume = add_ct(slicer_logics, samples)
    panel.ui.deviceSelector.qobject.setCurrentText("CPU")
    before = slicer_logics.scene.GetNumberOfNodes()
    panel.ui.segmentButton.click()
    deadline = time.time() + 60
    while panel._run.status().fraction <= 0.0 and time.time() < deadline:
        application.processEvents()
        time.sleep(0.01)
    assert panel._run.status().fraction > 0.0  # mid-run
    run = panel._run
    panel.ui.segmentButton.click()  # now "Cancel"
    wait_until_done(panel, application)
    # Stopped where it was, not after the last tile: one tile per pass on the CPU.
    assert run.status().cancelled and run.status().fraction < 1.0
    assert panel.ui.statusLabel.text.startswith("Cancelled") and panel.ui.segmentButton.text == "Segment"
    assert slicer_logics.scene.GetNumberOfNodes() == before


@pytest.mark.slow
def start_a_cpu_run_and_wait_for_its_first_tile(panel, application, slicer_logics, samples):
    volume = add_ct(slicer_logics, samples)
    panel._parameterNode.inputVolume = volume
    panel.ui.deviceSelector.qobject.setCurrentText("CPU")
    panel.ui.segmentButton.click()
    deadline = time.time() + 60
    while panel._run.status().fraction <= 0.1 and time.time() < deadline:
        application.processEvents()
        time.sleep(0.01)
    assert 0.1 < panel._run.status().fraction < 1.0  # the network is running
    return volume, panel._run


def test_removing_the_input_mid_run_cancels_it_and_adds_nothing(panel, application, slicer_logics, samples):
    volume, run = start_a_cpu_run_and_wait_for_its_first_tile(panel, application, slicer_logics, samples)
    slicer_logics.scene.RemoveNode(volume)
    wait_until_done(panel, application)
    assert run.status().cancelled and run.status().fraction < 1.0
    assert panel.ui.statusLabel.text.startswith("Cancelled (example_ct was removed)")
    assert slicer_logics.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0


def test_closing_the_scene_mid_run_cancels_it_and_the_new_scene_stays_empty(panel, application, slicer_logics,
                                                                          samples):
    _, run = start_a_cpu_run_and_wait_for_its_first_tile(panel, application, slicer_logics, samples)
    slicer_logics.scene.Clear(0)
    wait_until_done(panel, application)
    assert run.status().cancelled
    assert panel.ui.statusLabel.text.startswith("Cancelled (the scene was closed)")
    assert slicer_logics.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0
    assert slicer_logics.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0


def test_a_rerun_into_an_existing_segmentation_can_be_undone(panel, application, slicer_logics, samples):
    volume = add_ct(slicer_logics, samples)
    existing = slicer_logics.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my work")
    existing.GetSegmentation().AddEmptySegment("hand-drawn", "hand-drawn")
    panel._parameterNode.inputVolume = volume
    panel._parameterNode.outputSegmentation = existing
    panel.ui.deviceSelector.qobject.setCurrentText("CPU")
    panel.ui.qualitySelector.qobject.setCurrentText("Fast")
    panel.ui.segmentButton.click()
    wait_until_done(panel, application)
    ids = list(existing.GetSegmentation().GetSegmentIDs())
    assert "hand-drawn" not in ids and len(ids) > 3 and panel.ui.undoButton.enabled
    panel.ui.undoButton.click()
    assert list(existing.GetSegmentation().GetSegmentIDs()) == ["hand-drawn"] and not panel.ui.undoButton.enabled


@pytest.mark.slow
def test_preflight_that_does_not_fit_asks_and_can_switch_to_the_cpu_or_stop(panel, application, slicer_logics,
                                                                              samples, monkeypatch):
    panel._parameterNode.inputVolume = add_ct(slicer_logics, samples)
    monkeypatch.setenv("MEDSEG_RAM_LIMIT_BYTES", "1000")  # 1 kB free in the worker: nothing fits
    panel.logic.shutdown()  # the next run starts a worker that sees it
    asked = []
    panel.askPreflight = lambda result: asked.append(result) or None
    panel.ui.segmentButton.click()
    wait_until_done(panel, application)
    assert len(asked) == 1 and not asked[0]["fits"] and panel._run is None  # the user declined: nothing ran
    assert "GiB RAM" in asked[0]["message"] and slicer_logics.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0
    # "Use the CPU" runs without the check ("Run anyway" likewise): the worker must not refuse what was confirmed
    panel.askPreflight = lambda result: "cpu"
    panel.ui.qualitySelector.qobject.setCurrentText("Fast")
    panel.ui.segmentButton.click()
    wait_until_done(panel, application)
    assert panel.ui.progressBar.value == 100, panel.ui.statusLabel.text


def test_a_failing_run_shows_the_error_and_keeps_the_scene(panel, application, slicer_logics):
    volume = slicer_logics.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "corrupt")
    voxels = np.zeros((24, 40, 40), np.float32)
    voxels[3, 4, 5] = np.nan  # the engine refuses NaN voxels: the error is raised in the worker process
    slicer.util.updateVolumeFromArray(volume, voxels)
    panel._parameterNode.inputVolume = volume
    panel.ui.deviceSelector.qobject.setCurrentText("CPU")
    before = slicer_logics.scene.GetNumberOfNodes()
    panel.ui.segmentButton.click()
    wait_until_done(panel, application)
    assert panel.ui.statusLabel.text.startswith("Failed")
    assert any("NaN" in text for text in panel.module.displayed_errors)
    assert slicer_logics.scene.GetNumberOfNodes() == before


def test_a_gpu_that_is_not_there_is_a_clear_error_and_nothing_changes(panel, application, slicer_logics, samples):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    panel._parameterNode.inputVolume = add_ct(slicer_logics, samples)
    panel.ui.deviceSelector.qobject.setCurrentText("GPU")
    before = slicer_logics.scene.GetNumberOfNodes()
    panel.ui.segmentButton.click()
    wait_until_done(panel, application)
    assert any("no CUDA GPU" in text for text in panel.module.displayed_errors), panel.module.displayed_errors
    assert panel.ui.statusLabel.text.startswith("Failed") and slicer_logics.scene.GetNumberOfNodes() == before


def test_a_region_of_interest_limits_the_segmentation_to_it(panel, application, slicer_logics, samples):
    from MedSegEfficientLib.slicer.scene import volume_from_node

    volume = add_ct(slicer_logics, samples)
    grid = volume_from_node(volume)
    centre = grid.ijk_to_ras() @ np.array([*(np.array(grid.grid_shape[::-1]) / 2), 1.0])
    roi = slicer_logics.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "liver region")
    roi.SetXYZ(*centre[:3])
    roi.SetRadiusXYZ(40.0, 40.0, 30.0)
    panel._parameterNode.inputVolume = volume
    panel._parameterNode.roi = roi
    panel.ui.deviceSelector.qobject.setCurrentText("CPU")
    panel.ui.qualitySelector.qobject.setCurrentText("Fast")
    panel.ui.segmentButton.click()
    assert panel._prepared.box is not None and panel._prepared.volume.grid_shape != grid.grid_shape
    wait_until_done(panel, application)
    segmentation = slicer_logics.scene.GetNodesByClass("vtkMRMLSegmentationNode").GetItemAsObject(0)
    bounds = [0.0] * 6
    segmentation.GetRASBounds(bounds)  # where any segment has voxels
    for axis, radius in enumerate((40.0, 40.0, 30.0)):  # within the ROI, give or take a voxel (<= 3 mm here)
        assert bounds[2 * axis] >= centre[axis] - radius - 3.0 and bounds[2 * axis + 1] <= centre[axis] + radius + 3.0
    assert bounds[1] > bounds[0]  # something was segmented inside
