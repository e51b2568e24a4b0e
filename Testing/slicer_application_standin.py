"""STAND-IN for the Slicer application layer, which cannot run here, held to Slicer's rules.

``slicer-core`` has Slicer's MRML and logic libraries but not the application: no ``slicer.ScriptedLoadableModule``,
no ``slicer.parameterNodeWrapper``, no ``qt`` (PythonQt), no ``slicer.app``. These stand-ins, written from reading
Slicer's own source (Base/Python/slicer/ScriptedLoadableModule.py, util.py, parameterNodeWrapper/, the scripted
module template), let the real module file run its real widget on real Qt (PySide6, offscreen) against a real
slicer-core scene, and fail where Slicer would fail:

- the module is loaded, opened, left, reloaded and closed as Slicer does it (``SlicerApplicationStandIn``): the
  module class is made when the module loads and ``startupCompleted()`` fires after; the widget is made with the
  module panel as parent and ``setup()`` runs once, then ``enter()``; leaving runs ``exit()``; a reload re-reads
  the file, calls the old widget's ``cleanup()`` and sets a new widget up; quitting emits
  ``moduleAboutToBeUnloaded``, which calls ``cleanup()``. A widget made without a parent runs ``setup()`` itself.
- the parameter node wrapper and its GUI connectors: slicer_parameter_node_standin.py and
  slicer_mrml_widgets_standin.py;
- testing mode, where nothing may be installed; ``SlicerEventLoop`` runs the event loop as Slicer's main thread
  does, holding the GIL in C++ between Python callbacks.
"""

from __future__ import annotations

import ctypes
import importlib.util
import re
import sys
import time
import types
import unittest
from pathlib import Path

MODULE_NAME = "MedSegEfficient"
MODULE_DIR = Path(__file__).resolve().parents[1] / MODULE_NAME
MODULE_FILE = MODULE_DIR / f"{MODULE_NAME}.py"


class PythonQtStyle:
    """A Qt object whose Qt properties read and write as attributes, as under PythonQt."""

    def __init__(self, qobject) -> None:
        object.__setattr__(self, "qobject", qobject)

    def _is_property(self, name: str) -> bool:
        return self.qobject.metaObject().indexOfProperty(name) >= 0

    def __getattr__(self, name: str):
        if self._is_property(name):
            return self.qobject.property(name)
        return getattr(self.qobject, name)

    def __setattr__(self, name: str, value) -> None:
        if self._is_property(name):
            self.qobject.setProperty(name, value)
        else:
            object.__setattr__(self, name, value)


def qt_module() -> types.ModuleType:
    from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets

    module = types.ModuleType("qt")
    for source in (QtCore, QtGui, QtWidgets, QtUiTools):
        for name in dir(source):
            if name.startswith("Q") or name == "Qt":
                setattr(module, name, getattr(source, name))
    return module


