"""Every shipped label's code resolves in Slicer's terminology lists or in our extra file, which is generated from
the shipped models and loads into Slicer's terminology logic."""

from __future__ import annotations

import json

import pytest

from MedSegEfficientLib.model.card import LabelInfo
from MedSegEfficientLib.model.library import SHIPPED_MODELS_DIR
from MedSegEfficientLib.model.model_file import read_card
from MedSegEfficientLib.model.terminology import (EXTRA_CONTEXT, EXTRA_FILE, extra_terminology, listed_keys,
                                            terminology_entry)
from slicer_scene import SLICER_DATA

SLICER_FILES = sorted(SLICER_DATA.glob("SegmentationCategoryTypeModifier-*.json"))


def slicer_keys() -> set[tuple]:
    return set().union(*(listed_keys(json.loads(path.read_text())) for path in SLICER_FILES))


def shipped_labels() -> list[LabelInfo]:
    return [label for path in sorted(SHIPPED_MODELS_DIR.glob("*.safetensors")) for label in read_card(path).labels]


def test_the_extra_file_is_what_the_shipped_models_need():
    assert SLICER_FILES, "Slicer's terminology files are in Testing/data/slicer"
    expected = extra_terminology(shipped_labels(), slicer_keys())
    assert json.loads(EXTRA_FILE.read_text()) == expected  # regenerate: python training/make_terminology.py
    known = slicer_keys() | listed_keys(expected)
    for label in shipped_labels():
        key = (label.category[1], label.type[1], label.modifier[1] if label.modifier else None)
        assert key in known, label.name


def test_a_code_slicer_lacks_goes_to_the_extra_file_and_loads_in_slicer(slicer_logics, tmp_path):
    slicer = pytest.importorskip("slicer")
    odd = LabelInfo(1, "left fifth rib", (200, 180, 120), category=["SCT", "123037004", "Anatomical Structure"],
                    type=["SCT", "113197003", "Rib"], modifier=["SCT", "999999999", "Fifth, left (test code)"])
    document = extra_terminology([odd], slicer_keys())
    assert document["SegmentationCodes"]["Category"][0]["Type"][0]["Modifier"][0]["3dSlicerLabel"] == "left fifth rib"
    path = tmp_path / "extra.term.json"
    path.write_text(json.dumps(document))
    assert slicer_logics.terminologies.LoadTerminologyFromFile(str(path)) == EXTRA_CONTEXT
    assert slicer_logics.terminologies.GetNumberOfCategoriesInTerminology(EXTRA_CONTEXT) == 1
    found = slicer.vtkSlicerTerminologyEntry()
    assert slicer_logics.terminologies.FindTypeInTerminologyBy3dSlicerLabel(EXTRA_CONTEXT, "left fifth rib", found)
    assert found.GetTypeModifierObject().GetCodeValue() == "999999999"
    assert terminology_entry(shipped_labels()[0]).startswith(shipped_labels()[0].context)
