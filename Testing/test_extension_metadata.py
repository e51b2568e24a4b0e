"""Extension Manager readiness: the catalog entry validates against Slicer's schema and agrees with CMakeLists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT.parent / "shared" / "slicer" / "slicer-extension-catalog-entry-schema-v1.0.2.json"


def cmake_setting(name: str) -> str:
    match = re.search(rf'set\({name} "([^"]*)"\)', (ROOT / "CMakeLists.txt").read_text())
    assert match, name
    return match.group(1)


def test_catalog_entry_is_valid_and_consistent():
    jsonschema = pytest.importorskip("jsonschema")
    if not SCHEMA.exists():
        pytest.skip("Slicer's catalog schema (../shared/slicer) is not beside this checkout")
    entry = json.loads((ROOT / "MedSegEfficient.json").read_text())
    jsonschema.validate(entry, json.loads(SCHEMA.read_text()))
    assert entry["category"] == cmake_setting("EXTENSION_CATEGORY")
    assert entry["build_dependencies"] == cmake_setting("EXTENSION_DEPENDS").split()


def test_cmake_metadata_names_files_that_exist():
    assert cmake_setting("EXTENSION_DEPENDS") == "PyTorch"
    urls = [cmake_setting("EXTENSION_ICONURL")] + cmake_setting("EXTENSION_SCREENSHOTURLS").split()
    assert any(url.endswith("Screenshots/panel.png") for url in urls)  # the panel, saved by test_panel.py
    for url in urls:
        relative = url.split("/main/", 1)[1]
        assert (ROOT / relative).is_file(), relative
    module_cmake = (ROOT / "MedSegEfficient" / "CMakeLists.txt").read_text()
    assert "WITH_GENERIC_TESTS" in module_cmake
    resources = re.findall(r"^\s+(Resources/\S+)$", module_cmake, re.M)
    assert len(resources) == 3  # icon, panel, extra terminology; the shipped models come from the glob below
    assert "MedSegEfficientLib/models/*.safetensors" in module_cmake
    assert list((ROOT / "MedSegEfficient" / "MedSegEfficientLib" / "models").glob("*.safetensors"))
    for resource in resources:
        path = resource.replace("${MODULE_NAME}", "MedSegEfficient")
        assert (ROOT / "MedSegEfficient" / path).is_file(), path
