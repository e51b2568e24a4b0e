"""Python packages inside Slicer: torch through the PyTorch extension (PyTorchUtils, which picks the right CUDA
build), the rest through Slicer's pip_ensure (Slicer >= 5.11 names the module ``slicer.pydeps``; the scripted
module template calls it ``slicer.packaging``) or ``slicer.util.pip_install`` on older Slicer. Nothing is ever
installed in testing mode: a missing package is then an error that names it.
"""

from __future__ import annotations

import importlib.util
from typing import Callable

from MedSegEfficientLib.errors import MedSegError

# requirement -> the name it is imported by
REQUIREMENTS = {"monai>=1.3": "monai", "SimpleITK>=2.2": "SimpleITK", "safetensors>=0.4": "safetensors",
                "tqdm>=4.60": "tqdm", "pillow>=10": "PIL"}


def missing_requirements(requirements: dict[str, str] = REQUIREMENTS) -> list[str]:
    return [requirement for requirement, module in requirements.items() if importlib.util.find_spec(module) is None]


def ensure_dependencies(slicer_module, testing: bool, confirm: Callable[[str], bool],
                        requirements: dict[str, str] = REQUIREMENTS) -> list[str]:
    """Install what is missing (after ``confirm``); returns what was installed."""
    installed = []
    if importlib.util.find_spec("torch") is None:
        if testing:
            raise MedSegError("PyTorch is missing, and nothing is installed in testing mode")
        _install_torch()
        installed.append("torch")
    missing = missing_requirements(requirements)
    if not missing:
        return installed
    if testing:
        raise MedSegError("missing Python packages (nothing is installed in testing mode): " + ", ".join(missing))
    if not confirm("MedSegEfficient needs these Python packages: " + ", ".join(missing) + ". Install them now?"):
        raise MedSegError("the Python packages were not installed: " + ", ".join(missing))
    installer = getattr(slicer_module, "pydeps", None) or getattr(slicer_module, "packaging", None)
    if installer is not None and hasattr(installer, "pip_ensure"):
        from packaging.requirements import Requirement

        installer.pip_ensure([Requirement(text) for text in missing], requester="MedSegEfficient")
    else:
        slicer_module.util.pip_install(" ".join(missing))
    return installed + missing


def _install_torch() -> None:
    try:
        import PyTorchUtils  # the PyTorch extension's module
    except ImportError:
        raise MedSegError("PyTorch is missing: install the 'PyTorch' extension from the Extension Manager, "
                          "restart Slicer, then open MedSegEfficient again") from None
    logic = PyTorchUtils.PyTorchUtilsLogic()
    if not logic.torchInstalled() and logic.installTorch(askConfirmation=True) is None:
        raise MedSegError("PyTorch was not installed")


__all__ = ["REQUIREMENTS", "ensure_dependencies", "missing_requirements"]
