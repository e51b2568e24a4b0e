"""Slicer terminology entry strings for labels of a model card."""

from __future__ import annotations

from .card import LabelInfo

ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


def _code(code: list[str] | None) -> str:
    return "^".join(code) if code else "^^"


def terminology_entry(label: LabelInfo) -> str:
    """Slicer's serialised form: context~category~type~type modifier~anatomic context~region~region modifier."""
    if not (label.category and label.type):
        return ""
    return "~".join([label.context, _code(label.category), _code(label.type), _code(label.modifier),
                     ANATOMIC_CONTEXT, "^^", "^^"])
