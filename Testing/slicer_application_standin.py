"""STAND-IN for the Slicer application layer, which cannot run here.

``slicer-core`` has Slicer's MRML and logic libraries but not ``slicer.ScriptedLoadableModule`` (it needs the
application). These plain base classes let the real module file be imported so that its Logic runs against a
real slicer-core scene. Nothing here imitates behaviour the tests check: it only gives the classes to inherit.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

MODULE_FILE = Path(__file__).resolve().parents[1] / "MedSegEfficient" / "MedSegEfficient.py"


class _Base:
    def __init__(self, parent=None) -> None:
        self.parent = parent if parent is not None else types.SimpleNamespace()


def install() -> None:
    import slicer

    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleWidget",
                 "ScriptedLoadableModuleTest"):
        setattr(scripted, name, type(name, (_Base,), {}))
    sys.modules["slicer.ScriptedLoadableModule"] = scripted
    slicer.ScriptedLoadableModule = scripted


def import_module_file():
    install()
    spec = importlib.util.spec_from_file_location("MedSegEfficient", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
