"""Shared fixtures: the core on sys.path, real sample CTs, a small test network, a slicer-core scene."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "MedSegEfficient"), str(Path(__file__).resolve().parent)]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The Slicer panel's worker process registers the test networks too (models_for_tests), and uses 2 threads.
os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")])
os.environ["MEDSEG_WORKER_IMPORTS"] = "models_for_tests"

import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def samples() -> dict[str, Path]:
    """Real CTs from TotalSegmentator 2.18.0, fetched through pip once and checked against SHA-256 sums."""
    from MedSegEfficientLib.io.sample_data import sample_paths

    return sample_paths()


@pytest.fixture()
def user_models(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "user-models"
    monkeypatch.setenv("MEDSEG_MODELS_DIR", str(folder))
    return folder


@pytest.fixture()
def slicer_logics():
    from slicer_scene import SlicerLogics

    logics = SlicerLogics()
    yield logics
    logics.scene.Clear(1)


@pytest.fixture()
def application():
    """The Qt application (offscreen), as Slicer's own."""
    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication([])


@pytest.fixture()
def slicer_app(application, slicer_logics, user_models):
    """The module loaded as Slicer loads it, on the stand-in application (slicer_application_standin.py); quit at
    the end, which ends the module's worker."""
    from slicer_application_standin import import_module_file

    slicer_logics.install_application_globals()
    module = import_module_file()
    module.application.complete_startup()
    yield module.application
    widget = module.application.widget
    if widget is not None and widget._run is not None:
        widget._run.cancel()
        widget._run.wait(30)
    module.application.quit()
