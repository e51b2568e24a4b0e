"""The Slicer module's one Logic: every call the panel and scripts make, on an explicit scene, without Qt.

Methods keep Slicer's camelCase: scripts call them on the module's Logic. A run has three steps, so that the panel
can run the middle one off the main thread: ``prepare`` reads the node (and the optional ROI) on the main thread;
``compute`` runs the network and touches no node; ``apply`` writes the segmentation on the main thread. The scene
changes only in ``apply``, after the run has succeeded, so a failure or a cancel leaves it as it was. ``process``
does the three on the calling thread.

Opening the panel installs and imports nothing heavy: listing models, the device line and the parameter node need
neither torch nor CUDA. The dependencies are checked (and installed, after asking) on the first ``prepare``,
``preflight`` or ``importModel``; only then are torch and the engine imported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.inference.gpu.gpu_probe import describe_gpus_without_cuda
from MedSegEfficientLib.inference.preflight import Preflight, check, free_memory
from MedSegEfficientLib.inference.region import Box, crop, paste, voxel_box
from MedSegEfficientLib.model.library import default_model_path
from MedSegEfficientLib.model.model_file import read_card
from MedSegEfficientLib.model.terminology import EXTRA_FILE
from MedSegEfficientLib.slicer.background_run import BackgroundRun
from MedSegEfficientLib.slicer.model_picker import InputShape, describe_choice, load_history, model_choices, record_run
from MedSegEfficientLib.slicer.scene import (SegmentationSnapshot, labels_to_segmentation_node, place_in_study,
                                             volume_from_node)
from MedSegEfficientLib.volume import Volume

MODULE_NAME = "MedSegEfficient"


@dataclass
class PreparedRun:
    volume_node: Any
    volume: Volume  # the region to segment (the whole volume without an ROI)
    grid_shape: tuple[int, int, int]  # the whole volume's
    box: Box | None
    model_path: str
    options: Any  # inference.engine.SegmentOptions


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
    default is the application's). ``ensureDependencies``: called before torch is first needed (the module passes
    Slicer's installer; plain Python has its packages already)."""

    def __init__(self, scene: Callable[[], Any] | None = None,
                 ensureDependencies: Callable[[], None] | None = None) -> None:
        self._scene = scene or _application_scene
        self._ensureDependencies = ensureDependencies or (lambda: None)
        self._segmenter = None  # kept between runs, as a Slicer session segments one volume after another
        self._segmenterKey: tuple | None = None

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
        shape = InputShape.of(volume_from_node(volumeNode)) if volumeNode is not None else None
        return model_choices(shape)

    @staticmethod
    def describeModel(entry: dict, history: dict) -> str:
        return describe_choice(entry, history)

    @staticmethod
    def runHistory() -> dict:
        return load_history()

    @staticmethod
    def deviceInfo() -> str:
        """The GPU as the driver reports it; no CUDA context is made (the engine makes one on the first run)."""
        gpus = describe_gpus_without_cuda()
        return f"Auto: {gpus}" if gpus else "Auto: CPU (no GPU found)"

    @staticmethod
    def whyCannotRun(params) -> str:
        if params is None or params.inputVolume is None:
            return "Select an input volume."
        if params.inputVolume.GetImageData() is None:
            return "The input volume has no image data."
        if not params.modelPath:
            return "No model fits this input; import one (the hidden models say why)."
        return ""

    @staticmethod
    def defaultModelPath() -> str:
        return str(default_model_path())

    # --- from here on torch is needed ------------------------------------------------------------------------
    def _engine(self) -> tuple[ModuleType, ModuleType]:
        """The engine and device modules, imported after the dependency check (they import torch)."""
        self._ensureDependencies()
        from MedSegEfficientLib.inference import engine
        from MedSegEfficientLib.inference.gpu import devices

        return engine, devices

    def importModel(self, path: str) -> str:
        self._ensureDependencies()
        from MedSegEfficientLib.model.user_import import import_model_file  # validates every weight: torch

        return str(import_model_file(path))

    def preflight(self, volumeNode, modelPath: str, device: str) -> Preflight:
        _, devices = self._engine()
        kind = devices.select_device(device).type
        free_gpu, free_ram = free_memory(kind)
        return check(volume_from_node(volumeNode), read_card(modelPath), kind == "cuda", free_gpu, free_ram)

    def prepare(self, volumeNode, modelPath: str | None, device: str = "auto", fast: bool = False,
                batch: int | None = None, roiNode=None, checkMemory: bool = True) -> PreparedRun:
        """``checkMemory``: refuse a run that would exceed the RAM available; False once the user has seen the
        preflight's figures and chosen to run."""
        engine, devices = self._engine()
        if batch is None and devices.select_device(device).type == "cpu":
            batch = 1  # one tile per pass: as fast on a CPU, and Cancel then answers after a single tile
        volume = volume_from_node(volumeNode)
        box = None
        if roiNode is not None:
            bounds = [0.0] * 6
            roiNode.GetRASBounds(bounds)
            box = voxel_box(volume, bounds)
        region = crop(volume, box) if box is not None else volume
        # A copy: the run reads it off the main thread while the user may edit or delete the node.
        region = region.with_array(region.array.copy())
        options = engine.SegmentOptions(device=device, fast=fast, batch_size=batch, check_memory=checkMemory)
        return PreparedRun(volumeNode, region, volume.grid_shape, box, str(modelPath or default_model_path()),
                           options)

    def compute(self, prepared: PreparedRun, progress=None, cancel=None):
        """The network's run; touches no node, so it may run off the main thread."""
        engine, _ = self._engine()
        options = prepared.options
        key = (prepared.model_path, options.device, options.fast, options.batch_size)
        if self._segmenter is None or self._segmenterKey != key:
            self._segmenter = engine.Segmenter.from_file(prepared.model_path, options)
            self._segmenterKey = key
        return self._segmenter.segment(prepared.volume, progress=progress, cancel=cancel)

    def startBackground(self, prepared: PreparedRun) -> BackgroundRun:
        return BackgroundRun(lambda progress, cancel: self.compute(prepared, progress, cancel)).start()

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
        if outputSegmentation is None:
            place_in_study(scene, node, prepared.volume_node)
        record_run(prepared.model_path, sum(result.report.seconds.values()), result.report.device)
        logging.info(f"{MODULE_NAME}: {result.report.summary()}")
        return NodeResult(node, result.report, undo)

    def process(self, inputVolume, modelPath: str | None, device: str = "auto", fast: bool = False, progress=None,
                cancel=None, outputSegmentation=None, roiNode=None) -> NodeResult:
        """The whole run on the calling thread (scripts and the self-test)."""
        if inputVolume is None:
            raise ValueError("Input volume is missing")
        prepared = self.prepare(inputVolume, modelPath, device, fast, None, roiNode)
        return self.apply(prepared, self.compute(prepared, progress, cancel), outputSegmentation)


__all__ = ["MODULE_NAME", "MedSegEfficientLogic", "NodeResult", "PreparedRun"]
