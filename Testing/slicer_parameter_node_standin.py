"""STAND-IN for ``slicer.parameterNodeWrapper`` (Slicer's Base/Python/slicer/parameterNodeWrapper), which ships with
the application, not with slicer-core. Written from reading Slicer's source; it holds the module to the same rules:

- a member gets a serializer by its type (str, bool, int, float, a vtkMRMLNode class), or the class fails to
  decorate; names the wrapper reserves are refused; ``Choice`` validates every write;
- a member missing from the node is written with its default when the wrapper is made;
- node members are stored as node references (plus an empty parameter, as NodeSerializer does);
- ``connectGui`` finds widgets by their ``SlicerParameterName`` property and picks a connector by the widget's exact
  class and the member's type (guiConnectors.py): none fits -> RuntimeError; a QComboBox needs ``Choice`` and is
  refilled with the choices; a qMRMLNodeComboBox gets its ``nodeTypes`` from ``getNodeTypes``, which instantiates
  the declared class (an abstract class raises TypeError, as it does in Slicer);
- the GUI is written from the node on connect and on every node change; a widget change writes the node.
"""

from __future__ import annotations

import typing

NOT_SET = object()
RESERVED = ("allParameters", "default", "isCached", "dataType", "getValue", "setValue", "connectGui",
            "connectParametersToGui", "disconnectGui", "StartModify", "EndModify", "AddObserver", "RemoveObserver",
            "Modified")


class Choice:
    def __init__(self, choices) -> None:
        self.choices = list(choices)

    def validate(self, value) -> None:
        if value not in self.choices:
            raise ValueError(f"Value is {value}, but must be in one of the following: {self.choices}")


def split_annotations(hint):
    if typing.get_origin(hint) is typing.Annotated:
        base, *annotations = typing.get_args(hint)
        return base, annotations
    return hint, []


def is_node_type(datatype) -> bool:
    import slicer

    return isinstance(datatype, type) and issubclass(datatype, slicer.vtkMRMLNode)


def get_node_types(datatype) -> tuple[str, ...]:
    """As Slicer's util.getNodeTypes: the class names, found by instantiating each declared class."""
    base, _ = split_annotations(datatype)
    if is_node_type(base):
        return (base().GetClassName(),)
    if typing.get_origin(base) is typing.Union:
        return tuple(arg().GetClassName() for arg in typing.get_args(base) if is_node_type(arg))
    raise TypeError(f"Cannot handle type {datatype}")


class _Serializer:
    def __init__(self, datatype, annotations) -> None:
        self.datatype = datatype
        self.node = is_node_type(datatype)
        if not self.node and datatype not in (str, bool, int, float):
            raise TypeError(f"no serializer for {datatype}")
        self.validators = [a for a in annotations if isinstance(a, Choice)]
        if len(self.validators) != len(annotations):
            raise TypeError(f"unknown annotations {annotations}")

    def default(self):
        return None if self.node else self.datatype()

    def validate(self, value) -> None:
        if self.node:
            if value is not None and not isinstance(value, self.datatype):
                raise TypeError(f"Value must be of type '{self.datatype}', is type '{type(value)}'")
        elif not isinstance(value, self.datatype):
            raise TypeError(f"Value must be of type '{self.datatype}', is type '{type(value)}'")
        for validator in self.validators:
            validator.validate(value)

    def write(self, node, name: str, value) -> None:
        self.validate(value)
        if self.node:
            node.SetParameter(name, "")
            node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
        else:
            node.SetParameter(name, str(value))

    def read(self, node, name: str):
        if self.node:
            return node.GetNodeReference(name)
        text = node.GetParameter(name)
        if self.datatype is bool:
            return text == "True"
        return self.datatype(text)


def parameter_node_wrapper(cls):
    hints = typing.get_type_hints(cls, include_extras=True)
    members = {}
    for name, hint in hints.items():
        if name in RESERVED:
            raise ValueError(f"Cannot use reserved name '{name}' in a parameterNodeWrapper")
        base, annotations = split_annotations(hint)
        try:
            serializer = _Serializer(base, annotations)
        except TypeError as error:
            raise Exception(f"Unable to create serializer for {cls} member {name}") from error
        default = getattr(cls, name, NOT_SET)
        members[name] = (serializer, serializer.default() if default is NOT_SET else default, hint)

    def __init__(self, parameterNode) -> None:
        self.parameterNode = parameterNode
        self._guis: dict[int, tuple[dict, int]] = {}
        self._nextTag = 0
        self._updatingGui = False
        for member, (serializer, default, _) in members.items():
            if not parameterNode.HasParameter(member):
                serializer.write(parameterNode, member, default)

    def make_property(member: str):
        serializer = members[member][0]
        return property(lambda self: serializer.read(self.parameterNode, member),
                        lambda self, value: serializer.write(self.parameterNode, member, value))

    def check_name(member: str) -> None:
        if member not in members:
            raise ValueError(f"Cannot find a param with the given name: {member}")

    def getValue(self, member):
        check_name(member)
        return getattr(self, member)

    def setValue(self, member, value):
        check_name(member)
        setattr(self, member, value)

    def update_gui(self) -> None:
        if self._updatingGui:
            return
        self._updatingGui = True
        try:
            for mapping, _ in self._guis.values():
                for member, connector in mapping.items():
                    connector.write(self.getValue(member))
        finally:
            self._updatingGui = False

    def connectGui(self, gui):
        from slicer_mrml_widgets_standin import create_connector, parameter_widgets

        mapping = {}
        for member, widget in parameter_widgets(gui).items():
            check_name(member)
            mapping[member] = create_connector(widget, members[member][2])
        for member, connector in mapping.items():
            connector.write(self.getValue(member))

            def changed(member=member, connector=connector):
                if not self._updatingGui:
                    self.setValue(member, connector.read())

            connector.on_changed(changed)
        tag = self._nextTag
        self._nextTag += 1
        observer = self.parameterNode.AddObserver("ModifiedEvent", lambda caller, event: update_gui(self))
        self._guis[tag] = (mapping, observer)
        return tag

    def disconnectGui(self, tag) -> None:
        if tag in self._guis:
            mapping, observer = self._guis.pop(tag)
            for connector in mapping.values():
                connector.on_changed(None)
            self.parameterNode.RemoveObserver(observer)

    namespace = {
        "__init__": __init__, "allParameters": {name: hint for name, (_, _, hint) in members.items()},
        "default": lambda self, member: members[member][1], "isCached": lambda self, member: True,
        "dataType": staticmethod(lambda member: members[member][2]), "getValue": getValue, "setValue": setValue,
        "connectGui": connectGui, "disconnectGui": disconnectGui,
        "StartModify": lambda self: self.parameterNode.StartModify(),
        "EndModify": lambda self, wasModified: self.parameterNode.EndModify(wasModified),
        "AddObserver": lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(event, callback, priority),
        "RemoveObserver": lambda self, tag: self.parameterNode.RemoveObserver(tag),
        "Modified": lambda self: self.parameterNode.Modified(),
    }
    namespace.update({member: make_property(member) for member in members})
    return type(cls.__name__, (), namespace)
