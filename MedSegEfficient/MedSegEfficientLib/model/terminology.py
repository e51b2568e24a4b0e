"""Slicer terminology for labels of a model card: the entry string of a segment, and our own terminology file
for the codes Slicer's lists lack (a type with a modifier Slicer does not list, such as ribs, right and left).

The file ships inside the package (``model/data/``, so a wheel has it too) and is loaded by the module's Logic;
``terminology_entry`` names its context for the labels it holds, Slicer's context for the rest.
"""

from __future__ import annotations

import json
from pathlib import Path

from MedSegEfficientLib.model.card import LabelInfo

ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
EXTRA_CONTEXT = "Segmentation category and type - MedSegEfficient extra codes"
EXTRA_FILE = Path(__file__).resolve().parent / "data" / "SegmentationCategoryTypeModifier-MedSegEfficient.term.json"
SCHEMA = "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/segment-context-schema.json#"


def _code(code: list[str] | None) -> str:
    return "^".join(code) if code else "^^"


def terminology_entry(label: LabelInfo) -> str:
    """Slicer's serialised form: context~category~type~type modifier~anatomic context~region~region modifier."""
    if not (label.category and label.type):
        return ""
    context = EXTRA_CONTEXT if _key(label) in _extra_keys() else label.context
    return "~".join([context, _code(label.category), _code(label.type), _code(label.modifier),
                     ANATOMIC_CONTEXT, "^^", "^^"])


def listed_keys(document: dict) -> set[tuple]:
    """(category code, type code, modifier code or None) for every entry of a Slicer terminology file."""
    keys = set()
    for category in document["SegmentationCodes"]["Category"]:
        for kind in category.get("Type", []):
            keys.add((category["CodeValue"], kind["CodeValue"], None))
            keys.update((category["CodeValue"], kind["CodeValue"], m["CodeValue"]) for m in kind.get("Modifier", []))
    return keys


def extra_terminology(labels: list[LabelInfo], slicer_keys: set[tuple]) -> dict:
    """A Slicer terminology file with the coded labels whose code combination Slicer's lists lack."""
    categories: dict[str, dict] = {}
    for label in labels:
        if not (label.category and label.type) or _key(label) in slicer_keys:
            continue
        category = categories.setdefault(label.category[1], {**_coded(label.category), "showAnatomy": True,
                                                              "Type": []})
        kind = next((t for t in category["Type"] if t["CodeValue"] == label.type[1]), None)
        if kind is None:
            kind = {**_coded(label.type), "recommendedDisplayRGBValue": list(label.color)}
            category["Type"].append(kind)
        if label.modifier:
            modifiers = kind.setdefault("Modifier", [])
            if all(m["CodeValue"] != label.modifier[1] for m in modifiers):
                modifiers.append({**_coded(label.modifier), "recommendedDisplayRGBValue": list(label.color),
                                  "3dSlicerLabel": label.name})
        else:
            kind["3dSlicerLabel"] = label.name
    return {"SegmentationCategoryTypeContextName": EXTRA_CONTEXT, "@schema": SCHEMA,
            "SegmentationCodes": {"Category": sorted(categories.values(), key=lambda c: c["CodeValue"])}}


def _coded(code: list[str]) -> dict:
    return {"CodingSchemeDesignator": code[0], "CodeValue": code[1], "CodeMeaning": code[2]}


def _key(label: LabelInfo) -> tuple:
    return (label.category[1], label.type[1], label.modifier[1] if label.modifier else None)


_EXTRA_KEYS: set[tuple] | None = None


def _extra_keys() -> set[tuple]:
    global _EXTRA_KEYS
    if _EXTRA_KEYS is None:
        _EXTRA_KEYS = listed_keys(json.loads(EXTRA_FILE.read_text())) if EXTRA_FILE.is_file() else set()
    return _EXTRA_KEYS
