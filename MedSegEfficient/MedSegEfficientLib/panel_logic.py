"""The Slicer module's Logic body, without Qt and without the application: the module's Logic class adds only
Slicer's base class, the dependency check and the terminology file (MedSegEfficient.py).

Methods keep Slicer's camelCase: scripts call them on the module's Logic. Every scene change goes through
``apply`` on the scene the Logic was given; ``prepare`` and ``startBackground`` never touch it.
"""

from __future__ import annotations

import logging

from .background_run import BackgroundRun
from .checkpoint import default_model_path, read_card
from .devices import describe_device, select_device
from .engine import SegmentOptions
from .model_library import InputShape, describe_choice, import_model_file, load_history, model_choices, record_run
from .preflight import Preflight, check, free_memory
from .scene import volume_from_node
from .volume_node_runner import NodeResult, PreparedRun, VolumeNodeSegmenter


class PanelLogic:
    def __init__(self, scene_provider) -> None:
        self._scene = scene_provider  # a callable: Slicer swaps slicer.mrmlScene's content, not the object
        self._runner = VolumeNodeSegmenter()

    @staticmethod
    def modelChoices(volumeNode=None):
        shape = InputShape.of(volume_from_node(volumeNode)) if volumeNode is not None else None
        return model_choices(shape)

    @staticmethod
    def describeModel(entry, history) -> str:
        return describe_choice(entry, history)

    @staticmethod
    def runHistory() -> dict:
        return load_history()

    @staticmethod
    def importModel(path) -> str:
        return str(import_model_file(path))

    @staticmethod
    def deviceInfo() -> str:
        gpu = select_device("auto")
        return f"Auto: {describe_device(gpu)}" + ("" if gpu.type != "cpu" else " (no GPU found)")

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

    def preflight(self, volumeNode, modelPath, device) -> Preflight:
        kind = select_device(device).type
        free_gpu, free_ram = free_memory(kind)
        return check(volume_from_node(volumeNode), read_card(modelPath), kind == "cuda", free_gpu, free_ram)

    def prepare(self, volumeNode, modelPath, device="auto", fast=False, batch=None, roiNode=None) -> PreparedRun:
        if batch is None and select_device(device).type == "cpu":
            batch = 1  # one tile per pass: as fast on a CPU, and Cancel then answers after a single tile
        bounds = None
        if roiNode is not None:
            bounds = [0.0] * 6
            roiNode.GetRASBounds(bounds)
        return self._runner.prepare(volumeNode, modelPath or self.defaultModelPath(),
                                    SegmentOptions(device=device, fast=fast, batch_size=batch), bounds)

    def startBackground(self, prepared: PreparedRun) -> BackgroundRun:
        return BackgroundRun(lambda progress, cancel: self._runner.compute(prepared, progress, cancel)).start()

    def apply(self, prepared: PreparedRun, result, outputSegmentation=None) -> NodeResult:
        nodeResult = self._runner.apply(self._scene(), prepared, result, outputSegmentation)
        record_run(prepared.model_path, sum(result.report.seconds.values()), result.report.device)
        logging.info(f"MedSegEfficient: {result.report.summary()}")
        return nodeResult

    def process(self, inputVolume, modelPath, device="auto", fast=False, progress=None, cancel=None,
                outputSegmentation=None, roiNode=None) -> NodeResult:
        """The whole run on the calling thread (scripts and the self-test)."""
        if inputVolume is None:
            raise ValueError("Input volume is missing")
        prepared = self.prepare(inputVolume, modelPath, device, fast, None, roiNode)
        return self.apply(prepared, self._runner.compute(prepared, progress, cancel), outputSegmentation)


__all__ = ["PanelLogic"]