def load_ui(path):
    """slicer.util.loadUI: Slicer's widget classes are the stand-ins; the top qMRMLWidget passes its scene on only
    to the widgets that the .ui's ``mrmlSceneChanged -> setMRMLScene`` connections name, as in Slicer."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtUiTools import QUiLoader

    from slicer_mrml_widgets_standin import SLICER_WIDGET_CLASSES, qMRMLWidget

    text = Path(path).read_text()
    receivers = re.findall(r"<signal>mrmlSceneChanged\(vtkMRMLScene\*\)</signal>\s*<receiver>(\w+)</receiver>\s*"
                           r"<slot>setMRMLScene\(vtkMRMLScene\*\)</slot>", text)
    text = re.sub(r"<connections>.*</connections>", "", text, flags=re.S)
    loader = QUiLoader()
    for widget_class in SLICER_WIDGET_CLASSES:
        loader.registerCustomWidget(widget_class)
    data = QByteArray(text.encode())  # kept alive while the loader reads it
    buffer = QBuffer(data)
    buffer.open(QIODevice.ReadOnly)
    widget = loader.load(buffer)
    if widget is None:
        raise RuntimeError(f"could not load {path}")
    if isinstance(widget, qMRMLWidget):
        widget.scene_receivers = receivers
    return PythonQtStyle(widget)


def child_widget_variables(panel):
    from PySide6.QtWidgets import QWidget

    ui = types.SimpleNamespace()
    for child in panel.qobject.findChildren(QWidget):
        if child.objectName():
            setattr(ui, child.objectName(), PythonQtStyle(child))
    return ui


class _Layout:
    def __init__(self, layout) -> None:
        self.layout = layout

    def addWidget(self, widget) -> None:
        self.layout.addWidget(getattr(widget, "qobject", widget))


def _module_panel():
    """The module panel Slicer gives a scripted widget as parent (qSlicerScriptedLoadableModuleWidget)."""
    from PySide6.QtWidgets import QVBoxLayout, QWidget

    class ModulePanel(QWidget):
        isEntered = False

    panel = ModulePanel()
    panel.setLayout(QVBoxLayout())
    panel.resize(380, 600)
    return panel


class ScriptedLoadableModule:
    def __init__(self, parent=None) -> None:
        self.parent = parent if parent is not None else types.SimpleNamespace()
        self.moduleName = type(self).__name__


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None) -> None:
        import slicer
        from PySide6.QtWidgets import QVBoxLayout

        from slicer_mrml_widgets_standin import qMRMLWidget

        self.moduleName = type(self).__name__[:-len("Widget")]
        if not parent:
            self.parent = qMRMLWidget()
            self.parent.setLayout(QVBoxLayout())
            self.parent.setMRMLScene(slicer.mrmlScene)
        else:
            self.parent = parent
        self.layout = _Layout(self.parent.layout())
        if not parent:
            self.setup()
        slicer.app.moduleManager().connect("moduleAboutToBeUnloaded(QString)", self._onModuleAboutToBeUnloaded)

    def setup(self) -> None:
        pass  # Slicer adds its developer section (Reload, Test) here

    def cleanup(self) -> None:
        pass

    def _onModuleAboutToBeUnloaded(self, moduleName: str) -> None:
        import slicer

        if moduleName == self.moduleName:
            self.cleanup()
            slicer.app.moduleManager().disconnect("moduleAboutToBeUnloaded(QString)", self._onModuleAboutToBeUnloaded)

    def resourcePath(self, filename: str) -> str:
        return str(MODULE_DIR / "Resources" / filename)

    def onReload(self) -> None:
        import slicer

        slicer.util.reloadScriptedModule(self.moduleName)


class ScriptedLoadableModuleTest(unittest.TestCase):
    """Slicer's test base is a unittest.TestCase whose delayDisplay shows a message in the application."""

    def delayDisplay(self, message: str, msec: int = 1000) -> None:
        import slicer

        slicer.app.displayed.append(message)


class _ModuleManager:
    def __init__(self) -> None:
        self.unload_slots: list = []

    def connect(self, signal: str, slot) -> None:
        if signal != "moduleAboutToBeUnloaded(QString)":
            raise RuntimeError(f"the module manager has no signal {signal}")
        self.unload_slots.append(slot)

    def disconnect(self, signal: str, slot) -> None:
        self.unload_slots.remove(slot)


class SlicerApplicationStandIn:
    """slicer.app, and the module lifecycle Slicer drives."""

    applicationName = "Slicer (stand-in)"
    majorVersion, minorVersion = 5, 10  # the oldest Slicer the module supports

    def __init__(self, testing: bool = False) -> None:
        self.testing = testing
        self.errors: list[str] = []
        self.displayed: list[str] = []
        self.restarts = 0
        self._startup_slots: list = []
        self._manager = _ModuleManager()
        self.module = None  # the loaded module file
        self.panel = None
        self.widget = None

    # --- what the module calls --------------------------------------------------------------------------------
    def testingEnabled(self) -> bool:
        return self.testing

    def connect(self, signal: str, slot) -> None:
        if signal != "startupCompleted()":
            raise RuntimeError(f"slicer.app has no signal {signal}")
        self._startup_slots.append(slot)

    def moduleManager(self) -> _ModuleManager:
        return self._manager

    def setOverrideCursor(self, cursor) -> None:
        pass

    def restoreOverrideCursor(self) -> None:
        pass

    # --- what Slicer does ----------------------------------------------------------------------------------------
    def load_module(self, path: Path = MODULE_FILE):
        import slicer

        spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[MODULE_NAME] = module
        spec.loader.exec_module(module)
        module.displayed_errors = self.errors
        self.module = module
        getattr(module, MODULE_NAME)(types.SimpleNamespace())
        slicer.modules.medsegefficient = types.SimpleNamespace(widgetRepresentation=lambda: self.panel)
        return module

    def complete_startup(self) -> None:
        for slot in self._startup_slots:
            slot()

    def widget_representation(self):
        """The module's widget, made and set up on first use (module.widgetRepresentation())."""
        import slicer

        if self.widget is None:
            self.panel = _module_panel()
            self.widget = getattr(self.module, f"{MODULE_NAME}Widget")(self.panel)
            self.widget.setup()
            setattr(slicer.modules, f"{MODULE_NAME}Widget", self.widget)
        return self.widget

    def open_module(self):
        """The user picks the module: the widget is made and set up on the first opening, then entered."""
        self.widget_representation()
        self.panel.isEntered = True
        self.widget.enter()
        return self.widget

    def leave_module(self) -> None:
        self.panel.isEntered = False
        self.widget.exit()

    def reload_module(self):
        """slicer.util.reloadScriptedModule: the file is read anew, the old widget cleaned up, a new one set up."""
        import slicer

        old = self.widget
        self.load_module()
        old.cleanup()
        self._manager.disconnect("moduleAboutToBeUnloaded(QString)", old._onModuleAboutToBeUnloaded)
        entered = self.panel.isEntered
        self.widget = getattr(self.module, f"{MODULE_NAME}Widget")(self.panel)
        self.widget.setup()
        setattr(slicer.modules, f"{MODULE_NAME}Widget", self.widget)
        if entered:
            self.widget.enter()
        return self.widget

    def quit(self) -> None:
        for slot in list(self._manager.unload_slots):
            slot(MODULE_NAME)


