"""MedSegEfficient: segment the active CT or MRI with an efficient deep network, as an editable segmentation.

Thin by design: Module, Widget, Logic and Test classes only. Everything else lives in MedSegEfficientLib, which
imports neither qt nor slicer at module level and is tested without Slicer.
"""

import logging

import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin


class MedSegEfficient(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MedSegEfficient"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["MedSegEfficient developers"]
        self.parent.helpText = ("Segment the selected volume with an efficient deep network (shipped or imported "
                                "model file) on the GPU or CPU; the result is an editable segmentation.")
        self.parent.acknowledgementText = ("Sample data and demo labels: TotalSegmentator (Wasserthal et al., "
                                           "Radiology: AI 2023), Apache-2.0.")


class MedSegEfficientWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Input volume, model, device and quality; Segment runs the Logic and shows progress and the result line."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._cancel_requested = False
        self._running = False

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        panel = slicer.util.loadUI(self.resourcePath("UI/MedSegEfficient.ui"))
        self.layout.addWidget(panel)
        self.ui = slicer.util.childWidgetVariables(panel)
        panel.setMRMLScene(slicer.mrmlScene)
        self.logic = MedSegEfficientLogic()
        for entry in self.logic.modelChoices():
            self.ui.modelSelector.addItem(f"{entry['title']} ({entry['network']})", entry["path"])
        self.ui.deviceSelector.addItems(["Auto", "GPU", "CPU"])
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._updateSegmentButton)
        self._updateSegmentButton()

    def _updateSegmentButton(self, *_):
        reason = ""
        if self.ui.inputVolumeSelector.currentNode() is None:
            reason = "Select an input volume."
        elif self.ui.modelSelector.count == 0:
            reason = "No model file found; import one first."
        self.ui.segmentButton.enabled = self._running or not reason
        self.ui.segmentButton.toolTip = reason or "Segment the input volume with the selected model."

    def onSegmentButton(self):
        if self._running:
            self._cancel_requested = True
            return
        self._running, self._cancel_requested = True, False
        self.ui.segmentButton.text = "Cancel"
        device = {"Auto": "auto", "GPU": "cuda", "CPU": "cpu"}[self.ui.deviceSelector.currentText]
        try:
            with slicer.util.tryWithErrorDisplay("Segmentation failed.", waitCursor=True):
                result = self.logic.process(self.ui.inputVolumeSelector.currentNode(),
                                            self.ui.modelSelector.currentData, device=device,
                                            fast=self.ui.fastCheckBox.checked, progress=self._onProgress,
                                            cancel=lambda: self._cancel_requested)
                self.ui.statusLabel.text = result.report.summary()
        finally:
            self._running = False
            self.ui.segmentButton.text = "Segment"
            self._updateSegmentButton()

    def _onProgress(self, fraction, stage):
        self.ui.progressBar.value = int(round(fraction * 100))
        self.ui.statusLabel.text = stage
        slicer.app.processEvents()  # keeps Cancel clickable; the full panel runs the network off the main thread


class MedSegEfficientLogic(ScriptedLoadableModuleLogic):
    """Delegates to MedSegEfficientLib on slicer.mrmlScene; keeps the model loaded between runs."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        from MedSegEfficientLib.volume_node_runner import VolumeNodeSegmenter

        self._runner = VolumeNodeSegmenter()

    @staticmethod
    def modelChoices():
        from MedSegEfficientLib.volume_node_runner import model_choices

        return model_choices()

    @staticmethod
    def defaultModelPath():
        from MedSegEfficientLib.checkpoint import default_model_path

        return str(default_model_path())

    def process(self, inputVolume, modelPath, device="auto", fast=False, progress=None, cancel=None,
                outputSegmentation=None):
        from MedSegEfficientLib.engine import SegmentOptions

        if inputVolume is None:
            raise ValueError("Input volume is missing")
        result = self._runner.run(slicer.mrmlScene, inputVolume, modelPath or self.defaultModelPath(),
                                  SegmentOptions(device=device, fast=fast), progress=progress, cancel=cancel,
                                  segmentation_node=outputSegmentation)
        logging.info(f"MedSegEfficient: {result.report.summary()}")
        return result


class MedSegEfficientTest(ScriptedLoadableModuleTest):
    """Runs in a real Slicer: the demo model on a synthetic CT volume node, then checks segments and geometry."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_demo_model_on_volume_node()

    def test_demo_model_on_volume_node(self):
        import numpy as np

        volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "phantom CT")
        volume.SetSpacing(1.5, 1.5, 3.0)
        array = np.full((40, 96, 96), -1000, np.int16)
        array[5:35, 16:80, 16:80] = 40  # a soft-tissue body
        array[10:30, 30:60, 20:45] = 60  # a liver-like block
        slicer.util.updateVolumeFromArray(volume, array)
        result = MedSegEfficientLogic().process(volume, None, device="cpu", fast=True)
        segmentation = result.segmentation_node
        self.assertIsNotNone(segmentation)
        names = {segmentation.GetSegmentation().GetSegment(i).GetName()
                 for i in segmentation.GetSegmentation().GetSegmentIDs()}
        from MedSegEfficientLib.checkpoint import read_card

        allowed = {label.name for label in read_card(MedSegEfficientLogic.defaultModelPath()).labels}
        self.assertTrue(names <= allowed)
        geometry = segmentation.GetSegmentation().GetConversionParameter("Reference image geometry")
        self.assertTrue(geometry.endswith("0;95;0;95;0;39;"))
        self.delayDisplay("MedSegEfficient self-test passed")
