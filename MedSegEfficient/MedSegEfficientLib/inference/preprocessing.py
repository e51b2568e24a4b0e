"""From the input grid to the model's grid and back: orientation, spacing, intensity normalisation.

Resampling uses SimpleITK (multi-threaded, geometry-aware). Labels return to the input grid by nearest
neighbour after the argmax, never as per-class probabilities (that is what makes other pipelines slow).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from MedSegEfficientLib.model.card import ModelCard, Normalization
from MedSegEfficientLib.errors import InputImageError
from MedSegEfficientLib.volume import Volume, from_sitk, to_sitk


@dataclass
class ModelGrid:
    """The input as the network sees it: channel-first float32 array plus its geometry."""

    array: np.ndarray  # (C, k, j, i)
    geometry: Volume  # geometry of the model grid (its array is a placeholder of the grid shape)


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


def to_model_grid(volume: Volume, card: ModelCard) -> ModelGrid:
    """Reorient to the card's axis order and resample to its spacing; then normalise."""
    import SimpleITK as sitk

    image = to_sitk(volume)
    if card.orientation != "none":
        image = sitk.DICOMOrient(image, card.orientation)
    target = _target_spacing(image.GetSpacing(), card)
    if not np.allclose(target, image.GetSpacing(), rtol=1e-3):
        size = [max(1, int(round(n * s / t))) for n, s, t in zip(image.GetSize(), image.GetSpacing(), target)]
        default = float(np.min(volume.array)) if volume.array.size else 0.0
        image = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), target,
                              image.GetDirection(), default, sitk.sitkFloat32)
    resampled = from_sitk(image)
    array = resampled.array.astype(np.float32, copy=False)
    array = array[np.newaxis] if array.ndim == 3 else np.moveaxis(array, -1, 0)
    array = normalize(array, card.normalization)
    # The geometry carries a zero-cost placeholder of the grid's shape, not a second copy of the voxels.
    placeholder = np.broadcast_to(np.uint8(0), resampled.grid_shape)
    return ModelGrid(np.ascontiguousarray(array), resampled.with_array(placeholder))


def _target_spacing(current: tuple[float, ...], card: ModelCard) -> tuple[float, float, float]:
    if card.spacing is None:
        return tuple(current)
    if card.spatial_dims == 2:  # in-plane only; the slice axis keeps its spacing
        in_plane = iter(card.spacing)
        return tuple(current[a] if a == card.slice_axis else float(next(in_plane)) for a in range(3))
    return tuple(float(s) for s in card.spacing)


IMAGENET_MEAN_STD = ((0.485, 0.229), (0.456, 0.224), (0.406, 0.225))


def normalize(array: np.ndarray, norm: Normalization) -> np.ndarray:
    """Channel-first float32 array, normalised per channel, in place where possible."""
    if norm.kind == "ct":
        np.clip(array, norm.lower, norm.upper, out=array)
        array -= norm.mean
        array /= norm.std
    elif norm.kind == "zscore":
        for channel in array:
            channel -= channel.mean()
            channel /= max(float(channel.std()), 1e-6)
    elif norm.kind == "imagenet":
        for channel, (mean, std) in zip(array, IMAGENET_MEAN_STD):
            channel /= 255.0
            channel -= mean
            channel /= std
    elif norm.kind == "percentile":
        for channel in array:
            low, high = np.percentile(channel[::4, ::4, ::4], [norm.lower, norm.upper])
            np.clip(channel, low, high, out=channel)
            channel -= low
            channel /= max(float(high - low), 1e-6)
    return array


def resample_labels(labels: np.ndarray, source: Volume, target: Volume) -> np.ndarray:
    """Nearest-neighbour labels from the ``source`` grid onto the ``target`` grid (orientation and spacing)."""
    import SimpleITK as sitk

    source = source.with_array(labels)
    if source.same_grid(target):
        return labels
    label_image = to_sitk(source)
    k, j, i = target.grid_shape
    result = sitk.Resample(label_image, [i, j, k], sitk.Transform(), sitk.sitkNearestNeighbor,
                           target.origin, target.spacing, tuple(target.direction.ravel()), 0,
                           label_image.GetPixelID())
    return sitk.GetArrayFromImage(result)
