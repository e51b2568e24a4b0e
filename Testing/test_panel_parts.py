"""The panel's plain-Python parts: region of interest, preflight, model library, dependencies."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.errors import Cancelled, InputImageError, MedSegError, ModelFileError
from MedSegEfficientLib.model.user_import import import_model_file
from MedSegEfficientLib.slicer.model_picker import InputShape, describe_choice, load_history, model_choices, record_run, why_not_fit
from MedSegEfficientLib.inference.preflight import check, estimate, model_grid_voxels
from MedSegEfficientLib.inference.region import crop, paste, voxel_box
from MedSegEfficientLib.slicer.dependencies import ensure_dependencies, unmet
from MedSegEfficientLib.volume import Volume
from models_for_tests import threshold_card, write_threshold_model
from phantoms import oblique_direction


def test_region_box_crop_and_paste_keep_every_voxel_in_place():
    volume = Volume(np.arange(20 * 30 * 40).reshape(20, 30, 40).astype(np.int16), spacing=(0.8, 1.2, 2.5),
                    origin=(-10.0, 5.0, 30.0), direction=oblique_direction(15))
    ras = volume.ijk_to_ras()
    inside = [ras @ np.array([i, j, k, 1.0]) for i, j, k in [(5, 7, 3), (20, 18, 11)]]
    low, high = np.minimum(*inside)[:3], np.maximum(*inside)[:3]
    box = voxel_box(volume, [low[0], high[0], low[1], high[1], low[2], high[2]])
    part = crop(volume, box)
    # the same voxel has the same value and the same RAS position in the crop and in the volume
    k, j, i = box[0].start + 2, box[1].start + 3, box[2].start + 4
    assert part.array[2, 3, 4] == volume.array[k, j, i]
    assert np.allclose(part.ijk_to_ras() @ [4, 3, 2, 1], volume.ijk_to_ras() @ [i, j, k, 1])
    assert box[2].start <= 5 and box[2].stop > 20 and box[0].start <= 3 and box[0].stop > 11
    full = paste(np.ones(part.grid_shape, np.uint8), box, volume.grid_shape)
    assert full.sum() == np.prod(part.grid_shape) and full[box].all()
    with pytest.raises(InputImageError, match="does not overlap"):
        voxel_box(volume, [1e4, 1e4 + 5, 1e4, 1e4 + 5, 1e4, 1e4 + 5])


def test_preflight_counts_the_buffers_and_advises_when_short():
    card = threshold_card(3, spacing=[2.0, 2.0, 2.0], patch_size=[64, 64, 64])
    volume = Volume(np.zeros((100, 200, 200), np.int16), spacing=(1.0, 1.0, 1.0))
    assert model_grid_voxels(volume, card) == 50 * 100 * 100
    cpu, gpu = estimate(volume, card, gpu=False), estimate(volume, card, gpu=True)
    assert gpu.gpu_bytes > 0 and cpu.gpu_bytes == 0 and cpu.ram_bytes > gpu.ram_bytes
    # the network term is the dominant, documented rule: 4 tiles x 64^3 voxels x 512 bytes
    assert gpu.gpu_bytes >= 4 * 64**3 * 512
    assert check(volume, card, True, free_gpu=10 * 2**30, free_ram=10 * 2**30).fits
    short = check(volume, card, True, free_gpu=200 * 2**20, free_ram=10 * 2**30)
    assert not short.fits and any("Fast mode" in a for a in short.advice) and any("CPU" in a for a in short.advice)
    nothing = check(volume, card, False, free_gpu=None, free_ram=1000)
    assert not nothing.fits and "ROI" in " ".join(nothing.advice) and "GiB RAM" in nothing.message()


def test_model_fit_reasons():
    entry = {"in_channels": 1, "spatial_dims": 3}
    assert why_not_fit(entry, InputShape(1, False)) is None
    assert why_not_fit(entry, InputShape(1, True)) == "a 3D model; the input is a single slice"
    assert "needs an RGB image" in why_not_fit({"in_channels": 3, "spatial_dims": 2}, InputShape(1, True))


def test_import_validates_copies_once_and_never_overwrites(user_models, tmp_path):
    first = write_threshold_model(tmp_path / "a" / "m.safetensors", name="first")
    second = write_threshold_model(tmp_path / "b" / "m.safetensors", name="second")
    assert import_model_file(first) == user_models / "m.safetensors"
    assert import_model_file(first) == user_models / "m.safetensors"  # same content: not copied twice
    assert import_model_file(second) == user_models / "m_2.safetensors"
    fitting, hidden = model_choices(InputShape(1, False))
    titles = {entry["title"] for entry in fitting}
    assert {"first", "second"} <= titles
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"garbage")
    with pytest.raises(ModelFileError):
        import_model_file(corrupt)
    with pytest.raises(ModelFileError, match="medseg import"):
        import_model_file(tmp_path / "weights.pth")
    assert sorted(p.name for p in user_models.glob("*.safetensors")) == ["m.safetensors", "m_2.safetensors"]


def test_run_history_feeds_the_model_description(user_models, tmp_path):
    path = write_threshold_model(tmp_path / "m.safetensors")
    from MedSegEfficientLib.model.library import describe_model_file

    entry = describe_model_file(path)
    assert "not run here yet" in describe_choice(entry, load_history())
    record_run(str(path), 3.14159, "CPU (2 threads)")
    text = describe_choice(entry, load_history())
    assert "last run here: 3.1 s on CPU (2 threads)" in text and "labels:" in text and "MB" in text


class SlicerInstallersStandIn:
    """STAND-IN for Slicer 5.10's installer (slicer.util.pip_install, which needs the application): records each
    call and the constraints file it was given, installs nothing."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.constraints: list[str] = []
        self.restarts = 0
        self.util = types.SimpleNamespace(pip_install=self._pip_install, restart=self._restart)

    def _pip_install(self, arguments: list[str]) -> None:
        self.calls.append(list(arguments))
        self.constraints.append(Path(arguments[arguments.index("-c") + 1]).read_text())

    def _restart(self) -> None:
        self.restarts += 1


