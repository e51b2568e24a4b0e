"""STAND-IN for the Slicer widget classes a .ui may use (qMRMLWidget, qMRMLNodeComboBox, ctkCollapsibleButton) and
for the GUI connectors of Slicer's parameterNodeWrapper (guiConnectors.py), on PySide6.

Only what the rules need, and as Slicer does it:
- a qMRMLNodeComboBox lists the scene's nodes of its ``nodeTypes`` (child classes too unless
  ``showChildNodeTypes`` is false; minus ``hideChildNodeTypes``), and gets its scene only through the .ui's
  ``mrmlSceneChanged -> setMRMLScene`` connections, as in Slicer: a selector that the .ui does not connect stays
  empty;
- a connector is chosen by the widget's exact class and the member's type; anything else is a RuntimeError.
"""

from __future__ import annotations

import typing

from PySide6.QtCore import Property, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QLabel, QLineEdit, QWidget

from slicer_parameter_node_standin import Choice, get_node_types, is_node_type, split_annotations

PARAMETER_PROPERTY = "SlicerParameterName"


class qMRMLWidget(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.scene_receivers: list[str] = []  # object names, from the .ui's <connections>
        self.mrmlScene = None

    def setMRMLScene(self, scene) -> None:
        self.mrmlScene = scene
        for name in self.scene_receivers:
            receiver = self.findChild(QWidget, name)
            if receiver is not None:
                receiver.setMRMLScene(scene)


class ctkCollapsibleButton(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._text = ""

    text = Property(str, lambda self: self._text, lambda self, value: setattr(self, "_text", value))


class qMRMLNodeComboBox(QComboBox):
    currentNodeChanged = Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._scene = None
        self._types: list[str] = []
        self._hidden: list[str] = []
        self._children = True
        self._none = False
        self._none_display = "None"
        self._observers: list[int] = []
        self._nodes: list = []
        self.currentIndexChanged.connect(lambda index: self.currentNodeChanged.emit(self.currentNode()))

    def _set(self, attribute: str, value) -> None:
        setattr(self, attribute, value)
        self._refresh()

    nodeTypes = Property("QStringList", lambda self: list(self._types), lambda self, v: self._set("_types", list(v)))
    hideChildNodeTypes = Property("QStringList", lambda self: list(self._hidden),
                                  lambda self, v: self._set("_hidden", list(v)))
    showChildNodeTypes = Property(bool, lambda self: self._children, lambda self, v: self._set("_children", bool(v)))
    noneEnabled = Property(bool, lambda self: self._none, lambda self, v: self._set("_none", bool(v)))
    noneDisplay = Property(str, lambda self: self._none_display, lambda self, v: self._set("_none_display", v))
    addEnabled = Property(bool, lambda self: False, lambda self, v: None)
    removeEnabled = Property(bool, lambda self: False, lambda self, v: None)

    def setMRMLScene(self, scene) -> None:
        for tag in self._observers:
            self._scene.RemoveObserver(tag)
        self._scene, self._observers = scene, []
        if scene is not None:
            for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent, scene.EndCloseEvent):
                self._observers.append(scene.AddObserver(event, lambda caller, event: self._refresh()))
        self._refresh()

    def accepts(self, node) -> bool:
        if node is None or node.GetHideFromEditors():
            return False
        name = node.GetClassName()
        if any(node.IsA(hidden) for hidden in self._hidden):
            return False
        return any(node.IsA(kind) if self._children else name == kind for kind in self._types)

    def _refresh(self) -> None:
        current = self.currentNode() if self._nodes else None
        nodes = []
        if self._scene is not None:
            for index in range(self._scene.GetNumberOfNodes()):
                node = self._scene.GetNthNode(index)
                if self.accepts(node):
                    nodes.append(node)
        self.blockSignals(True)
        self.clear()
        self._nodes = ([None] if self._none else []) + nodes
        for node in self._nodes:
            self.addItem(self._none_display if node is None else node.GetName())
        self.setCurrentIndex(self._nodes.index(current) if current in self._nodes else (0 if self._nodes else -1))
        self.blockSignals(False)
        if (self.currentNode() if self._nodes else None) is not current:
            self.currentNodeChanged.emit(self.currentNode())

    def currentNode(self):
        index = self.currentIndex()
        return self._nodes[index] if 0 <= index < len(self._nodes) else None

    def setCurrentNode(self, node) -> None:
        if node is None:
            self.setCurrentIndex(0 if self._none else -1)
        elif node in self._nodes:
            self.setCurrentIndex(self._nodes.index(node))
        # a node the selector does not list is not selected (Slicer looks it up in its own list)


SLICER_WIDGET_CLASSES = (qMRMLWidget, qMRMLNodeComboBox, ctkCollapsibleButton)


# --- GUI connectors (guiConnectors.py) -----------------------------------------------------------------------------
class _Connector:
    def __init__(self, widget, signal, read, write) -> None:
        self.widget, self._signal, self.read, self.write = widget, signal, read, write
        self._callback = None
        signal.connect(self._changed)

    def _changed(self, *args) -> None:
        if self._callback is not None:
            self._callback()

    def on_changed(self, callback) -> None:
        self._callback = callback


def create_connector(widget, datatype) -> _Connector:
    qobject = getattr(widget, "qobject", widget)
    base, annotations = split_annotations(datatype)
    kind = type(qobject)
    if kind is qMRMLNodeComboBox and (is_node_type(base) or typing.get_origin(base) is typing.Union):
        qobject.nodeTypes = list(get_node_types(datatype))
        return _Connector(qobject, qobject.currentNodeChanged, qobject.currentNode, qobject.setCurrentNode)
    if kind is QComboBox and base in (str, int, float, bool):
        choice = next((a for a in annotations if isinstance(a, Choice)), None)
        if choice is None:
            raise RuntimeError("ComboBoxToStringableConnector requires the Choice annotation to be used.")
        qobject.clear()
        for value in choice.choices:
            qobject.addItem(str(value))

        def write(value) -> None:
            if value not in choice.choices:
                raise ValueError(f"Unable to find value {value} in choices {choice.choices}")
            qobject.setCurrentIndex(choice.choices.index(value))

        return _Connector(qobject, qobject.currentIndexChanged, lambda: choice.choices[qobject.currentIndex()], write)
    if kind is QLineEdit and base is str:
        return _Connector(qobject, qobject.textChanged, qobject.text, qobject.setText)
    if kind is QCheckBox and base is bool:
        return _Connector(qobject, qobject.toggled, qobject.isChecked, qobject.setChecked)
    if kind is QLabel and base is str:
        return _Connector(qobject, qobject.objectNameChanged, qobject.text, qobject.setText)
    raise RuntimeError(f"Unable to create GUI connector from datatype '{datatype}' to widget type '{kind}'.")


def parameter_widgets(gui) -> dict[str, object]:
    """As Slicer's connectGui: a widget's children, or the values of a childWidgetVariables namespace."""
    qobject = getattr(gui, "qobject", gui)
    if isinstance(qobject, QWidget):
        widgets = qobject.findChildren(QWidget)
    else:
        widgets = list(vars(gui).values())
    found = {}
    for widget in widgets:
        name = getattr(widget, "qobject", widget).property(PARAMETER_PROPERTY)
        if name:
            found[name] = widget
    return found
