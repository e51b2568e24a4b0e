"""Reading images (NIfTI, NRRD, MHA, DICOM series folders, 2D pictures) and writing label maps."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from MedSegEfficientLib.errors import InputImageError
from MedSegEfficientLib.files import write_atomically
from MedSegEfficientLib.volume import Volume, from_sitk, to_sitk


def read_image(path: str | os.PathLike) -> Volume:
    """One clear error for anything that is not a readable 3D (or 2D) image."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise InputImageError(f"no such file or folder: {path}")
    try:
        image = _read_dicom_series(path) if path.is_dir() else sitk.ReadImage(str(path))
    except InputImageError:
        raise
    except Exception as error:
        detail = str(error).strip().splitlines()
        reason = next((line for line in detail if "ERROR" in line.upper() or "unable" in line.lower()), "")
        raise InputImageError(f"cannot read {path.name} as an image{': ' + reason.strip() if reason else ''}") from None
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() not in (2, 3):
        raise InputImageError(f"{path.name} is {image.GetDimension()}D (size {image.GetSize()}); "
                              "a 3D volume or a 2D image is needed")
    return from_sitk(image)


def _read_dicom_series(folder: Path):
    import SimpleITK as sitk

    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or ()
    if not series:
        raise InputImageError(f"{folder} holds no DICOM series")
    # Several series in one folder: take the one with the most slices, the usual CT/MR volume.
    files = max((sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series), key=len)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    return reader.Execute()


def write_label_image(labels: np.ndarray, reference: Volume, path: str | os.PathLike) -> Path:
    """A plain label map (NIfTI, NRRD, MHA) on the reference grid."""
    import SimpleITK as sitk

    path = Path(path)
    image = to_sitk(reference.with_array(np.ascontiguousarray(labels)))
    write_atomically(path, lambda temporary: sitk.WriteImage(image, str(temporary), useCompression=True))
    return path

