"""STAND-IN for the Slicer application layer, which cannot run here.

``slicer-core`` has Slicer's MRML and logic libraries but not the application: no ``slicer.ScriptedLoadableModule``,
no ``slicer.parameterNodeWrapper``, no ``qt`` (PythonQt), no ``slicer.app``. These named stand-ins let the real module
file run its real widget on real Qt (PySide6, offscreen) against a real slicer-core scene:

- ``qt``: PySide6's classes under one module, as PythonQt exposes them.
- PythonQt reads and writes Qt properties as attributes (``button.enabled = False``); ``PythonQtStyle`` gives a
  PySide6 widget that behaviour. Slicer-only widget classes in the .ui load as their Qt base class.
- ``parameterNodeWrapper``: stores each field in a real ``vtkMRMLScriptedModuleNode`` (strings as parameters, nodes
  as node references, as Slicer does) and binds combo boxes named by ``SlicerParameterName`` in ``connectGui``.
- ``ScriptedLoadableModule*`` base classes: the few members the module uses (layout, resource path, reload).
"""

from __future__ import annotations

import importlib.util
import re
import sys
import types
import typing
import unittest
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1] / "MedSegEfficient"
MODULE_FILE = MODULE_DIR / "MedSegEfficient.py"
SLICER_ONLY_CLASSES = ("qMRMLWidget", "ctkCollapsibleButton", "qMRMLNodeComboBox")


class PythonQtStyle:
    """A Qt object whose Qt properties read and write as attributes, as under PythonQt."""

    def __init__(self, qobject) -> None:
        object.__setattr__(self, "qobject", qobject)

    def _is_property(self, name: str) -> bool:
        meta = self.qobject.metaObject()
        return meta.indexOfProperty(name) >= 0

    def __getattr__(self, name: str):
        if self._is_property(name):
            return self.qobject.property(name)
        return getattr(self.qobject, name)

    def __setattr__(self, name: str, value) -> None:
        if self._is_property(name):
            self.qobject.setProperty(name, value)
        else:
            object.__setattr__(self, name, value)

    def setMRMLScene(self, scene) -> None:  # qMRMLWidget / qMRMLNodeComboBox: the scene is kept, nothing else
        object.__setattr__(self, "mrmlScene", scene)


def qt_module() -> types.ModuleType:
    from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets

    module = types.ModuleType("qt")
    for source in (QtCore, QtGui, QtWidgets, QtUiTools):
        for name in dir(source):
            if name.startswith("Q") or name == "Qt":
                setattr(module, name, getattr(source, name))
    return module