class SlicerEventLoop:
    """The main thread's event loop. ``slicer_regime``: as in Slicer, where the main thread sits in Qt's C++ event
    loop holding the GIL (PythonQt does not release it) and Python threads run only while a Python callback runs;
    here the GIL is held in a C call (``ctypes.PyDLL``) between event passes. Otherwise the main thread sleeps
    between passes, releasing the GIL."""

    def __init__(self, slicer_regime: bool, pass_milliseconds: int = 100) -> None:
        self.slicer_regime, self.pass_milliseconds = slicer_regime, pass_milliseconds
        self._hold = ctypes.PyDLL(None).usleep  # PyDLL: the GIL stays held during the call

    def run_until(self, done, timeout: float = 300.0) -> float:
        from PySide6.QtWidgets import QApplication

        application = QApplication.instance()
        started = time.perf_counter()
        while True:
            application.processEvents()
            if done():
                return time.perf_counter() - started
            if time.perf_counter() - started > timeout:
                raise TimeoutError("the event loop waited too long")
            if self.slicer_regime:
                self._hold(self.pass_milliseconds * 1000)
            else:
                time.sleep(self.pass_milliseconds / 1000)


def install(testing: bool = False) -> SlicerApplicationStandIn:
    """Install the stand-ins on the ``slicer`` package of slicer-core; returns the application."""
    import slicer
    import slicer.util

    import slicer_parameter_node_standin as wrapper_standin

    from PySide6.QtWidgets import QApplication

    application = SlicerApplicationStandIn(testing)
    application.qt = QApplication.instance() or QApplication([])  # slicer.app is the Qt application
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for item in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleTest):
        setattr(scripted, item.__name__, item)
    sys.modules["slicer.ScriptedLoadableModule"] = scripted
    slicer.ScriptedLoadableModule = scripted
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper, wrapper.Choice = wrapper_standin.parameter_node_wrapper, wrapper_standin.Choice
    sys.modules["slicer.parameterNodeWrapper"] = wrapper
    slicer.parameterNodeWrapper = wrapper
    sys.modules["qt"] = qt_module()
    slicer.app = application
    slicer.util.loadUI = load_ui
    slicer.util.childWidgetVariables = child_widget_variables
    slicer.util.errorDisplay = lambda text, **kwargs: application.errors.append(text)
    slicer.util.confirmOkCancelDisplay = lambda text, **kwargs: True
    slicer.util.reloadScriptedModule = lambda name: application.reload_module()
    slicer.util.modulePath = lambda name: str(MODULE_FILE)
    slicer.util.restart = lambda: setattr(application, "restarts", application.restarts + 1)
    slicer.util.selectModule = lambda name: application.open_module()
    slicer.util.getModuleWidget = lambda name: application.widget_representation()
    return application


def import_module_file(testing: bool = False):
    """The module file as Slicer loads it (after install); ``module.application`` is the stand-in application."""
    application = install(testing)
    module = application.load_module()
    module.application = application
    return module
