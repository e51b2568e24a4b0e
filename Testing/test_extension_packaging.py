"""What goes into Slicer: the module's CMakeLists lists exactly the files the panel and its worker import, and the
model and terminology files they read; the module's Testing folder is built; Slicer 5.10 is declared the minimum."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "MedSegEfficient"
ENTRY_POINTS = ("MedSegEfficient.py", "MedSegEfficientLib/slicer/worker_main.py")


def _module_file(dotted: str) -> Path | None:
    path = MODULE.joinpath(*dotted.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def import_closure(entry_points=ENTRY_POINTS) -> set[str]:
    """Every Lib file reachable by an import statement (function-level imports too) from the entry points, with the
    packages around each."""
    seen: set[Path] = set()
    todo = [MODULE / entry for entry in entry_points]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        parts = path.relative_to(MODULE).parts
        todo += [MODULE.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts))
                 if MODULE.joinpath(*parts[:i], "__init__.py").is_file()]
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            todo += [found for name in names if name.startswith("MedSegEfficientLib")
                     if (found := _module_file(name)) is not None]
    return {path.relative_to(MODULE).as_posix() for path in seen}


def cmake_list(name: str) -> list[str]:
    text = (MODULE / "CMakeLists.txt").read_text()
    body = re.search(rf"set\({name}\n(.*?)\n  \)", text, re.S).group(1)
    return [line.strip().replace("${MODULE_NAME}", "MedSegEfficient") for line in body.splitlines() if line.strip()]


def test_the_module_installs_exactly_what_the_panel_and_the_worker_import():
    listed = set(cmake_list("MODULE_PYTHON_SCRIPTS"))
    closure = import_closure()
    assert listed == closure, {"listed, not imported": sorted(listed - closure),
                               "imported, not listed": sorted(closure - listed)}
    # what Python users have and Slicer does not need stays out; of training, only what "Improve model" runs
    assert not any(path.startswith(("MedSegEfficientLib/cli/", "MedSegEfficientLib/server/",
                                    "MedSegEfficientLib/batch/", "MedSegEfficientLib/importers/")) for path in listed)
    assert "MedSegEfficientLib/training/finetune.py" in listed
    assert not {"MedSegEfficientLib/training/distillation.py", "MedSegEfficientLib/training/postprocessing_choice.py"} & listed


def test_every_shipped_model_and_data_file_is_a_resource_and_every_resource_exists():
    resources = cmake_list("MODULE_PYTHON_RESOURCES")
    for resource in resources:
        assert (MODULE / resource).is_file(), resource
    shipped = {path.relative_to(MODULE).as_posix() for folder in ("model/shipped", "model/data")
               for path in (MODULE / "MedSegEfficientLib" / folder).iterdir() if path.is_file()}
    assert shipped <= set(resources), shipped - set(resources)


def test_the_module_testing_folder_is_built_and_the_self_test_registered():
    text = (MODULE / "CMakeLists.txt").read_text()
    testing = text.split("if(BUILD_TESTING)")[1].split("endif()")[0]
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in testing and "add_subdirectory(Testing)" in testing
    assert "add_subdirectory(Python)" in (MODULE / "Testing" / "CMakeLists.txt").read_text()


def test_slicer_5_10_is_declared_the_minimum():
    assert 'VERSION_LESS "5.10"' in (ROOT / "CMakeLists.txt").read_text()
    assert "(5, 10)" in (MODULE / "MedSegEfficient.py").read_text()
    assert "Slicer 5.10" in (ROOT / "README.md").read_text()
