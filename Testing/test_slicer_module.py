"""The Slicer module file: its Logic drives the same code path on a real slicer-core scene; the .ui is complete."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from MedSegEfficientLib.model.library import default_model_path
from MedSegEfficientLib.model.model_file import read_card  # noqa: E402
from MedSegEfficientLib.errors import Cancelled  # noqa: E402
from MedSegEfficientLib.slicer.scene import volume_from_node  # noqa: E402

UI_FILE = Path(__file__).resolve().parents[1] / "MedSegEfficient" / "Resources" / "UI" / "MedSegEfficient.ui"


@pytest.fixture()
def module(slicer_logics):
    from slicer_application_standin import import_module_file

    slicer_logics.install_application_globals()
    return import_module_file()


def load_real_ct(logics, path):
    node = logics.volumes.AddArchetypeVolume(str(path), "example_ct", 0, None)
    assert node is not None
    return node


@pytest.mark.slow
def test_logic_segments_a_real_ct_volume_node(module, slicer_logics, samples):
    volume = load_real_ct(slicer_logics, samples["example_ct"])
    progress = []
    result = module.MedSegEfficientLogic().process(volume, None, device="cpu", fast=True,
                                                   progress=lambda f, s: progress.append(f))
    segmentation = result.segmentation_node.GetSegmentation()
    names = {segmentation.GetSegment(i).GetName() for i in segmentation.GetSegmentIDs()}
    assert {"liver", "spleen", "aorta", "vertebrae"} <= names
    assert names <= {label.name for label in read_card(default_model_path()).labels}
    assert progress[-1] == pytest.approx(1.0)
    # The segmentation's reference geometry is the input volume's
    shape = volume_from_node(volume).grid_shape
    geometry = segmentation.GetConversionParameter("Reference image geometry")
    assert geometry.endswith(f"0;{shape[2] - 1};0;{shape[1] - 1};0;{shape[0] - 1};")


def test_cancel_leaves_the_scene_as_it_was(module, slicer_logics, samples):
    volume = load_real_ct(slicer_logics, samples["example_ct"])
    before = slicer_logics.scene.GetNumberOfNodes()
    voxels = slicer.util.arrayFromVolume(volume).copy()
    with pytest.raises(Cancelled):
        module.MedSegEfficientLogic().process(volume, None, device="cpu", cancel=lambda: True)
    assert slicer_logics.scene.GetNumberOfNodes() == before
    assert np.array_equal(slicer.util.arrayFromVolume(volume), voxels)


def test_the_panel_has_every_control_the_widget_uses():
    widgets = list(ElementTree.parse(UI_FILE).iter("widget"))
    source = (UI_FILE.parents[2] / "MedSegEfficient.py").read_text()
    used = {w.get("name") for w in widgets if f"self.ui.{w.get('name')}" in source}
    # connectGui binds these to the parameter node's fields, by the SlicerParameterName property
    bound = {w.get("name"): prop.find("string").text for w in widgets for prop in w.findall("property")
             if prop.get("name") == "SlicerParameterName"}
    assert {"modelSelector", "importModelButton", "segmentButton", "progressBar", "statusLabel", "resultLabel",
            "undoButton", "deviceInfoLabel", "hiddenModelsLabel", "modelInfoLabel"} <= used
    assert bound == {"inputVolumeSelector": "inputVolume", "deviceSelector": "device", "qualitySelector": "quality",
                     "roiSelector": "roi", "outputSegmentationSelector": "outputSegmentation"}
    fields = source.split("class MedSegEfficientParameterNode:")[1].split("class ")[0]
    assert all(f"    {field}:" in fields for field in bound.values())


def test_the_ui_file_loads_in_real_qt(tmp_path):
    pytest.importorskip("PySide6")
    from PySide6.QtCore import QFile, QIODevice
    from PySide6.QtUiTools import QUiLoader
    from PySide6.QtWidgets import QApplication, QComboBox, QProgressBar, QPushButton

    application = QApplication.instance() or QApplication([])
    # Slicer-only classes (qMRMLWidget, ctkCollapsibleButton, qMRMLNodeComboBox) fall back to QWidget.
    text = UI_FILE.read_text()
    for slicer_class in ("qMRMLWidget", "ctkCollapsibleButton", "qMRMLNodeComboBox"):
        text = text.replace(f'class="{slicer_class}"', 'class="QWidget"')
    plain = tmp_path / "panel.ui"
    plain.write_text(text)
    handle = QFile(str(plain))
    assert handle.open(QIODevice.ReadOnly)
    panel = QUiLoader().load(handle)
    handle.close()
    assert panel is not None, application
    assert panel.findChild(QPushButton, "segmentButton").text() == "Segment"
    assert not panel.findChild(QPushButton, "segmentButton").isEnabled()  # until a volume is chosen
    assert panel.findChild(QProgressBar, "progressBar") is not None
    assert panel.findChild(QComboBox, "modelSelector") is not None


def test_the_factory_self_test_without_torch_tests_the_panel_and_says_it_skipped_the_network(slicer_logics,
                                                                                            monkeypatch):
    """Slicer's factory runs the module's test in testing mode before the PyTorch extension has installed torch:
    the test must pass there, test what needs no torch, and say what it skipped."""
    from slicer_application_standin import import_module_file

    slicer_logics.install_application_globals()
    monkeypatch.setitem(sys.modules, "torch", None)  # as in a Slicer without the PyTorch extension's torch
    module = import_module_file(testing=True)
    module.application.complete_startup()
    test = module.MedSegEfficientTest()
    test.runTest()
    assert module.application.displayed == ["PyTorch is not installed: the network part of the self-test was skipped"]
    assert module.application.errors == []


@pytest.mark.slow
def test_the_factory_self_test_with_torch_segments_the_phantom(slicer_logics):
    from slicer_application_standin import import_module_file

    slicer_logics.install_application_globals()
    module = import_module_file(testing=True)
    module.application.complete_startup()
    module.MedSegEfficientTest().runTest()
    assert module.application.displayed == ["MedSegEfficient self-test passed, network included"]


def test_reloading_the_module_reloads_the_lib_and_cleans_up_the_old_widget(tmp_path):
    """Slicer's Reload re-reads the module file only and calls the old widget's cleanup(): the widget drops the Lib
    so that its edits load too, and the old widget stops polling and ends its worker. (In a child process: the
    reload replaces the Lib's modules, which the other tests hold.)"""
    import subprocess
    import textwrap

    testing = Path(__file__).resolve().parent
    code = textwrap.dedent(f"""
        import os, sys
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        os.environ["MEDSEG_MODELS_DIR"] = {str(tmp_path)!r}
        sys.path[:0] = [{str(testing.parent / "MedSegEfficient")!r}, {str(testing)!r}]
        from slicer_scene import SlicerLogics
        from slicer_application_standin import import_module_file
        SlicerLogics().install_application_globals()
        module = import_module_file()
        module.application.complete_startup()
        old = module.application.open_module()
        before = module.MedSegEfficientLogic
        worker = old.logic.worker()
        status = worker.submit("preflight", {{"shape": [8, 8, 8], "dtype": "int16",
                                              "geometry": {{"ijk_to_ras": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}},
                                              "model": old.logic.defaultModelPath(), "options": {{"device": "cpu"}}}}).wait(120)
        process = worker.process
        old.onReload()
        new = module.application.widget
        from MedSegEfficientLib.slicer.logic import MedSegEfficientLogic
        print(status.preflight["fits"], new is not old, MedSegEfficientLogic is not before, old._timer.isActive(),
              old._parameterNode is None, len(old.Observations), process.poll() is not None, worker.alive(),
              new.ui.segmentButton.toolTip == "Select an input volume.")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True", "True", "False", "True", "0", "True", "False", "True"], done.stdout
