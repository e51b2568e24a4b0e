"""Run deepbet 1.0.2 (MIT; Fisch et al. 2024, LinkNet3d brain extraction) as a distillation teacher.

A training tool, run by us on the trusted deepbet wheel from PyPI: it loads deepbet's TorchScript files, which
the product never does. Our own implementation of deepbet's published two-stage procedure: the head at 128^3
finds the brain's box, the box at 256^3 gives the brain probability. Output: a foreground probability map on
the image's own grid (the soft target) and the thresholded mask, largest piece and holes filled (deepbet's mask).

    python training/teachers/deepbet_teacher.py MODELS_FOLDER IMAGE PROBABILITY_OUT MASK_OUT

MODELS_FOLDER holds deepbet's bbox_model.pt and model.pt (the wheel's data/models/).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

SMALL, FULL = (128, 128, 128), (256, 256, 256)
BOX_MARGIN = 0.1  # of the box's size, on each side
CONTRAST = (0.449, 0.226)  # deepbet maps the standardised image to this mean and spread


class DeepbetTeacher:
    def __init__(self, models: Path, device: str = "cpu") -> None:
        models = Path(models)
        self.device = torch.device(device)
        self.box_model = torch.jit.load(str(models / "bbox_model.pt"), map_location=self.device).eval()
        self.brain_model = torch.jit.load(str(models / "model.pt"), map_location=self.device).eval()

    def probability(self, image: sitk.Image) -> sitk.Image:
        """Brain probability (float32) on ``image``'s grid."""
        canonical = sitk.DICOMOrient(image, "RAS")  # deepbet works in RAS voxel order (nibabel's canonical)
        volume = torch.from_numpy(sitk.GetArrayFromImage(canonical).astype(np.float32)).permute(2, 1, 0)
        volume = torch.nan_to_num(volume).to(self.device)
        small = F.interpolate(volume[None, None], SMALL, mode="nearest-exact")[0, 0]
        low, high = small.quantile(0.005), small.quantile(0.995)
        with torch.inference_mode():
            coarse = self.box_model(_contrast(small, low, high)[None, None])[0, 1]
        box = _box(_largest_piece(coarse.cpu().numpy() > 0.5), volume.shape)
        crop = F.interpolate(volume[box][None, None], FULL, mode="nearest-exact")[0, 0]
        with torch.inference_mode():
            fine = self.brain_model(_contrast(crop, low, high)[None, None])[0, 1]
        result = torch.zeros_like(volume)
        result[box] = F.interpolate(fine[None, None], tuple(result[box].shape), mode="nearest-exact")[0, 0]
        probability = sitk.GetImageFromArray(result.permute(2, 1, 0).cpu().numpy().astype(np.float32))
        probability.CopyInformation(canonical)
        return sitk.Resample(probability, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, sitk.sitkFloat32)


def brain_mask(probability: sitk.Image) -> sitk.Image:
    """deepbet's mask: above one half, its largest piece, holes filled."""
    mask = sitk.BinaryThreshold(probability, 0.5, 1e9, 1, 0)
    pieces = sitk.RelabelComponent(sitk.ConnectedComponent(mask), sortByObjectSize=True)
    return sitk.Cast(sitk.BinaryFillhole(sitk.Equal(pieces, 1)), sitk.sitkUInt8)


def _contrast(values: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    scaled = ((values - low) / (high - low)).clamp(0, 1)
    return CONTRAST[1] * (scaled - scaled.mean()) / scaled.std() + CONTRAST[0]


def _largest_piece(mask: np.ndarray) -> np.ndarray:
    pieces = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8))))
    return sitk.GetArrayFromImage(pieces) == 1


def _box(mask_small: np.ndarray, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """The brain's box on the full grid, widened by the margin; a profile counts where 2 % of a plane is brain."""
    box = []
    for axis, size in enumerate(shape):
        others = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(mask_small.mean(others) > 0.02)
        if present.size == 0:
            raise RuntimeError("deepbet found no brain in this image")
        scale = size / mask_small.shape[axis]
        centre = scale * (present.min() + present.max() + 1) / 2
        extent = scale * (present.max() + 1 - present.min()) * (1 + 2 * BOX_MARGIN)
        centre, extent = round(float(centre)), round(float(extent))
        box.append(slice(max(0, int(centre - extent / 2)), min(size, int(centre + extent / 2))))
    return tuple(box)


def main(models: str, image_path: str, probability_path: str, mask_path: str) -> None:
    started = time.perf_counter()
    image = sitk.ReadImage(image_path)
    probability = DeepbetTeacher(Path(models)).probability(image)
    sitk.WriteImage(probability, probability_path, useCompression=True)
    sitk.WriteImage(brain_mask(probability), mask_path, useCompression=True)
    print(f"{Path(image_path).name}: deepbet {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main(*sys.argv[1:5])
