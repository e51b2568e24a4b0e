"""The engine on phantoms: geometry, orientation, 2D slices, progress, cancel, out-of-memory fallback, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from MedSegEfficientLib.model.weights import load_model
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.errors import Cancelled, InputImageError, MedSegError
from MedSegEfficientLib.metrics import dice_per_label
from MedSegEfficientLib.volume import Volume
from models_for_tests import write_threshold_model
from phantoms import make_phantom, oblique_direction


@pytest.fixture()
def model_3d(tmp_path):
    return load_model(write_threshold_model(tmp_path / "bands3d.safetensors"))


def _dice(prediction, reference):
    return dice_per_label([prediction], [reference], [1, 2])


def test_labels_come_back_on_the_input_grid(model_3d):
    image, reference = make_phantom(direction=oblique_direction())
    result = Segmenter(model_3d, SegmentOptions(device="cpu")).segment(image)
    assert result.labels.shape == image.grid_shape and result.labels.dtype == np.uint8
    assert all(score > 0.85 for score in _dice(result.labels, reference.array).values())


def test_flipped_storage_gives_the_same_anatomy(model_3d):
    """The same patient stored with a flipped axis (NIfTI-style) must give the same labels, flipped."""
    image, _ = make_phantom()
    flipped = Volume(image.array[:, :, ::-1].copy(), image.spacing,
                     tuple(image.origin + image.direction @ np.array([(image.grid_shape[2] - 1) * image.spacing[0], 0, 0])),
                     image.direction @ np.diag([-1.0, 1.0, 1.0]))
    segmenter = Segmenter(model_3d, SegmentOptions(device="cpu"))
    straight = segmenter.segment(image).labels
    mirrored = segmenter.segment(flipped).labels
    assert np.array_equal(straight, mirrored[:, :, ::-1])


def test_progress_is_monotonic_and_complete(model_3d):
    image, _ = make_phantom()
    seen: list[tuple[float, str]] = []
    Segmenter(model_3d, SegmentOptions(device="cpu")).segment(image, progress=lambda f, s: seen.append((f, s)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert {"preprocessing", "network", "postprocessing"} <= {s for _, s in seen}
    assert sum(1 for _, s in seen if s == "network") > 3  # one step per tile batch


def test_cancel_between_tiles(model_3d):
    image, _ = make_phantom()
    calls = []

    def cancel_after_two_checks() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        Segmenter(model_3d, SegmentOptions(device="cpu")).segment(image, cancel=cancel_after_two_checks)


class _FailsOnLargeBatches(torch.nn.Module):
    """Wraps a network and raises CUDA's out-of-memory error for batches above ``limit``."""

    def __init__(self, inner: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.inner, self.limit = inner, limit

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


def test_out_of_memory_halves_the_batch_and_says_so(model_3d):
    image, reference = make_phantom()
    model_3d.network = _FailsOnLargeBatches(model_3d.network, limit=1)
    result = Segmenter(model_3d, SegmentOptions(device="cpu", batch_size=4)).segment(image)
    assert any("retrying with batch 2" in n for n in result.report.notices)
    assert any("retrying with batch 1" in n for n in result.report.notices)
    assert all(score > 0.85 for score in _dice(result.labels, reference.array).values())


def test_out_of_memory_at_batch_one_on_cpu_is_a_clear_error(model_3d):
    image, _ = make_phantom()
    model_3d.network = _FailsOnLargeBatches(model_3d.network, limit=0)
    with pytest.raises(MedSegError, match="out of memory on the CPU"):
        Segmenter(model_3d, SegmentOptions(device="cpu", batch_size=1)).segment(image)


def test_two_dimensional_model_runs_slice_by_slice(tmp_path):
    model = load_model(write_threshold_model(tmp_path / "bands2d.safetensors", spatial_dims=2))
    image, reference = make_phantom(shape=(12, 50, 46))
    seen = []
    result = Segmenter(model, SegmentOptions(device="cpu", batch_size=5)).segment(image, progress=lambda f, s: seen.append(s))
    assert result.labels.shape == image.grid_shape
    assert seen.count("network") == 1 + 3  # start, then ceil(12 / 5) batches
    assert all(score > 0.85 for score in _dice(result.labels, reference.array).values())


def test_rgb_picture_is_a_one_slice_volume(tmp_path):
    model = load_model(write_threshold_model(tmp_path / "rgb.safetensors", spatial_dims=2, in_channels=3))
    image, reference = make_phantom(shape=(9, 40, 40))
    middle = image.array[4:5, :, :, np.newaxis]
    rgb = Volume(np.repeat(middle, 3, axis=-1), image.spacing, image.origin, image.direction)
    result = Segmenter(model, SegmentOptions(device="cpu")).segment(rgb)
    assert result.labels.shape == (1, 40, 40)
    assert all(score > 0.85 for score in _dice(result.labels, reference.array[4:5]).values())


def test_bad_inputs_are_clear_errors(model_3d):
    image, _ = make_phantom()
    segmenter = Segmenter(model_3d, SegmentOptions(device="cpu"))
    with_nan = image.with_array(image.array.astype(np.float32))
    with_nan.array[3, 4, 5] = np.nan
    with pytest.raises(InputImageError, match="1 NaN"):
        segmenter.segment(with_nan)
    with pytest.raises(InputImageError, match="channel"):
        segmenter.segment(image.with_array(np.zeros(image.grid_shape + (2,), np.float32)))
    with pytest.raises(InputImageError, match="single slice"):
        segmenter.segment(image.with_array(np.zeros((1, 30, 30), np.int16)))


def test_an_absent_gpu_is_an_error_not_a_silent_cpu_run(model_3d):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(MedSegError, match="no CUDA GPU"):
        Segmenter(model_3d, SegmentOptions(device="cuda"))
