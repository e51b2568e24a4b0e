"""From the input grid to the model's grid and back: orientation, spacing, intensity normalisation.

On the CPU, resampling uses SimpleITK (multi-threaded, geometry-aware); on CUDA the grid is made on the GPU with
torch (torch_preprocessing.py), the volume sent once in its own voxel type. Both paths give the grid's
``AxisMapping``: a 3D model's class scores go back to the input grid by it, slab by slab, and the argmax is taken
there (score_resampling.py); a 2D model's labels go back by nearest neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from MedSegEfficientLib.errors import InputImageError
from MedSegEfficientLib.inference.torch_preprocessing import (AxisMapping, labels_to_input_grid, model_grid_tensor,
                                                              plan, target_spacing)
from MedSegEfficientLib.model.card import ModelCard, Normalization
from MedSegEfficientLib.volume import Volume, from_sitk, to_sitk


@dataclass
class ModelGrid:
    """The input as the network sees it: channel-first float32 array plus its geometry."""

    array: np.ndarray | torch.Tensor  # (C, k, j, i); a tensor on the run's device when made by torch
    geometry: Volume  # geometry of the model grid (its array is a placeholder of the grid shape)
    mapping: AxisMapping | None = None  # how scores or labels go back to the input grid by index arithmetic
    nnunet: object | None = None  # nnU-Net's mode: where its crop and resampling came from (NnUNetGridInfo)


def segmentable(volume: Volume) -> Volume:
    """The volume in a voxel type the engine reads: integers and float32/64 as they are, float16 and bool widened
    (SimpleITK has neither); complex, object, text and time types are refused with one line."""
    kind = volume.array.dtype
    if kind == np.float16:
        return volume.with_array(volume.array.astype(np.float32))
    if kind == np.bool_:
        return volume.with_array(volume.array.astype(np.uint8))
    if not (np.issubdtype(kind, np.integer) or np.issubdtype(kind, np.floating)):
        raise InputImageError(f"voxels of type {kind} cannot be segmented; give integers or floats")
    return volume


def check_input(volume: Volume, card: ModelCard) -> None:
    if volume.array.ndim not in (3, 4):
        raise InputImageError(f"the image has {volume.array.ndim} array dimensions; a 3D volume is needed")
    if volume.channels != card.in_channels:
        raise InputImageError(f"the image has {volume.channels} channel(s); model '{card.name}' needs "
                              f"{card.in_channels}")
    if card.spatial_dims == 3 and min(volume.grid_shape) < 2:
        raise InputImageError(f"the image is a single slice {volume.grid_shape}; model '{card.name}' is 3D")
    if np.issubdtype(volume.array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(volume.array)))
        if bad:
            raise InputImageError(f"the image has {bad} NaN or infinite voxels")


def to_model_grid(volume: Volume, card: ModelCard, device: torch.device | None = None) -> ModelGrid:
    """Reorient to the card's axis order and resample to its spacing; then normalise. With a ``device``, all of it
    happens there with torch and the grid stays there."""
    if device is not None:
        array, mapping, geometry = model_grid_tensor(volume, card, device)
        return ModelGrid(normalize(array, card.normalization), geometry, mapping)
    import SimpleITK as sitk

    image = to_sitk(volume)
    if card.orientation != "none":
        image = sitk.DICOMOrient(image, card.orientation)
    target = target_spacing(image.GetSpacing(), card)
    if not np.allclose(target, image.GetSpacing(), rtol=1e-3):
        size = [max(1, int(round(n * s / t))) for n, s, t in zip(image.GetSize(), image.GetSpacing(), target)]
        default = float(np.min(volume.array)) if volume.array.size else 0.0
        # ITK resamples a multi-channel (vector) image only into its own pixel type: float channels first.
        vector = image.GetNumberOfComponentsPerPixel() > 1
        if vector:
            image = sitk.Cast(image, sitk.sitkVectorFloat32)
        image = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), target,
                              image.GetDirection(), default, sitk.sitkVectorFloat32 if vector else sitk.sitkFloat32)
    resampled = from_sitk(image)
    array = resampled.array.astype(np.float32, copy=False)
    array = array[np.newaxis] if array.ndim == 3 else np.moveaxis(array, -1, 0)
    array = normalize(array, card.normalization)
    # The geometry carries a zero-cost placeholder of the grid's shape, not a second copy of the voxels.
    geometry = resampled.with_array(np.broadcast_to(np.uint8(0), resampled.grid_shape))
    return ModelGrid(np.ascontiguousarray(array), geometry, _mapping_of(volume, card, geometry))


def _mapping_of(volume: Volume, card: ModelCard, geometry: Volume) -> AxisMapping | None:
    """The grid SimpleITK made, as index arithmetic (the torch path's plan); None where the two would differ
    (an oblique image whose axes ITK pairs otherwise): labels then go back through SimpleITK."""
    try:
        mapping, planned = plan(volume, card)
    except ValueError:
        return None
    return mapping if planned.same_grid(geometry, 1e-3) else None


IMAGENET_MEAN_STD = ((0.485, 0.229), (0.456, 0.224), (0.406, 0.225))


def normalize(array: np.ndarray | torch.Tensor, norm: Normalization) -> np.ndarray | torch.Tensor:
    """Channel-first float32 array or tensor, normalised per channel in place (a NumPy array through a tensor
    view of the same memory, so both paths share one set of formulas)."""
    values = torch.from_numpy(array) if isinstance(array, np.ndarray) else array
    if norm.kind == "ct":
        values.clamp_(norm.lower, norm.upper).sub_(norm.mean).div_(norm.std)
    elif norm.kind == "zscore":
        for channel in values:
            channel.sub_(channel.mean()).div_(max(float(channel.std(correction=0)), 1e-6))
    elif norm.kind == "imagenet":
        for channel, (mean, std) in zip(values, IMAGENET_MEAN_STD):
            channel.div_(255.0).sub_(mean).div_(std)
    elif norm.kind == "percentile":
        for channel in values:  # the percentiles of a 1/64 sample, on the host as NumPy computes them
            sample = channel[::4, ::4, ::4].cpu().numpy()
            low, high = (float(v) for v in np.percentile(sample, [norm.lower, norm.upper]))
            channel.clamp_(low, high).sub_(low).div_(max(high - low, 1e-6))
    return array


def labels_on_input_grid(labels: np.ndarray, grid: ModelGrid, volume: Volume) -> np.ndarray:
    """The model grid's labels on the input's grid, by the path that made the grid. Every input voxel takes its
    nearest model voxel: the model grid keeps the input's first voxel centre and rounds its voxel count, so it can
    end up to a model voxel short of the input's far edge, and those last input slices must not come back empty."""
    if grid.mapping is not None:
        device = grid.array.device if isinstance(grid.array, torch.Tensor) else None
        return labels_to_input_grid(labels, grid.mapping, device)
    return resample_labels(labels, grid.geometry, volume, extrapolate=True)


def resample_labels(labels: np.ndarray, source: Volume, target: Volume, extrapolate: bool = False) -> np.ndarray:
    """Nearest-neighbour labels from the ``source`` grid onto the ``target`` grid (orientation and spacing).
    Outside the source grid: 0, or with ``extrapolate`` the nearest source voxel's label."""
    import SimpleITK as sitk

    source = source.with_array(labels)
    if source.same_grid(target):
        return labels
    label_image = to_sitk(source)
    k, j, i = target.grid_shape
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([i, j, k])
    resampler.SetOutputOrigin(target.origin)
    resampler.SetOutputSpacing(target.spacing)
    resampler.SetOutputDirection(tuple(target.direction.ravel()))
    resampler.SetInterpolator(sitk.sitkNearestNeighbor)
    resampler.SetDefaultPixelValue(0)
    resampler.SetOutputPixelType(label_image.GetPixelID())
    resampler.SetUseNearestNeighborExtrapolator(extrapolate)
    return sitk.GetArrayFromImage(resampler.Execute(label_image))
