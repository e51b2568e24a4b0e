"""MedSegEfficient: segment the active CT, MRI or RGB image with an efficient deep network, as an editable
segmentation.

Thin by design, as Slicer's scripted-module template: Module, parameter node, Widget and Test. The Logic is
MedSegEfficientLib.slicer.logic.MedSegEfficientLogic (model picker, preflight, background run, region, undo),
which imports neither qt nor torch at module level and is tested without Slicer; the widget only wires it to the
panel. Torch and the other dependencies are installed and imported on the first Segment, not when the panel opens.
"""

import logging
import sys
from typing import Annotated

import qt
import slicer
import vtk
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from MedSegEfficientLib.slicer.logic import MedSegEfficientLogic

DEVICES = {"Auto": "auto", "GPU": "cuda", "CPU": "cpu"}
POLL_MILLISECONDS = 100


class MedSegEfficient(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MedSegEfficient"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["MedSegEfficient maintainers (github.com/medsegefficient)"]
        self.parent.helpText = ("Segment the selected volume with an efficient deep network (shipped or imported "
                                "model file) on the GPU or CPU; the result is an editable segmentation.")
        self.parent.acknowledgementText = ("Sample data and demo labels: TotalSegmentator (Wasserthal et al., "
                                           "Radiology: AI 2023), Apache-2.0.")


@parameterNodeWrapper
class MedSegEfficientParameterNode:
    inputVolume: slicer.vtkMRMLVolumeNode
    modelPath: str = ""
    device: Annotated[str, Choice(list(DEVICES))] = "Auto"
    quality: Annotated[str, Choice(["Full", "Fast"])] = "Full"
    roi: slicer.vtkMRMLMarkupsROINode
    outputSegmentation: slicer.vtkMRMLSegmentationNode


class MedSegEfficientWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: settings persist in the scene's parameter node; Segment runs off the main thread."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._guiConnections = None
        self._run = None  # the BackgroundRun in flight
        self._prepared = None
        self._outputOfRun = None  # the segmentation the run in flight writes into (None: a new one)
        self._lastResult = None
        self._cancelReason = ""
        self._timer = None
        # Dialogs, replaceable so that tests can answer them.
        self.chooseModelFile = lambda: qt.QFileDialog.getOpenFileName(
            None, "Import model file", "", "MedSegEfficient model (*.safetensors)")
        self.askPreflight = self._askPreflight

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        panel = slicer.util.loadUI(self.resourcePath("UI/MedSegEfficient.ui"))
        self.layout.addWidget(panel)
        self.ui = slicer.util.childWidgetVariables(panel)
        panel.setMRMLScene(slicer.mrmlScene)
        self.logic = MedSegEfficientLogic(ensureDependencies=ensureDependencies)
        self.logic.loadTerminology(slicer.modules.terminologies.logic())
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_MILLISECONDS)
        self._timer.timeout.connect(self._poll)
        self.ui.segmentButton.clicked.connect(self.onSegmentButton)
        self.ui.importModelButton.clicked.connect(self.onImportModel)
        self.ui.undoButton.clicked.connect(self.onUndo)
        self.ui.modelSelector.currentIndexChanged.connect(self._onModelChosen)
        self.ui.deviceInfoLabel.text = self.logic.deviceInfo()  # from the driver: no CUDA context at setup
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        # A run is left alone safely: closing the scene or removing its input (or output) node cancels it.
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAboutToBeRemovedEvent, self.onNodeAboutToBeRemoved)
        self.initializeParameterNode()

    def cleanup(self):
        if self._run is not None:
            self._run.cancel()
        self.setParameterNode(None)
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        # Nothing listens while the module is hidden: the GUI bindings and the parameter-node observer go.
        self.setParameterNode(None)

    def onReload(self):
        """Reload the Lib too (Slicer's reload re-reads only this file): its modules are dropped and re-imported."""
        for name in [name for name in sys.modules if name == "MedSegEfficientLib" or name.startswith("MedSegEfficientLib.")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    def onSceneStartClose(self, caller, event):
        self._cancelRun("the scene was closed")

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAboutToBeRemoved(self, caller, event, node):
        if self._prepared is not None and node in (self._prepared.volume_node, self._outputOfRun):
            self._cancelRun(f"{node.GetName()} was removed")

    def _cancelRun(self, reason):
        if self._run is not None:
            self._cancelReason = self._cancelReason or reason  # the first: a closing scene then removes its nodes
            self._run.cancel()

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(MedSegEfficientParameterNode(self.logic.getParameterNode()))
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, parameterNode):
        if self._parameterNode:
            if self._guiConnections is not None:
                self._parameterNode.disconnectGui(self._guiConnections)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._guiConnections = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None):
        self.refreshModels()
        self._checkCanApply()

    # --- models ---------------------------------------------------------------------------------------------
    def refreshModels(self):
        """Only the models whose card fits the input, and a line saying which are hidden and why."""
        fitting, hidden = self.logic.modelChoices(self._parameterNode.inputVolume)
        history = self.logic.runHistory()
        wanted = self._parameterNode.modelPath
        selector = self.ui.modelSelector
        selector.blockSignals(True)
        selector.clear()
        for index, entry in enumerate(fitting):
            selector.addItem(entry["title"], entry["path"])
            selector.setItemData(index, self.logic.describeModel(entry, history), qt.Qt.ToolTipRole)
        paths = [entry["path"] for entry in fitting]
        selector.setCurrentIndex(paths.index(wanted) if wanted in paths else (0 if paths else -1))
        selector.blockSignals(False)
        self.ui.hiddenModelsLabel.text = (f"{len(hidden)} model(s) hidden: " + "; ".join(
            f"{entry.get('title', entry['path'])}: {reason}" for entry, reason in hidden)) if hidden else ""
        chosen = fitting[paths.index(wanted)] if wanted in paths else (fitting[0] if fitting else None)
        self.ui.modelInfoLabel.text = self.logic.describeModel(chosen, history) if chosen else ""
        if chosen and chosen["path"] != wanted:
            self._parameterNode.modelPath = chosen["path"]

    def _onModelChosen(self, index):
        if index >= 0:
            self._parameterNode.modelPath = self.ui.modelSelector.itemData(index)

    def onImportModel(self):
        path = self.chooseModelFile()
        if not path:
            return
        with slicer.util.tryWithErrorDisplay("The model file cannot be imported.", waitCursor=True):
            imported = self.logic.importModel(path)
            self._parameterNode.modelPath = imported
            self.ui.statusLabel.text = f"Imported {imported}"

    # --- running ------------------------------------------------------------------------------------------
    def _checkCanApply(self):
        reason = self.logic.whyCannotRun(self._parameterNode)
        self.ui.segmentButton.enabled = self._run is not None or not reason
        self.ui.segmentButton.toolTip = reason or "Segment the input volume with the selected model."

    def onSegmentButton(self):
        if self._run is not None:
            self._cancelRun("by the user")
            self.ui.statusLabel.text = "Cancelling..."
            return
        params = self._parameterNode
        device, fast, batch = DEVICES[params.device], params.quality == "Fast", None
        with slicer.util.tryWithErrorDisplay("Segmentation cannot start.", waitCursor=True):
            preflight = self.logic.preflight(params.inputVolume, params.modelPath, device)
            if not preflight.fits:
                choice = self.askPreflight(preflight)
                if choice is None:
                    return
                device, fast, batch = {"fast": (device, True, 1), "cpu": ("cpu", fast, None),
                                       "anyway": (device, fast, None)}[choice]
            self._prepared = self.logic.prepare(params.inputVolume, params.modelPath, device, fast, batch,
                                                params.roi, checkMemory=preflight.fits)
            self._outputOfRun = params.outputSegmentation
            self._cancelReason = ""
            self._run = self.logic.startBackground(self._prepared)
            self.ui.segmentButton.text = "Cancel"
            self.ui.progressBar.value = 0
            self.ui.resultLabel.text = ""
            self._timer.start()

    def _poll(self):
        status = self._run.status()
        self.ui.progressBar.value = int(round(100 * status.fraction))
        self.ui.statusLabel.text = status.stage
        if status.done:
            self._finish(status)

    def _finish(self, status):
        self._timer.stop()
        self._run = None
        self.ui.segmentButton.text = "Segment"
        try:
            if status.cancelled:
                self.ui.statusLabel.text = f"Cancelled ({self._cancelReason or 'by the user'}): the scene is unchanged."
            elif status.error is not None:
                logging.error("MedSegEfficient run failed:\n" + status.traceback)
                self.ui.statusLabel.text = "Failed: the scene is unchanged."
                slicer.util.errorDisplay(f"Segmentation failed: {status.error}", detailedText=status.traceback)
            else:
                with slicer.util.tryWithErrorDisplay("The segmentation could not be added to the scene."):
                    self._lastResult = self.logic.apply(self._prepared, status.result, self._outputOfRun)
                    self.ui.progressBar.value = 100
                    self.ui.statusLabel.text = "Done."
                    report = self._lastResult.report
                    self.ui.resultLabel.text = "\n".join([report.summary(), *(f"Note: {n}" for n in report.notices)])
                    self.ui.undoButton.enabled = self._lastResult.undo is not None
                    self.refreshModels()  # the measured speed
        finally:
            self._prepared = self._outputOfRun = None
            self._checkCanApply()

    def onUndo(self):
        if self._lastResult is not None and self._lastResult.undo is not None:
            self._lastResult.undo.restore()
            self.ui.undoButton.enabled = False
            self.ui.statusLabel.text = "The last run was undone."

    def _askPreflight(self, preflight):
        """'fast', 'cpu', 'anyway' or None (do not run)."""
        box = qt.QMessageBox()
        box.setWindowTitle("MedSegEfficient")
        box.setText("This run " + preflight.message())
        buttons = {box.addButton("Fast mode", qt.QMessageBox.AcceptRole): "fast",
                   box.addButton("Use the CPU", qt.QMessageBox.AcceptRole): "cpu",
                   box.addButton("Run anyway", qt.QMessageBox.DestructiveRole): "anyway"}
        box.addButton(qt.QMessageBox.Cancel)
        box.exec_()
        return buttons.get(box.clickedButton())


def ensureDependencies():
    """Torch through the PyTorch extension, the rest through pip, after asking; never installs in testing mode."""
    from MedSegEfficientLib.slicer.dependencies import ensure_dependencies

    ensure_dependencies(slicer, slicer.app.testingEnabled(), slicer.util.confirmOkCancelDisplay)


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
        logic = MedSegEfficientLogic(ensureDependencies=ensureDependencies)
        result = logic.process(volume, None, device="cpu", fast=True)
        segmentation = result.segmentation_node
        self.assertIsNotNone(segmentation)
        names = {segmentation.GetSegmentation().GetSegment(i).GetName()
                 for i in segmentation.GetSegmentation().GetSegmentIDs()}
        from MedSegEfficientLib.model.model_file import read_card

        self.assertTrue(names, "the demo model found no segment in the phantom")
        self.assertTrue(names <= {label.name for label in read_card(logic.defaultModelPath()).labels})
        geometry = segmentation.GetSegmentation().GetConversionParameter("Reference image geometry")
        self.assertTrue(geometry.endswith("0;95;0;95;0;39;"))
        self.delayDisplay("MedSegEfficient self-test passed")
