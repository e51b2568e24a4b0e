"""Python packages inside Slicer 5.10+, as Slicer offers them: torch through the PyTorch extension (PyTorchUtils,
which picks the CUDA build for the machine), the rest through ``slicer.util.pip_install`` (5.10 has neither
``slicer.packaging`` nor ``pip_ensure``).

Only what the segmentation worker imports and Slicer lacks is installed, with a constraints file that pins the
torch, numpy and SimpleITK already there, so that pip's resolver never replaces the torch the PyTorch extension
chose (nor Slicer's own numpy). Versions are checked, not only presence. The user is asked once, listing
everything; nothing is ever installed in testing mode (a missing package is then an error that names it). If a
package that Slicer's process had already imported changed, the user is offered a restart.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
import tempfile
from pathlib import Path
from typing import Callable

from MedSegEfficientLib.errors import MedSegError

# What the worker imports beyond Slicer's own packages: requirement -> the name it is imported by.
# monai and tqdm: the panel's "Improve model" trains in the worker.
REQUIREMENTS = {"safetensors>=0.4": "safetensors", "monai>=1.3": "monai", "tqdm>=4.60": "tqdm"}
# Slicer's own packages (and the PyTorch extension's torch): checked, pinned while installing, never installed here.
PINNED = {"torch>=2.1": "torch", "numpy>=1.24": "numpy", "SimpleITK>=2.2": "SimpleITK"}
_REQUIREMENT = re.compile(r"^([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][0-9.]*)$")


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def installed_version(requirement: str) -> str | None:
    name = _REQUIREMENT.match(requirement).group(1)
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def unmet(requirements: dict[str, str]) -> list[str]:
    """The requirements that are missing or older than asked, each with what is there."""
    problems = []
    for requirement, module in requirements.items():
        wanted = _version_tuple(_REQUIREMENT.match(requirement).group(2))
        version = installed_version(requirement)
        if importlib.util.find_spec(module) is None or version is None:
            problems.append(f"{requirement} (missing)")
        elif _version_tuple(version) < wanted:
            problems.append(f"{requirement} (found {version})")
    return problems


def constraints_text(pinned: dict[str, str] = PINNED) -> str:
    """pip constraints that keep the installed torch, numpy and SimpleITK exactly as they are."""
    lines = []
    for requirement in pinned:
        version = installed_version(requirement)
        if version is not None:
            lines.append(f"{_REQUIREMENT.match(requirement).group(1)}=={version}")
    return "\n".join(lines) + "\n"


def ensure_dependencies(slicer_module, testing: bool, confirm: Callable[[str], bool],
                        requirements: dict[str, str] = REQUIREMENTS, pinned: dict[str, str] = PINNED) -> list[str]:
    """Install what the worker lacks (after one question); returns the requirements installed."""
    if importlib.util.find_spec("torch") is None:
        if testing:
            raise MedSegError("PyTorch is missing, and nothing is installed in testing mode")
        _install_torch()
    too_old = [problem for problem in unmet(pinned) if "(found" in problem]
    if too_old:
        raise MedSegError("MedSegEfficient needs newer versions of " + ", ".join(too_old) +
                          ": update Slicer (numpy, SimpleITK) or PyTorch (PyTorch extension)")
    problems = unmet(requirements)
    if not problems:
        return []
    if testing:
        raise MedSegError("missing Python packages (nothing is installed in testing mode): " + ", ".join(problems))
    needed = {requirement: module for requirement, module in requirements.items() if unmet({requirement: module})}
    if not confirm("MedSegEfficient needs these Python packages: " + ", ".join(problems) + ". Install them now?"):
        raise MedSegError("the Python packages were not installed: " + ", ".join(needed))
    with tempfile.TemporaryDirectory(prefix="medseg-pip-") as folder:
        constraints = Path(folder) / "constraints.txt"
        constraints.write_text(constraints_text(pinned))
        slicer_module.util.pip_install(["-c", str(constraints), *needed])
    still = unmet(requirements)
    if still:
        raise MedSegError("pip did not install " + ", ".join(still) + " (see the Python console)")
    imported = [module for module in needed.values() if module in sys.modules]
    if imported and confirm("Slicer had already loaded " + ", ".join(imported) + ", which was just updated. "
                            "Restart Slicer now so that the new version is used?"):
        slicer_module.util.restart()
    return list(needed)


def _install_torch() -> None:
    try:
        import PyTorchUtils  # the PyTorch extension's module
    except ImportError:
        raise MedSegError("PyTorch is missing: install the 'PyTorch' extension from the Extension Manager, "
                          "restart Slicer, then open MedSegEfficient again") from None
    logic = PyTorchUtils.PyTorchUtilsLogic()
    if not logic.torchInstalled() and logic.installTorch(askConfirmation=True) is None:
        raise MedSegError("PyTorch was not installed")


__all__ = ["PINNED", "REQUIREMENTS", "constraints_text", "ensure_dependencies", "unmet"]
