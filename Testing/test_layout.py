"""The house rules of the code base, read from the source: wings that import only downwards, no import circle,
small files, few flat modules, and a Slicer Logic that needs no torch until the first run."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "MedSegEfficient" / "MedSegEfficientLib"
PACKAGE = "MedSegEfficientLib"
MAX_LINES = 500
MAX_FLAT_MODULES = 6
# Wings, lowest first: a module may import its own wing or a lower one. cli and slicer are siblings at the top.
WING_RANK = {"": 0, "networks": 1, "model": 2, "io": 3, "inference": 4, "training": 5, "importers": 6, "batch": 7, "server": 7,
             "cli": 8, "slicer": 8}
# Inside networks: shared cores, then the kernels, then the families (which never import each other), then the
# package's __init__, the one place that imports the families.
NETWORK_FAMILIES = {"baselines", "mlstm", "linear_attention", "tokenseg"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LIB.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in LIB.rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules this file imports anywhere (at the top or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith(PACKAGE))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            assert node.level == 0, f"{path}: relative import"
            for alias in node.names:  # `from package import submodule` is an arrow to the submodule
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
    return {name for name in found if name in modules}


def wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (LIB / parts[1]).is_dir()) else ""


def network_rank(module: str) -> int:
    parts = module.split(".")
    if module == f"{PACKAGE}.networks":
        return 3
    if len(parts) > 3 and parts[2] in NETWORK_FAMILIES:
        return 2
    if len(parts) > 3 and parts[2] == "kernels":
        return 1
    return 0


def arrows() -> list[tuple[str, str]]:
    modules = all_modules()
    return [(source, target) for source, path in modules.items() for target in imports_of(path, modules)
            if target != source]


def test_no_arrow_runs_back_up_a_wing():
    upward = []
    for source, target in arrows():
        source_wing, target_wing = wing(source), wing(target)
        if WING_RANK[target_wing] > WING_RANK[source_wing]:
            upward.append(f"{source} -> {target}")
        elif WING_RANK[target_wing] == WING_RANK[source_wing] and source_wing != target_wing:
            upward.append(f"{source} -> {target} (sibling wings)")
        elif source_wing == target_wing == "networks":
            same_family = (source.split(".") + [""])[2] == (target.split(".") + [""])[2]
            if network_rank(target) > network_rank(source) or (network_rank(target) == 2 and not same_family
                                                               and network_rank(source) == 2):
                upward.append(f"{source} -> {target} (inside networks)")
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    graph: dict[str, set[str]] = {}
    for source, target in arrows():
        graph.setdefault(source, set()).add(target)
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == 1:
                return path + [node, successor]
            if successor not in state and (circle := visit(successor, path + [node])):
                return circle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            circle = visit(start, [])
            assert circle is None, " -> ".join(circle)


def test_the_registry_is_a_leaf_and_one_place_imports_the_families():
    modules = all_modules()
    registry = f"{PACKAGE}.networks.registry"
    assert not {t for t in imports_of(modules[registry], modules) if t.startswith(f"{PACKAGE}.networks")}
    registering = {name for name, path in modules.items() if "register_network(" in path.read_text()
                   and name != registry}
    assert registering and registering <= imports_of(modules[f"{PACKAGE}.networks"], modules)


def test_files_are_small_and_the_core_is_not_flat():
    sources = [path for folder in ("MedSegEfficient", "Testing", "benchmarks", "training")
               for path in (ROOT / folder).rglob("*.py")]
    too_long = [f"{path.relative_to(ROOT)}: {n}" for path in sources
                if (n := len(path.read_text().splitlines())) > MAX_LINES]
    assert not too_long, too_long
    flat = sorted(path.name for path in LIB.glob("*.py"))
    assert len(flat) <= MAX_FLAT_MODULES, flat


def test_every_subpackage_says_what_lives_there():
    for init in LIB.rglob("__init__.py"):
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        assert docstring and len(docstring) > 20, init.relative_to(ROOT)


def test_the_slicer_logic_lists_models_and_the_device_without_torch():
    """Slicer's process imports no torch and makes no CUDA context: the network and torch live in the worker."""
    code = ("import sys; from MedSegEfficientLib.slicer.logic import MedSegEfficientLogic as L; "
            "fitting, hidden = L.modelChoices(); line = L.startDeviceProbe().wait(); "
            "print(len(fitting), 'torch' in sys.modules, 'safetensors' in sys.modules, line.startswith('Auto: '))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT / "MedSegEfficient", timeout=120)
    assert done.returncode == 0, done.stderr
    count, torch_loaded, safetensors_loaded, device_line = done.stdout.split()
    assert int(count) >= 1
    assert (torch_loaded, safetensors_loaded, device_line) == ("False", "False", "True")
