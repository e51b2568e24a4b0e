"""Extension Manager readiness: the catalog entry validates against Slicer's schema and agrees with CMakeLists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "Testing" / "data" / "slicer" / "slicer-extension-catalog-entry-schema-v1.0.2.json"


def cmake_setting(name: str) -> str:
    match = re.search(rf'set\({name} "([^"]*)"\)', (ROOT / "CMakeLists.txt").read_text())
    assert match, name
    return match.group(1)


def test_catalog_entry_is_valid_and_consistent():
    jsonschema = pytest.importorskip("jsonschema")
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
    for cmake in (ROOT / "CMakeLists.txt", ROOT / "MedSegEfficient" / "CMakeLists.txt"):
        for folder in re.findall(r"add_subdirectory\((\S+)\)", cmake.read_text()):
            assert (cmake.parent / folder / "CMakeLists.txt").is_file(), f"{cmake}: {folder}"


def test_licence_and_contributors_agree_everywhere():
    assert "Apache License" in (ROOT / "LICENSE.txt").read_text() and "Version 2.0" in (ROOT / "LICENSE.txt").read_text()
    assert 'license = { text = "Apache-2.0" }' in (ROOT / "pyproject.toml").read_text()
    module_source = (ROOT / "MedSegEfficient" / "MedSegEfficient.py").read_text()
    contributors = cmake_setting("EXTENSION_CONTRIBUTORS")
    assert f'self.parent.contributors = ["{contributors}"]' in module_source
    assert "maintainers" in contributors


def test_the_module_file_imports_nothing_heavy_at_file_scope():
    """Slicer imports every module file at start-up: torch and the engine wait for the first Segment."""
    import ast

    tree = ast.parse((ROOT / "MedSegEfficient" / "MedSegEfficient.py").read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            top.add(node.module)
    assert top <= {"logging", "sys", "typing", "qt", "vtk", "slicer", "slicer.parameterNodeWrapper",
                   "slicer.ScriptedLoadableModule", "slicer.util", "MedSegEfficientLib.slicer.logic"}, top
