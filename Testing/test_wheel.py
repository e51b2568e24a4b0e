"""The wheel built from pyproject holds every file the package reads, and runs from a fresh virtual environment:
the shipped models are found, the terminology file is there, and `medseg segment` works from the installed copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from phantoms import make_phantom

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "MedSegEfficient" / "MedSegEfficientLib"
# What the package reads at run time besides its Python files (pyproject's package-data must list them).
DATA_PATTERNS = ("model/shipped/*.safetensors", "model/data/*.json")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    # Built from a copy of what pyproject packages: setuptools writes build/ beside the sources it builds.
    source = tmp_path_factory.mktemp("source")
    shutil.copytree(ROOT / "MedSegEfficient", source / "MedSegEfficient",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE.txt"):
        shutil.copy(ROOT / name, source / name)
    # No build isolation: the test venv's setuptools builds it, so the test needs no index.
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                           "-w", str(folder), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (built,) = folder.glob("medsegefficient-*.whl")
    return built


def test_the_wheel_holds_every_module_and_resource(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(path.relative_to(LIB.parent)) for path in LIB.rglob("*.py")}
    expected |= {str(path.relative_to(LIB.parent)) for pattern in DATA_PATTERNS for path in LIB.glob(pattern)}
    assert len(expected) > 60
    assert not expected - names, sorted(expected - names)
    assert any(name.endswith("LICENSE.txt") for name in names)
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    assert "medseg = MedSegEfficientLib.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_the_installed_wheel_runs_from_a_fresh_venv(wheel, tmp_path):
    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(environment)
    python = environment / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                              "--quiet", str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    # The fresh venv gets the package from the wheel alone; its dependencies (torch, SimpleITK, ...) come from the
    # test venv's site-packages, whose editable-install hook is not read from PYTHONPATH.
    run_env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"], "MEDSEG_MODELS_DIR": str(tmp_path)}
    image, _ = make_phantom(seed=5)
    from MedSegEfficientLib.io.images import write_label_image

    source = write_label_image(image.array, image, tmp_path / "phantom.nii.gz")
    check = ("import json, MedSegEfficientLib as m; from MedSegEfficientLib.model.terminology import EXTRA_FILE; "
             "print(json.dumps({'file': m.__file__, 'terminology': EXTRA_FILE.is_file()}))")
    done = subprocess.run([str(python), "-c", check], capture_output=True, text=True, cwd=tmp_path, env=run_env,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    facts = json.loads(done.stdout)
    assert facts["file"].startswith(str(environment)) and facts["terminology"]
    listed = subprocess.run([str(python), "-m", "MedSegEfficientLib.cli", "models", "--json"], capture_output=True,
                            text=True, cwd=tmp_path, env=run_env, timeout=300)
    assert listed.returncode == 0, listed.stderr[-2000:]
    models = json.loads(listed.stdout)["models"]
    shipped = sorted(path.stem for path in (LIB / "model" / "shipped").glob("*.safetensors"))
    assert sorted(entry["name"] for entry in models if "error" not in entry) == shipped
    assert all(entry["path"].startswith(str(environment)) for entry in models)
    output = tmp_path / "labels.seg.nrrd"
    segmented = subprocess.run([str(environment / "bin" / "medseg"), "segment", str(source), "-o", str(output),
                                "--device", "cpu", "--fast", "--quiet"], capture_output=True, text=True,
                               cwd=tmp_path, env=run_env, timeout=600)
    assert segmented.returncode == 0, segmented.stderr[-2000:]
    assert output.stat().st_size > 0 and "segments" in segmented.stdout