def load_ui(path):
    """slicer.util.loadUI with Slicer-only classes loaded as QWidget."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtUiTools import QUiLoader

    text = Path(path).read_text()
    for name in SLICER_ONLY_CLASSES:
        text = text.replace(f'class="{name}"', 'class="QWidget"')
    text = re.sub(r"<connections>.*</connections>", "", text, flags=re.S)  # signals of Slicer-only classes
    data = QByteArray(text.encode())  # kept alive while the loader reads it
    buffer = QBuffer(data)
    buffer.open(QIODevice.ReadOnly)
    widget = QUiLoader().load(buffer)
    if widget is None:
        raise RuntimeError(f"could not load {path}")
    return PythonQtStyle(widget)


def child_widget_variables(panel):
    from PySide6.QtWidgets import QWidget

    ui = types.SimpleNamespace()
    for child in panel.qobject.findChildren(QWidget):
        if child.objectName():
            setattr(ui, child.objectName(), PythonQtStyle(child))
    return ui


class Choice:
    def __init__(self, choices) -> None:
        self.choices = list(choices)


def parameter_node_wrapper(cls):
    """Fields stored in the wrapped vtkMRMLScriptedModuleNode; the wrapper is observable like the node."""
    import slicer

    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {name: typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
              for name, hint in hints.items()}
    defaults = {name: getattr(cls, name, None) for name in fields}

    class Wrapper:
        def __init__(self, node) -> None:
            object.__setattr__(self, "_node", node)
            object.__setattr__(self, "_bindings", [])

        def __getattr__(self, name):
            if name not in fields:
                return getattr(self._node, name)
            if isinstance(fields[name], type) and issubclass(fields[name], slicer.vtkMRMLNode):
                return self._node.GetNodeReference(name)
            value = self._node.GetParameter(name)
            return value if value else defaults[name]

        def __setattr__(self, name, value) -> None:
            if isinstance(fields[name], type) and issubclass(fields[name], slicer.vtkMRMLNode):
                self._node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
            else:
                self._node.SetParameter(name, str(value))
            for binding in self._bindings:
                binding()

        def connectGui(self, ui):
            from PySide6.QtWidgets import QComboBox

            for widget in vars(ui).values():
                name = widget.qobject.property("SlicerParameterName")
                if name in fields and isinstance(widget.qobject, QComboBox):
                    combo = widget.qobject
                    combo.setCurrentIndex(max(0, combo.findText(str(getattr(self, name)))))
                    combo.currentTextChanged.connect(lambda text, name=name: setattr(self, name, text))
            return ui

        def disconnectGui(self, connections) -> None:
            pass

    Wrapper.__name__ = cls.__name__
    return Wrapper


class _Layout:
    def __init__(self, layout) -> None:
        self.layout = layout

    def addWidget(self, widget) -> None:
        self.layout.addWidget(getattr(widget, "qobject", widget))


class ScriptedLoadableModule:
    def __init__(self, parent=None) -> None:
        self.parent = parent if parent is not None else types.SimpleNamespace()


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None) -> None:
        self.parent = parent if parent is not None else types.SimpleNamespace(isEntered=True)

    def setup(self) -> None:
        from PySide6.QtWidgets import QVBoxLayout, QWidget

        self.widget = QWidget()
        self.widget.resize(380, 600)
        self.layout = _Layout(QVBoxLayout(self.widget))

    def resourcePath(self, filename: str) -> str:
        return str(MODULE_DIR / "Resources" / filename)

    def onReload(self) -> None:  # Slicer re-reads the module file; here the reload is recorded
        self.reloaded = True


class ScriptedLoadableModuleTest(unittest.TestCase):
    """Slicer's test base is a unittest.TestCase whose delayDisplay shows a message in the application."""

    def delayDisplay(self, message: str, msec: int = 1000) -> None:
        self.messages = getattr(self, "messages", []) + [message]


def install(testing: bool = False) -> list[str]:
    """Install the stand-ins; returns the messages that slicer.util.errorDisplay would have shown."""
    import slicer
    import slicer.util

    errors: list[str] = []
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for item in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleTest):
        setattr(scripted, item.__name__, item)
    sys.modules["slicer.ScriptedLoadableModule"] = scripted
    slicer.ScriptedLoadableModule = scripted
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper, wrapper.Choice = parameter_node_wrapper, Choice
    sys.modules["slicer.parameterNodeWrapper"] = wrapper
    slicer.parameterNodeWrapper = wrapper
    if importlib.util.find_spec("PySide6") is not None:
        sys.modules["qt"] = qt_module()
    slicer.app = types.SimpleNamespace(testingEnabled=lambda: testing, setOverrideCursor=lambda cursor: None,
                                       restoreOverrideCursor=lambda: None, applicationName="Slicer (stand-in)")
    slicer.util.loadUI = load_ui
    slicer.util.childWidgetVariables = child_widget_variables
    slicer.util.errorDisplay = lambda text, **kwargs: errors.append(text)
    slicer.util.confirmOkCancelDisplay = lambda text, **kwargs: True
    return errors


def import_module_file(testing: bool = False):
    errors = install(testing)
    spec = importlib.util.spec_from_file_location("MedSegEfficient", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.displayed_errors = errors
    return module
