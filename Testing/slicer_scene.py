"""A real MRML scene with Slicer's module logics, from the ``slicer-core`` package (no Slicer application).

The application layer (``slicer.app``, ``slicer.modules``) does not exist there; ``install_application_globals``
sets ``slicer.mrmlScene`` and a ``slicer.modules`` stand-in whose logics are the real logic objects, so that
``slicer.util`` helpers that look them up work as they do inside Slicer.
"""

from __future__ import annotations

import types
from pathlib import Path

SLICER_DATA = Path(__file__).resolve().parent / "data" / "slicer"  # copied from Slicer: data/slicer/README.md


class SlicerLogics:
    def __init__(self) -> None:
        import slicer

        self.scene = slicer.vtkMRMLScene()
        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        self.colors = self._register("Colors", slicer.vtkSlicerColorLogic())
        self.segmentations = self._register("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic())
        self.volumes = self._register("Volumes", slicer.vtkSlicerVolumesLogic())
        self.terminologies = self._register("Terminologies", slicer.vtkSlicerTerminologiesModuleLogic())
        self.subject_hierarchy = self._register("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic())

    def _register(self, name: str, logic):
        logic.SetMRMLApplicationLogic(self.app_logic)
        logic.SetMRMLScene(self.scene)
        self.app_logic.SetModuleLogic(name, logic)
        return logic

    def load_terminologies(self) -> None:
        for path in sorted(SLICER_DATA.glob("SegmentationCategoryTypeModifier-*.json")):
            self.terminologies.LoadTerminologyFromFile(str(path))
        self.terminologies.LoadRegionContextFromFile(str(SLICER_DATA / "AnatomicRegionAndModifier-DICOM-Master.json"))

    def install_application_globals(self) -> None:
        import slicer

        slicer.mrmlScene = self.scene
        modules = types.SimpleNamespace()
        for name, logic in (("segmentations", self.segmentations), ("volumes", self.volumes),
                            ("terminologies", self.terminologies), ("colors", self.colors)):
            setattr(modules, name, types.SimpleNamespace(logic=lambda logic=logic: logic))
        slicer.modules = modules