def test_dependencies_install_only_what_is_missing_keeping_torch_and_never_in_testing_mode():
    import torch

    needs = {"numpy>=1.20": "numpy", "not_a_real_package_xyz>=1": "not_a_real_package_xyz"}
    slicer_stand_in = SlicerInstallersStandIn()
    with pytest.raises(MedSegError, match="pip did not install not_a_real_package_xyz"):
        ensure_dependencies(slicer_stand_in, False, lambda text: True, needs)  # the stand-in installs nothing
    assert [call[2:] for call in slicer_stand_in.calls] == [["not_a_real_package_xyz>=1"]]
    # torch, numpy and SimpleITK are pinned to what is there: pip cannot replace the PyTorch extension's torch
    assert f"torch=={torch.__version__}" in slicer_stand_in.constraints[0].splitlines()
    assert any(line.startswith("numpy==") for line in slicer_stand_in.constraints[0].splitlines())
    testing = SlicerInstallersStandIn()
    with pytest.raises(MedSegError, match="testing mode"):
        ensure_dependencies(testing, True, lambda text: True, needs)
    declined = SlicerInstallersStandIn()
    with pytest.raises(MedSegError, match="not installed"):
        ensure_dependencies(declined, False, lambda text: False, needs)
    assert testing.calls == [] and declined.calls == []
    assert ensure_dependencies(testing, True, lambda text: True, {"numpy>=1.20": "numpy"}) == []


def test_dependencies_check_versions_not_only_presence():
    assert unmet({"numpy>=1.0": "numpy"}) == []
    assert unmet({"numpy>=999": "numpy"})[0].startswith("numpy>=999 (found ")
    assert unmet({"not_a_real_package_xyz>=1": "not_a_real_package_xyz"}) == ["not_a_real_package_xyz>=1 (missing)"]
    with pytest.raises(MedSegError, match="newer versions of numpy>=999"):
        ensure_dependencies(SlicerInstallersStandIn(), False, lambda text: True, {}, {"numpy>=999": "numpy"})


def test_a_package_slicer_had_imported_and_pip_changed_asks_for_a_restart(monkeypatch):
    from MedSegEfficientLib.slicer import dependencies

    state = {"installed": False}
    real_unmet = dependencies.unmet

    def unmet_until_installed(requirements):  # json (imported here, as Slicer imports its own) "needs" an update
        if "json>=99" in requirements:
            return [] if state["installed"] else ["json>=99 (found 2.0.9)"]
        return real_unmet(requirements)

    monkeypatch.setattr(dependencies, "unmet", unmet_until_installed)
    slicer_stand_in = SlicerInstallersStandIn()
    slicer_stand_in.util.pip_install = lambda arguments: state.update(installed=True)
    questions = []
    installed = ensure_dependencies(slicer_stand_in, False, lambda text: questions.append(text) or True, {"json>=99": "json"})
    assert installed == ["json>=99"] and slicer_stand_in.restarts == 1
    assert len(questions) == 2 and "Restart Slicer" in questions[1]  # asked once to install, once to restart


def test_cards_for_2d_models_estimate_per_slice():
    card = ModelCard.from_dict({**threshold_card(2).to_dict(), "spacing": [1.0, 1.0]})
    volume = Volume(np.zeros((10, 100, 100), np.int16), spacing=(0.5, 0.5, 3.0))
    assert model_grid_voxels(volume, card) == 10 * 50 * 50
    assert estimate(volume, card, gpu=True).gpu_bytes < estimate(volume, card, gpu=True, batch=64).gpu_bytes
