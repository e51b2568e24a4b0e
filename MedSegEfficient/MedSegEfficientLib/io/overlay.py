"""A PNG picture of a segmentation over its image: the axial slice with the most foreground."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from MedSegEfficientLib.model.card import LabelInfo
from MedSegEfficientLib.files import StagedOutputs, write_atomically
from MedSegEfficientLib.volume import Volume, to_sitk


def write_overlay_png(image: Volume, labels: np.ndarray, label_infos: list[LabelInfo], path: str | os.PathLike,
                      window: tuple[float, float] = (-160.0, 240.0), opacity: float = 0.45,
                      outputs: StagedOutputs | None = None) -> Path:
    import SimpleITK as sitk

    # Radiological display: orient to LPS so rows run anterior to posterior and the patient's right is on the left.
    gray = sitk.GetArrayFromImage(sitk.DICOMOrient(to_sitk(image if image.channels == 1 else
                                                           image.with_array(image.array[..., 0])), "LPS"))
    mask = sitk.GetArrayFromImage(sitk.DICOMOrient(to_sitk(image.with_array(labels)), "LPS"))
    index = int(np.argmax((mask > 0).reshape(mask.shape[0], -1).sum(axis=1)))
    low, high = window
    base = np.clip((gray[index].astype(np.float32) - low) / (high - low), 0, 1) * 255
    rgb = np.repeat(base[..., np.newaxis], 3, axis=-1)
    for label in label_infos:
        where = mask[index] == label.value
        rgb[where] = (1 - opacity) * rgb[where] + opacity * np.asarray(label.color, dtype=np.float32)
    scale = max(1, 512 // max(rgb.shape[:2]))  # small grids are enlarged so that the picture is readable
    rgb = rgb.repeat(scale, axis=0).repeat(scale, axis=1)
    picture = sitk.GetImageFromArray(rgb.astype(np.uint8), isVector=True)
    return write_atomically(path, lambda temporary: sitk.WriteImage(picture, str(temporary)), outputs)
