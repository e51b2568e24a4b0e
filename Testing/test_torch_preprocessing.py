"""The torch model grid (made on the run's device, the default on CUDA) against SimpleITK's: the same voxels, the
same geometry and the same labels back, for reoriented, flipped, permuted, oblique, resampled and multi-channel
inputs and every normalisation; run here on the CPU, where both paths exist."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.inference.preprocessing import ModelGrid, labels_on_input_grid, resample_labels, to_model_grid
from MedSegEfficientLib.model.card import Normalization
from MedSegEfficientLib.model.weights import load_model
from MedSegEfficientLib.volume import Volume
from models_for_tests import threshold_card, write_threshold_model
from phantoms import make_phantom, oblique_direction

CPU = torch.device("cpu")
PERMUTED = np.array([[0.0, 0, -1], [1, 0, 0], [0, -1, 0]])  # a sagittal-style storage: axes swapped and reversed


def geometries() -> dict[str, Volume]:
    image, _ = make_phantom(shape=(20, 26, 30), spacing=(1.3, 0.9, 2.1))
    return {
        "identity": image,
        "flipped x": Volume(image.array, image.spacing, image.origin, np.diag([-1.0, 1, 1])),
        "permuted": Volume(image.array, image.spacing, (5.0, -3.0, 12.0), PERMUTED),
        "oblique": Volume(image.array, image.spacing, image.origin, oblique_direction(25)),
        "float voxels": image.with_array(image.array.astype(np.float32) + 0.25),
    }


@pytest.mark.parametrize("name", list(geometries()))
@pytest.mark.parametrize("orientation", ["LPS", "RAS", "LPI", "none"])
@pytest.mark.parametrize("spacing", [[2.0, 2.0, 2.5], [0.7, 1.1, 1.9], None])
def test_the_torch_grid_equals_simpleitks(name, orientation, spacing):
    volume = geometries()[name]
    card = threshold_card(orientation=orientation, spacing=spacing)
    reference = to_model_grid(volume, card)
    made = to_model_grid(volume, card, CPU)
    assert made.geometry.same_grid(reference.geometry, tolerance=1e-6), name
    assert tuple(made.array.shape) == reference.array.shape
    assert np.allclose(made.array.numpy(), reference.array, atol=1e-4)


@pytest.mark.parametrize("name", list(geometries()))
@pytest.mark.parametrize("spacing", [[2.0, 2.0, 2.5], [0.7, 1.1, 1.9]])
def test_labels_come_back_as_simpleitk_puts_them(name, spacing):
    volume = geometries()[name]
    card = threshold_card(orientation="RAS", spacing=spacing)
    grid = to_model_grid(volume, card, CPU)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, size=tuple(grid.array.shape[1:]), dtype=np.uint8)
    back = labels_on_input_grid(labels, grid, volume)
    expected = resample_labels(labels, grid.geometry, volume, extrapolate=True)
    assert back.shape == volume.grid_shape
    # A voxel exactly halfway between two model voxels (1.3 mm against 2.0 mm: every tenth) may round either way
    # under a rotation's rounding error; every other voxel must be the same.
    settled = np.ones(volume.grid_shape, bool)
    for t in range(3):
        axis = grid.mapping.order[t]
        index = np.arange(volume.grid_shape[2 - axis])
        position = (index[::-1] if grid.mapping.flipped[t] else index) * grid.mapping.scale[t]
        tie = np.abs(position - np.floor(position) - 0.5) < 1e-6
        shape = [1, 1, 1]
        shape[2 - axis] = -1
        settled &= ~tie.reshape(shape)
    assert settled.mean() > 0.7 and np.array_equal(back[settled], expected[settled])


@pytest.mark.parametrize("device", [None, CPU], ids=["simpleitk", "torch"])
@pytest.mark.parametrize("direction", [np.eye(3), np.diag([1.0, 1, -1])], ids=["plain", "z reversed"])
def test_slices_past_the_model_grids_edge_take_the_nearest_model_slice(device, direction):
    # 20 slices of 2 mm on a 3 mm grid: 13 model slices, centred up to 36 mm from the first, so the input's last
    # slice (38 mm) lies past the model grid's edge (37.5 mm). It came back unlabelled before.
    image, _ = make_phantom(shape=(20, 24, 24), spacing=(1.0, 1.0, 2.0))
    volume = Volume(image.array, image.spacing, image.origin, direction)
    grid = to_model_grid(volume, threshold_card(orientation="LPS", spacing=[1.0, 1.0, 3.0]), device)
    assert grid.array.shape[1] == 13
    labels = np.broadcast_to(np.arange(1, 14, dtype=np.uint8)[:, None, None], grid.array.shape[1:]).copy()
    back = labels_on_input_grid(labels, grid, volume)
    assert back.shape == volume.grid_shape
    position = np.arange(20) * 2.0 / 3.0  # each input slice's place on the model grid, from its first voxel
    nearest = np.minimum(np.floor(position + 0.5), 12).astype(np.uint8) + 1
    expected = nearest if direction[2, 2] > 0 else nearest[::-1]
    assert np.array_equal(back[:, 0, 0], expected) and (back == back[:, :1, :1]).all()


@pytest.mark.parametrize("norm", [Normalization("ct", -200, 300, 40, 90), Normalization("zscore"),
                                  Normalization("percentile", 1, 99), Normalization("imagenet")])
def test_every_normalisation_matches(norm):
    image, _ = make_phantom(shape=(16, 20, 24))
    rgb = Volume(np.stack([np.clip(image.array + 200 * c, 0, 255) for c in range(3)], -1).astype(np.uint8),
                 image.spacing)
    volume = rgb if norm.kind == "imagenet" else image
    card = threshold_card(in_channels=volume.channels, normalization=norm, spacing=[1.7, 1.7, 2.0])
    reference, made = to_model_grid(volume, card), to_model_grid(volume, card, CPU)
    assert made.array.shape[0] == volume.channels
    assert np.allclose(made.array.numpy(), reference.array, atol=1e-4)


def test_the_engine_gives_the_same_labels_either_way(tmp_path):
    model = load_model(write_threshold_model(tmp_path / "bands.safetensors"))
    image, _ = make_phantom(direction=oblique_direction())
    host = Segmenter(model, SegmentOptions(device="cpu", device_preprocessing=False)).segment(image).labels
    made = Segmenter(model, SegmentOptions(device="cpu", device_preprocessing=True)).segment(image).labels
    assert made.shape == host.shape and np.mean(made == host) > 0.995  # ties at 1.5 mm against 2 mm round either way
    assert len(np.unique(made)) > 1


def test_a_grid_made_by_torch_is_a_tensor_and_says_how_to_go_back():
    image, _ = make_phantom(shape=(12, 14, 16))
    grid = to_model_grid(image, threshold_card(), CPU)
    assert isinstance(grid, ModelGrid) and isinstance(grid.array, torch.Tensor) and grid.mapping is not None
    assert grid.array.dtype == torch.float32 and grid.array.is_contiguous()


def test_resampled_volumes_match_simpleitk():
    import SimpleITK as sitk

    from MedSegEfficientLib.inference.torch_preprocessing import resampled
    from MedSegEfficientLib.volume import to_sitk

    image, _ = make_phantom(shape=(20, 26, 30), spacing=(1.3, 0.9, 2.1))
    made = resampled(image, (0.8, 0.8, 1.5), CPU)
    reference = sitk.Resample(to_sitk(image), made.grid_shape[::-1], sitk.Transform(), sitk.sitkLinear,
                              image.origin, (0.8, 0.8, 1.5), tuple(image.direction.ravel()), float(image.array.min()),
                              sitk.sitkFloat32)
    expected = np.round(sitk.GetArrayFromImage(reference)).astype(np.int16)
    assert made.array.dtype == np.int16 and made.grid_shape == expected.shape
    assert np.abs(made.array.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("shape, dtype", [((7, 9, 11), np.int16), ((5, 6, 7, 3), np.uint8), ((3, 4, 5), np.float32)])
def test_a_volume_uploaded_in_chunks_arrives_whole(shape, dtype):
    from MedSegEfficientLib.inference.gpu.volume_upload import upload_volume

    array = (np.random.default_rng(0).random(shape) * 200).astype(dtype)
    # Chunks of 40 bytes, staged from 1 byte on: several chunks, the last one short, both buffers taking turns.
    moved = upload_volume(array, CPU, chunk_bytes=40, staged_from_bytes=1)
    assert moved.dtype == torch.from_numpy(array).dtype and tuple(moved.shape) == shape
    assert np.array_equal(moved.numpy(), array)
