"""MedSegEfficient: segment the active CT, MRI or RGB image with an efficient deep network, as an editable
segmentation.

Thin by design, as Slicer's scripted-module template: Module, parameter node, Widget and Test. The Logic is
MedSegEfficientLib.slicer.logic.MedSegEfficientLogic (model picker, worker process, region, undo), which imports
neither qt nor torch and is tested without Slicer; the widget only wires it to the panel. The network runs in a
worker process of Slicer's own Python (Slicer's main thread holds the GIL in Qt's event loop, so a Python thread
there would crawl); the panel polls it from a QTimer. Slicer 5.10 or newer.
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

MINIMUM_SLICER = (5, 10)  # Python 3.12, vtkSegment.SetTerminology
if (slicer.app.majorVersion, slicer.app.minorVersion) < MINIMUM_SLICER:
    raise RuntimeError("MedSegEfficient needs Slicer %d.%d or newer; this is Slicer %d.%d"
                       % (*MINIMUM_SLICER, slicer.app.majorVersion, slicer.app.minorVersion))

from MedSegEfficientLib.slicer.logic import MedSegEfficientLogic  # noqa: E402

DEVICES = {"Auto": "auto", "GPU": "cuda", "CPU": "cpu"}
POLL_MILLISECONDS = 100
VOLUME_EVENTS = (slicer.vtkMRMLVolumeNode.ImageDataModifiedEvent, slicer.vtkMRMLTransformableNode.TransformModifiedEvent)
DEMO_MODEL = "abdomen_ct_demo"  # the self-test's model: small and fast on a CPU


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
        # With the module, not the panel: a script may use the Logic before the panel is ever opened.
        slicer.app.connect("startupCompleted()", loadTerminology)


def loadTerminology():
    """The codes our models use that Slicer's terminology lists lack."""
    MedSegEfficientLogic.loadTerminology(slicer.modules.terminologies.logic())


@parameterNodeWrapper
class MedSegEfficientParameterNode:
    # Concrete classes only: Slicer finds a selector's node types by instantiating the declared class. Vector
    # (RGB) volumes are scalar volume nodes; the .ui hides label maps and tensors.
    inputVolume: slicer.vtkMRMLScalarVolumeNode
    modelPath: str = ""
    device: Annotated[str, Choice(list(DEVICES))] = "Auto"
    quality: Annotated[str, Choice(["Full", "Fast"])] = "Full"
    roi: slicer.vtkMRMLMarkupsROINode  # None: the whole volume
    outputSegmentation: slicer.vtkMRMLSegmentationNode  # None: a new segmentation


class MedSegEfficientWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: settings persist in the scene's parameter node; Segment runs in the worker process."""

    def __init__(self, parent=None):
        VTKObservationMixin.__init__(self)  # first: without a parent, Slicer's base __init__ runs setup() itself
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._run = None  # the WorkerRun in flight
        self._runKind = "segment"  # or "improve": fine-tuning, which has its own button and end
        self._prepared = None
        self._outputOfRun = None  # the segmentation the run in flight writes into (None: a new one)
        self._lastResult = None
        self._cancelReason = ""
        self._timer = None
        self._deviceProbe = None
        self._observedVolume = None  # the input volume whose voxels, geometry and transform the panel watches
        # Dialogs, replaceable so that tests can answer them.
        self.chooseModelFile = lambda: qt.QFileDialog.getOpenFileName(
            None, "Import model file", "", "MedSegEfficient model (*.safetensors)")
        self.askPreflight = self._askPreflight
        self.improveMinutes = None  # "Improve model"'s time budget; None: 4 min on a GPU, 25 on a CPU
        ScriptedLoadableModuleWidget.__init__(self, parent)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        panel = slicer.util.loadUI(self.resourcePath("UI/MedSegEfficient.ui"))
        self.layout.addWidget(panel)
        self.ui = slicer.util.childWidgetVariables(panel)
        panel.setMRMLScene(slicer.mrmlScene)
        self.logic = MedSegEfficientLogic(ensureDependencies=ensureDependencies)
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_MILLISECONDS)
        self._timer.timeout.connect(self._poll)
        self.ui.segmentButton.clicked.connect(self.onSegmentButton)
        self.ui.importModelButton.clicked.connect(self.onImportModel)
        self.ui.undoButton.clicked.connect(self.onUndo)
        self.ui.addCaseButton.clicked.connect(self.onAddCase)
        self.ui.improveButton.clicked.connect(self.onImproveButton)
        self.ui.modelSelector.currentIndexChanged.connect(self._onModelChosen)
        # The driver is asked in a child process that _poll reads: setup never waits for nvidia-smi.
        self.ui.deviceInfoLabel.text = "Auto: looking for a GPU..."
        self._deviceProbe = self.logic.startDeviceProbe()
        self._timer.start()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        # A run is left alone safely: removing its input (or output) node cancels it.
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAboutToBeRemovedEvent, self.onNodeAboutToBeRemoved)
        self.initializeParameterNode()

    def cleanup(self):
        """Application exit and module reload: the timer stops, a run is cancelled and the worker ends."""
        if self._timer is not None:
            self._timer.stop()
        self._cancelRun("the module was closed")
        self._run = None
        if self.logic is not None:
            self.logic.shutdown()
        self.setParameterNode(None)
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        # Nothing listens while the module is hidden: the GUI bindings and the parameter-node observer go. A run
        # in flight goes on; its result is added when it ends.
        self.setParameterNode(None)

    def onReload(self):
        """Reload the Lib too (Slicer's reload re-reads only this file): its modules are dropped and re-imported."""
        for name in [name for name in sys.modules if name == "MedSegEfficientLib" or name.startswith("MedSegEfficientLib.")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    def onSceneStartClose(self, caller, event):
        self._cancelRun("the scene was closed")
        self.setParameterNode(None)  # it is being reset: the GUI lets go of it

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAboutToBeRemoved(self, caller, event, node):
        if self._prepared is not None and node in (self._prepared.volume_node, self._outputOfRun):
            self._cancelRun(f"{node.GetName()} was removed")

    def _cancelRun(self, reason):
        if self._run is not None and self._runKind == "segment":  # fine-tuning reads files, not the scene
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
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = parameterNode
        if not self._parameterNode:
            self._observeInputVolume(None)
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None):
        self._observeInputVolume(self._parameterNode.inputVolume if self._parameterNode else None)
        self.refreshModels()
        self._checkCanApply()

    def _observeInputVolume(self, volume):
        """A volume gets its voxels or a transform after it is selected (a selector picks a node as it is added):
        the model list and the Segment button follow."""
        if volume is self._observedVolume:
            return
        if self._observedVolume is not None:
            for event in VOLUME_EVENTS:
                self.removeObserver(self._observedVolume, event, self._onInputVolumeModified)
        self._observedVolume = volume
        if volume is not None:
            for event in VOLUME_EVENTS:
                self.addObserver(volume, event, self._onInputVolumeModified)

    def _onInputVolumeModified(self, caller=None, event=None):
        self.refreshModels()
        self._checkCanApply()

    # --- models ---------------------------------------------------------------------------------------------
    def refreshModels(self):
        """Only the models whose card fits the input, and a line saying which are hidden and why."""
        if self._parameterNode is None:
            return  # the module is hidden (or the scene closing): enter() refreshes
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
        if index >= 0 and self._parameterNode is not None:
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
        if self._parameterNode is None:
            return
        reason = self.logic.whyCannotRun(self._parameterNode)
        improving = self._run is not None and self._runKind == "improve"
        self.ui.segmentButton.enabled = not improving and (self._run is not None or not reason)
        self.ui.segmentButton.toolTip = reason or "Segment the input volume with the selected model."
        self.ui.improveButton.enabled = improving or (self._run is None and bool(self._parameterNode.modelPath))
        self.ui.addCaseButton.enabled = self._run is None

    def onSegmentButton(self):
        if self._run is not None:
            self._cancelRun("by the user")
            self.ui.statusLabel.text = "Cancelling..."
            return
        params = self._parameterNode
        self._startRun(DEVICES[params.device], params.quality == "Fast", None, checkMemory=True)

    def _startRun(self, device, fast, batch, checkMemory):
        """The run goes to the worker; with ``checkMemory`` it first checks that the run fits and, if not, stops
        to ask (``_finish`` then offers Fast mode, the CPU or running anyway)."""
        params = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Segmentation cannot start.", waitCursor=True):
            self._prepared = self.logic.prepare(params.inputVolume, params.modelPath, device, fast, batch, params.roi,
                                                checkMemory=checkMemory)
            self._outputOfRun = params.outputSegmentation
            self._cancelReason = ""
            self._run = self.logic.startBackground(self._prepared, checkFirst=checkMemory)
            self.ui.segmentButton.text = "Cancel"
            self.ui.progressBar.value = 0
            self.ui.resultLabel.text = ""
            self._timer.start()

    def _poll(self):
        if self._deviceProbe is not None:
            line = self._deviceProbe.poll()
            if line is not None:
                self.ui.deviceInfoLabel.text = line
                self._deviceProbe = None
        if self._run is None:
            if self._deviceProbe is None:
                self._timer.stop()
            return
        status = self._run.status()
        self.ui.progressBar.value = int(round(100 * status.fraction))
        self.ui.statusLabel.text = status.stage
        if status.done:
            self._finish(status)

    def _finish(self, status):
        self._run = None
        if self._runKind == "improve":
            return self._finishImprove(status)
        self.ui.segmentButton.text = "Segment"
        prepared, output = self._prepared, self._outputOfRun
        self._prepared = self._outputOfRun = None
        try:
            if status.cancelled:
                self.ui.statusLabel.text = f"Cancelled ({self._cancelReason or 'by the user'}): the scene is unchanged."
            elif status.preflight is not None:
                self._askAndRestart(prepared, status.preflight)
            elif status.error is not None:
                if status.traceback:
                    logging.error("MedSegEfficient run failed:\n" + status.traceback)
                self.ui.statusLabel.text = f"Failed: {status.error}. The scene is unchanged."
                slicer.util.errorDisplay(f"Segmentation failed: {status.error}", detailedText=status.traceback)
            else:
                with slicer.util.tryWithErrorDisplay("The segmentation could not be added to the scene."):
                    self._lastResult = self.logic.apply(prepared, status.result, output)
                    self.ui.progressBar.value = 100
                    self.ui.statusLabel.text = "Done."
                    report = self._lastResult.report
                    self.ui.resultLabel.text = "\n".join([report.summary(), *(f"Note: {n}" for n in report.notices)])
                    self.ui.undoButton.enabled = self._lastResult.undo is not None
                self.refreshModels()  # the measured speed
        finally:
            self._checkCanApply()

    def _askAndRestart(self, prepared, preflight):
        """The run would not fit: the user picks Fast mode, the CPU, running anyway, or nothing."""
        self.ui.statusLabel.text = "Needs more memory than is free."
        choice = self.askPreflight(preflight)
        if choice is None or self._parameterNode is None:
            self.ui.statusLabel.text = "Not run: the scene is unchanged."
            return
        options = prepared.options
        device, fast, batch = {"fast": (options["device"], True, 1), "cpu": ("cpu", options["fast"], None),
                               "anyway": (options["device"], options["fast"], None)}[choice]
        self._startRun(device, fast, batch, checkMemory=False)

    def onUndo(self):
        if self._lastResult is not None and self._lastResult.undo is not None:
            self._lastResult.undo.restore()
            self.ui.undoButton.enabled = False
            self.ui.statusLabel.text = "The last run was undone."

    # --- learning from corrections ---------------------------------------------------------------------------
    def onAddCase(self):
        """The output selector's segmentation (else the last run's), corrected by the user, as a training case."""
        params = self._parameterNode
        last = self._lastResult.segmentation_node if self._lastResult is not None else None
        segmentation = params.outputSegmentation or last
        with slicer.util.tryWithErrorDisplay("The case could not be added.", waitCursor=True):
            if params.inputVolume is None or segmentation is None or not slicer.mrmlScene.IsNodePresent(segmentation):
                raise ValueError("Segment the volume and correct the result first, or choose the corrected "
                                 "segmentation as the output segmentation.")
            added = self.logic.addTrainingCase(params.inputVolume, segmentation, params.modelPath)
            self.ui.casesLabel.text = f"Kept case {added['case']}: {added['count']} case(s) in {added['folder']}."

    def onImproveButton(self):
        if self._run is not None:
            if self._runKind == "improve":
                self._run.cancel()
                self.ui.statusLabel.text = "Cancelling..."
            return
        params = self._parameterNode
        with slicer.util.tryWithErrorDisplay("The model cannot be improved.", waitCursor=True):
            self._run = self.logic.startImproveModel(params.modelPath, DEVICES[params.device], self.improveMinutes)
            self._runKind = "improve"
            self.ui.improveButton.text = "Cancel improving"
            self.ui.progressBar.value = 0
            self._checkCanApply()
            self._timer.start()

    def _finishImprove(self, status):
        self._runKind = "segment"
        self.ui.improveButton.text = "Improve model"
        try:
            if status.cancelled:
                self.ui.statusLabel.text = "Improving was cancelled: the model is unchanged, nothing was written."
            elif status.error is not None:
                self.ui.statusLabel.text = f"Improving failed: {status.error}. The model is unchanged."
                slicer.util.errorDisplay(f"The model could not be improved: {status.error}",
                                         detailedText=status.traceback)
            else:
                self.ui.progressBar.value = 100
                self.ui.statusLabel.text = "Done."
                self.ui.casesLabel.text = status.result["summary"]
                if status.result["kept"] and self._parameterNode is not None:
                    self._parameterNode.modelPath = status.result["output"]  # the new one, beside the old
                self.refreshModels()
        finally:
            self._checkCanApply()

    def _askPreflight(self, preflight):
        """'fast', 'cpu', 'anyway' or None (do not run)."""
        box = qt.QMessageBox()
        box.setWindowTitle("MedSegEfficient")
        box.setText("This run " + preflight["message"])
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
    """Slicer's factory runs this (ctest, testing mode). Without PyTorch (the PyTorch extension installs it only at
    run time) it tests the panel, the parameter node, the model list and a scene round trip, and says that it
    skipped the network; with PyTorch it also segments a phantom CT with the demo model."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_panel_binds_the_parameter_node_and_lists_models()
        self.setUp()
        self.test_scene_round_trip_of_labels()
        self.setUp()
        self.test_demo_model_segments_a_phantom()

    def phantom(self):
        import numpy as np

        volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "phantom CT")
        volume.SetSpacing(1.5, 1.5, 3.0)
        array = np.full((40, 96, 96), -1000, np.int16)
        array[5:35, 16:80, 16:80] = 40  # a soft-tissue body
        array[10:30, 30:60, 20:45] = 60  # a liver-like block
        slicer.util.updateVolumeFromArray(volume, array)
        return volume

    def test_panel_binds_the_parameter_node_and_lists_models(self):
        slicer.util.selectModule("MedSegEfficient")
        widget = slicer.util.getModuleWidget("MedSegEfficient")
        volume = self.phantom()
        widget.ui.inputVolumeSelector.setCurrentNode(volume)
        self.assertEqual(widget._parameterNode.inputVolume, volume)
        self.assertGreater(widget.ui.modelSelector.count, 0, "no model listed for a CT")
        self.assertTrue(widget.ui.segmentButton.enabled, widget.ui.segmentButton.toolTip)
        widget.ui.qualitySelector.currentIndex = 1
        self.assertEqual(widget._parameterNode.quality, "Fast")

    def test_scene_round_trip_of_labels(self):
        """Labels as the worker returns them become a segmentation whose segments give the same voxels back."""
        import numpy as np
        from MedSegEfficientLib.inference.run_report import RunReport, SegmentationResult
        from MedSegEfficientLib.model.library import resolve_model_path
        from MedSegEfficientLib.model.model_file import read_card

        volume = self.phantom()
        logic = MedSegEfficientLogic(ensureDependencies=ensureDependencies)
        prepared = logic.prepare(volume, str(resolve_model_path(DEMO_MODEL)))
        labels_of = read_card(prepared.model_path).labels
        labels = np.zeros(prepared.volume.grid_shape, np.uint8)
        labels[10:30, 30:60, 20:45] = labels_of[0].value
        labels[5:9, 16:80, 16:80] = labels_of[1].value
        node = logic.apply(prepared, SegmentationResult(labels, RunReport(device="none"))).segmentation_node
        segmentation = node.GetSegmentation()
        for label in labels_of[:2]:
            segment_id = segmentation.GetSegmentIdBySegmentName(label.name)
            self.assertTrue(segment_id, f"no segment {label.name}")
            back = slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, volume)
            self.assertTrue(np.array_equal(back > 0, labels == label.value), label.name)

    def test_demo_model_segments_a_phantom(self):
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            self.delayDisplay("PyTorch is not installed: the network part of the self-test was skipped")
            return
        from MedSegEfficientLib.model.library import resolve_model_path
        from MedSegEfficientLib.model.model_file import read_card

        volume = self.phantom()
        logic = MedSegEfficientLogic(ensureDependencies=ensureDependencies)
        try:
            result = logic.process(volume, str(resolve_model_path(DEMO_MODEL)), device="cpu", fast=True)
        finally:
            logic.shutdown()
        segmentation = result.segmentation_node.GetSegmentation()
        names = {segmentation.GetSegment(i).GetName() for i in segmentation.GetSegmentIDs()}
        self.assertTrue(names, "the demo model found no segment in the phantom")
        self.assertTrue(names <= {label.name for label in read_card(resolve_model_path(DEMO_MODEL)).labels})
        geometry = segmentation.GetConversionParameter("Reference image geometry")
        self.assertTrue(geometry.endswith("0;95;0;95;0;39;"))
        self.delayDisplay("MedSegEfficient self-test passed, network included")
