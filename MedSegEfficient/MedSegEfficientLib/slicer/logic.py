"""The Slicer module's one Logic: every call the panel and scripts make, on an explicit scene, without Qt.

Methods keep Slicer's camelCase: scripts call them on the module's Logic. A run has three steps: ``prepare`` reads
the node (and the optional ROI) on the main thread; the network runs in the segmentation worker, a process of
Slicer's own Python (worker_client.py), started on the first run and kept warm; ``apply`` writes the segmentation on
the main thread. The scene changes only in ``apply``, after the run has succeeded, so a failure, a cancel or a
crashed worker leaves it as it was. ``process`` does the three and waits (scripts and the self-test).

Slicer's process never imports torch: listing models, the device line and the parameter node need neither torch
nor CUDA, and the memory check, the run and the model import happen in the worker. The dependencies are checked
(and installed, after asking) before the worker is first started.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from MedSegEfficientLib.errors import Cancelled, InputImageError, MedSegError
from MedSegEfficientLib.inference.region import Box, crop, paste, voxel_box
from MedSegEfficientLib.inference.run_report import SegmentationResult
from MedSegEfficientLib.model.library import default_model_path
from MedSegEfficientLib.model.model_file import read_card
from MedSegEfficientLib.model.terminology import EXTRA_FILE
from MedSegEfficientLib.inference.gpu.gpu_probe import GpuProbe
from MedSegEfficientLib.slicer.corrections import labels_from_segmentation_node
from MedSegEfficientLib.slicer.model_picker import InputShape, describe_choice, load_history, model_choices, record_run
from MedSegEfficientLib.slicer.scene import (SegmentationSnapshot, labels_to_segmentation_node, place_in_study,
                                             volume_from_node)
from MedSegEfficientLib.slicer.worker_client import RunStatus, SegmentationWorker, WorkerRun
from MedSegEfficientLib.slicer.worker_protocol import volume_header
from MedSegEfficientLib.volume import Volume

MODULE_NAME = "MedSegEfficient"
MODEL_ATTRIBUTE = "MedSegEfficient.ModelPath"  # on a segmentation a run made: the model whose numbering it has


@dataclass
class PreparedRun:
    volume_node: Any
    volume: Volume  # the region to segment (the whole volume without an ROI)
    grid_shape: tuple[int, int, int]  # the whole volume's
    box: Box | None
    model_path: str
    options: dict[str, Any]  # inference.engine.SegmentOptions' fields, made in the worker


@dataclass
class NodeResult:
    segmentation_node: Any
    report: Any  # inference.engine.RunReport
    undo: SegmentationSnapshot | None = None  # set when the run replaced an existing segmentation


def _application_scene():
    import slicer

    return slicer.mrmlScene


class MedSegEfficientLogic:
    """``scene``: a callable giving the scene (Slicer swaps ``slicer.mrmlScene``'s content, not the object; the
    default is the application's). ``ensureDependencies``: called before the worker is first started (the module
    passes Slicer's installer; plain Python has its packages already). ``worker``: the segmentation worker (one is
    made on the first run)."""

    def __init__(self, scene: Callable[[], Any] | None = None,
                 ensureDependencies: Callable[[], None] | None = None,
                 worker: SegmentationWorker | None = None) -> None:
        self._scene = scene or _application_scene
        self._ensureDependencies = ensureDependencies or (lambda: None)
        self._worker = worker  # kept warm between runs, as a Slicer session segments one volume after another

    # --- before any dependency is needed ---------------------------------------------------------------------
    def getParameterNode(self):
        """The scene's singleton parameter node of this module, as ScriptedLoadableModuleLogic makes it."""
        import slicer

        scene = self._scene()
        node = scene.GetSingletonNode(MODULE_NAME, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag(MODULE_NAME)
            node.SetAttribute("ModuleName", MODULE_NAME)
            node = scene.AddNode(node)
        return node

    @staticmethod
    def loadTerminology(terminologiesLogic) -> str:
        """Load the codes our models use that Slicer's terminology lists lack; returns the context's name."""
        return terminologiesLogic.LoadTerminologyFromFile(str(EXTRA_FILE))

    @staticmethod
    def modelChoices(volumeNode=None) -> tuple[list[dict], list[tuple[dict, str]]]:
        """Models that fit the volume; every model when the volume cannot be read (whyCannotRun says why)."""
        try:
            shape = InputShape.of(volume_from_node(volumeNode)) if volumeNode is not None else None
        except InputImageError:
            shape = None
        return model_choices(shape)

    @staticmethod
    def describeModel(entry: dict, history: dict) -> str:
        return describe_choice(entry, history)

    @staticmethod
    def runHistory() -> dict:
        return load_history()

    @staticmethod
    def startDeviceProbe() -> GpuProbe:
        """The device line, from the driver in a child process: poll it; setup never waits for nvidia-smi."""
        return GpuProbe().start()

    @staticmethod
    def whyCannotRun(params) -> str:
        if params is None or params.inputVolume is None:
            return "Select an input volume."
        try:
            volume_from_node(params.inputVolume)
        except InputImageError as error:
            return f"The input volume cannot be segmented: {error}."
        if not params.modelPath:
            return "No model fits this input; import one (the hidden models say why)."
        return ""

    @staticmethod
    def defaultModelPath() -> str:
        return str(default_model_path())

    # --- the worker: torch lives there -----------------------------------------------------------------------
    def worker(self) -> SegmentationWorker:
        if self._worker is None or not self._worker.alive():
            self._ensureDependencies()
        if self._worker is None:
            self._worker = SegmentationWorker()
        return self._worker

    def shutdown(self) -> None:
        """End the worker (module reload, application exit): its memory, GPU memory included, is freed."""
        if self._worker is not None:
            self._worker.stop()

    def importModel(self, path: str) -> str:
        """Check a model file completely (in the worker: every weight is read with torch), then copy it in."""
        return str(self._result(self.worker().submit("import_model", {"path": str(path)}).wait()))

    def preflight(self, volumeNode, modelPath: str | None, device: str = "auto") -> dict:
        """The memory check alone: {'fits', 'message', 'advice', 'ram_bytes', 'gpu_bytes'}."""
        volume = volume_from_node(volumeNode)
        request = {"shape": list(volume.array.shape), "dtype": volume.array.dtype.name, "geometry": volume_header(volume),
                   "model": str(modelPath or default_model_path()), "options": {"device": device}}
        status = self.worker().submit("preflight", request).wait()
        self._result(status)
        return status.preflight

    def prepare(self, volumeNode, modelPath: str | None, device: str = "auto", fast: bool = False,
                batch: int | None = None, roiNode=None, checkMemory: bool = True) -> PreparedRun:
        """``checkMemory``: refuse a run that would exceed the RAM available; False once the user has seen the
        preflight's figures and chosen to run."""
        volume = volume_from_node(volumeNode)
        box = None
        if roiNode is not None:
            bounds = [0.0] * 6
            roiNode.GetRASBounds(bounds)
            box = voxel_box(volume, bounds)
        region = crop(volume, box) if box is not None else volume
        options = {"device": device, "fast": fast, "batch_size": batch, "check_memory": checkMemory}
        return PreparedRun(volumeNode, region, volume.grid_shape, box, str(modelPath or default_model_path()),
                           options)

    def startBackground(self, prepared: PreparedRun, checkFirst: bool = False) -> WorkerRun:
        """Send the run to the worker; the voxels are copied into the exchange file now, on the main thread, so the
        user may edit or delete the node while it runs. ``checkFirst``: stop with a 'preflight' status instead of
        running when the memory check fails (the panel then asks the user)."""
        volume = prepared.volume
        request = {"model": prepared.model_path, "options": prepared.options, "geometry": volume_header(volume),
                   "check_first": checkFirst}
        return self.worker().submit("segment", request, {"input": np.ascontiguousarray(volume.array)})

    def compute(self, prepared: PreparedRun, progress=None, cancel=None) -> SegmentationResult:
        """The network's run in the worker, waited for on the calling thread; touches no node."""
        run = self.startBackground(prepared)
        while True:
            status = run.wait(0.1)
            if progress is not None:
                progress(status.fraction, status.stage)
            if status.done:
                return self._result(status)
            if cancel is not None and cancel():
                run.cancel()

    @staticmethod
    def _result(status: RunStatus):
        if status.cancelled:
            raise Cancelled("the run was cancelled")
        if status.error is not None:
            raise MedSegError(status.error)
        return status.result

    def apply(self, prepared: PreparedRun, result, outputSegmentation=None) -> NodeResult:
        """Write the run's labels into a new segmentation beside the input (or into ``outputSegmentation``, kept
        undoable), named, coloured and coded from the model's card."""
        scene = self._scene()
        if not scene.IsNodePresent(prepared.volume_node):
            raise MedSegError("the input volume left the scene during the run (removed, or the scene closed): "
                              "nothing was added")
        if outputSegmentation is not None and not scene.IsNodePresent(outputSegmentation):
            raise MedSegError("the output segmentation was removed during the run: nothing was added")
        card = read_card(prepared.model_path)
        labels = result.labels if prepared.box is None else paste(result.labels, prepared.box, prepared.grid_shape)
        undo = SegmentationSnapshot(outputSegmentation) if outputSegmentation is not None else None
        node = labels_to_segmentation_node(scene, labels, prepared.volume_node, card.labels,
                                           segmentation_node=outputSegmentation,
                                           name=f"{prepared.volume_node.GetName()} {card.name}")
        node.SetAttribute(MODEL_ATTRIBUTE, prepared.model_path)
        if outputSegmentation is None:
            place_in_study(scene, node, prepared.volume_node)
        record_run(prepared.model_path, sum(result.report.seconds.values()), result.report.device)
        logging.info(f"{MODULE_NAME}: {result.report.summary()}")
        return NodeResult(node, result.report, undo)

    # --- learning from corrections (training/user_cases.py, training/finetune.py) ------------------------------
    def segmentationModel(self, segmentationNode, modelPath: str | None = None) -> str:
        """The model that made the segmentation (recorded by ``apply``), else ``modelPath``, else the default."""
        made_by = segmentationNode.GetAttribute(MODEL_ATTRIBUTE) if segmentationNode is not None else None
        return str(made_by or modelPath or default_model_path())

    def addTrainingCase(self, volumeNode, segmentationNode, modelPath: str | None = None,
                        casesFolder: str | None = None) -> dict:
        """Keep the (corrected) segmentation of the volume as a training case of the model that made it: labels in
        its numbering (segments it does not know are refused by name), written by the worker. Returns {'case',
        'folder', 'count'}."""
        if volumeNode is None or segmentationNode is None:
            raise MedSegError("a volume and its corrected segmentation are needed")
        model = self.segmentationModel(segmentationNode, modelPath)
        labels = labels_from_segmentation_node(self._scene(), segmentationNode, volumeNode, read_card(model))
        volume = volume_from_node(volumeNode)
        request = {"model": model, "geometry": volume_header(volume), "name": volumeNode.GetName(),
                   "source": f"Slicer: {volumeNode.GetName()} / {segmentationNode.GetName()}", "cases": casesFolder}
        arrays = {"input": np.ascontiguousarray(volume.array), "labels": labels}
        return self._result(self.worker().submit("add_case", request, arrays).wait())

    def startImproveModel(self, modelPath: str | None, device: str = "auto", minutes: float | None = None,
                          casesFolder: str | None = None, output: str | None = None) -> WorkerRun:
        """Fine-tune a copy of the model on its cases in the worker; poll the run (progress says the time left),
        cancel it at will. Its result: {'kept', 'output', 'summary', ...}; the old model is never changed."""
        request = {"model": str(modelPath or default_model_path()), "device": device, "minutes": minutes,
                   "cases": casesFolder, "output": output}
        return self.worker().submit("finetune", request)

    def process(self, inputVolume, modelPath: str | None, device: str = "auto", fast: bool = False, progress=None,
                cancel=None, outputSegmentation=None, roiNode=None) -> NodeResult:
        """The whole run on the calling thread (scripts and the self-test)."""
        if inputVolume is None:
            raise ValueError("Input volume is missing")
        prepared = self.prepare(inputVolume, modelPath, device, fast, None, roiNode)
        return self.apply(prepared, self.compute(prepared, progress, cancel), outputSegmentation)


__all__ = ["MODULE_NAME", "MedSegEfficientLogic", "NodeResult", "PreparedRun"]
