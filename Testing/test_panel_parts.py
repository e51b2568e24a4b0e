"""The panel's plain-Python parts: region of interest, preflight, background run, model library, dependencies."""

from __future__ import annotations

import threading
import time
import types

import numpy as np
import pytest

from MedSegEfficientLib.slicer.background_run import BackgroundRun
from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.errors import Cancelled, InputImageError, MedSegError, ModelFileError
from MedSegEfficientLib.model.user_import import import_model_file
from MedSegEfficientLib.slicer.model_picker import InputShape, describe_choice, load_history, model_choices, record_run, why_not_fit
from MedSegEfficientLib.inference.preflight import check, estimate, model_grid_voxels
from MedSegEfficientLib.inference.region import crop, paste, voxel_box
from MedSegEfficientLib.slicer.dependencies import ensure_dependencies
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


def test_background_run_reports_progress_result_errors_and_cancel():
    gate = threading.Event()

    def job(progress, cancel):
        progress(0.5, "half")
        gate.wait(5)
        for _ in range(200):
            if cancel():
                raise Cancelled("stopped")
            time.sleep(0.005)
        return 42

    run = BackgroundRun(job).start()
    time.sleep(0.05)
    assert run.status().stage == "half" and not run.status().done
    gate.set()
    assert run.wait(10).result == 42 and run.status().fraction == 1.0
    stopped = BackgroundRun(job).start()
    gate.set()
    stopped.cancel()
    status = stopped.wait(10)
    assert status.done and status.cancelled and status.result is None
    failed = BackgroundRun(lambda progress, cancel: 1 / 0).start().wait(10)
    assert isinstance(failed.error, ZeroDivisionError) and "ZeroDivisionError" in failed.traceback


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
    """STAND-IN for Slicer's installers (slicer.pydeps / slicer.util), which need the application: records calls."""

    def __init__(self, with_pip_ensure: bool) -> None:
        self.calls: list[tuple] = []
        self.util = types.SimpleNamespace(pip_install=lambda text: self.calls.append(("pip_install", text)))
        if with_pip_ensure:
            self.pydeps = types.SimpleNamespace(
                pip_ensure=lambda reqs, requester: self.calls.append(("pip_ensure", [str(r) for r in reqs], requester)))


def test_dependencies_use_pip_ensure_then_pip_install_and_never_install_in_testing_mode():
    needs = {"monai>=1.3": "monai", "not_a_real_package_xyz>=1": "not_a_real_package_xyz"}
    newer = SlicerInstallersStandIn(with_pip_ensure=True)
    assert ensure_dependencies(newer, False, lambda text: True, needs) == ["not_a_real_package_xyz>=1"]
    assert newer.calls == [("pip_ensure", ["not_a_real_package_xyz>=1"], "MedSegEfficient")]
    older = SlicerInstallersStandIn(with_pip_ensure=False)
    ensure_dependencies(older, False, lambda text: True, needs)
    assert older.calls == [("pip_install", "not_a_real_package_xyz>=1")]
    testing = SlicerInstallersStandIn(with_pip_ensure=True)
    with pytest.raises(MedSegError, match="testing mode"):
        ensure_dependencies(testing, True, lambda text: True, needs)
    declined = SlicerInstallersStandIn(with_pip_ensure=True)
    with pytest.raises(MedSegError, match="not installed"):
        ensure_dependencies(declined, False, lambda text: False, needs)
    assert testing.calls == [] and declined.calls == []
    assert ensure_dependencies(testing, True, lambda text: True, {"monai>=1.3": "monai"}) == []


def test_cards_for_2d_models_estimate_per_slice():
    card = ModelCard.from_dict({**threshold_card(2).to_dict(), "spacing": [1.0, 1.0]})
    volume = Volume(np.zeros((10, 100, 100), np.int16), spacing=(0.5, 0.5, 3.0))
    assert model_grid_voxels(volume, card) == 10 * 50 * 50
    assert estimate(volume, card, gpu=True).gpu_bytes < estimate(volume, card, gpu=True, batch=64).gpu_bytes
