"""Reading images (NIfTI, NRRD, MHA, DICOM series folders, 2D pictures) and writing label maps."""

from __future__ import annotations

import math
import os
import re
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from MedSegEfficientLib.errors import InputImageError
from MedSegEfficientLib.files import StagedOutputs, write_atomically
from MedSegEfficientLib.io.dicom_series import check_slice_spacing, choose_series, read_series
from MedSegEfficientLib.io.nifti_check import check_nifti, is_nifti, unambiguous_nifti_path
from MedSegEfficientLib.volume import Volume, from_sitk, to_sitk


@dataclass(frozen=True)
class ImageInfo:
    """What an image's header says, read before any voxel: enough to bound memory and plan a run."""

    grid_shape: tuple[int, int, int]  # (k, j, i): slices, rows, columns
    spacing: tuple[float, float, float]  # (x, y, z) mm
    channels: int
    bytes_per_voxel: int

    @property
    def voxel_bytes(self) -> int:
        return math.prod(self.grid_shape) * self.channels * self.bytes_per_voxel


def read_image_info(path: str | os.PathLike, series: str | None = None) -> ImageInfo:
    """The header of an image file or of a DICOM folder's series; raises InputImageError for what cannot be read."""
    import SimpleITK as sitk

    path = _existing(path)
    reader = sitk.ImageFileReader()
    if path.is_dir():
        chosen, _ = choose_series(path, series)
        slices, slice_gap = len(chosen.files), check_slice_spacing(chosen)
    else:
        if is_nifti(path):
            check_nifti(path)
        slices = slice_gap = None
    try:
        with unambiguous_nifti_path(path) if path.is_file() else nullcontext(chosen.files[0]) as readable:
            reader.SetFileName(str(readable))
            reader.ReadImageInformation()
    except RuntimeError as error:
        raise _unreadable(path, error) from None
    pixel = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    if "complex" in pixel:
        raise InputImageError(f"{path.name} has complex voxels ({pixel}); a real-valued image is needed")
    size = list(reader.GetSize()) + [1] * (3 - reader.GetDimension())
    if reader.GetDimension() == 4 and size[3] == 1:
        size = size[:3]
    if len(size) != 3:
        raise InputImageError(f"{path.name} is {reader.GetDimension()}D (size {tuple(size)}); "
                              "a 3D volume or a 2D image is needed")
    if slices is not None:
        size[2] = slices
    spacing = list(reader.GetSpacing())[:3] + [1.0] * (3 - min(3, reader.GetDimension()))
    if slice_gap:
        spacing[2] = slice_gap  # one file's header knows its thickness, not the series' spacing
    item = np.dtype(sitk.GetArrayViewFromImage(sitk.Image([1] * reader.GetDimension(), reader.GetPixelID(),
                                                          reader.GetNumberOfComponents())).dtype).itemsize
    return ImageInfo((size[2], size[1], size[0]), tuple(spacing), reader.GetNumberOfComponents(), item)


def read_image(path: str | os.PathLike, series: str | None = None, notices: list[str] | None = None,
               checked: bool = False) -> Volume:
    """One clear error for anything that is not a readable, complete 3D (or 2D) image. A DICOM folder with several
    series gives the largest CT or MR one (or ``series``), and ``notices`` says which. ``checked``: the file was
    read by ``read_image_info`` just before, which already ran the NIfTI and slice-spacing checks."""
    import SimpleITK as sitk

    path = _existing(path)
    try:
        if path.is_dir():
            image = read_series(path, series, notices, check_spacing=not checked)
        else:
            if is_nifti(path) and not checked:
                check_nifti(path)  # ITK would read a truncated file's end, and NaN voxels, as zeros
            with unambiguous_nifti_path(path) as readable:
                image = sitk.ReadImage(str(readable))
    except InputImageError:
        raise
    except Exception as error:
        raise _unreadable(path, error) from None
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() not in (2, 3):
        raise InputImageError(f"{path.name} is {image.GetDimension()}D (size {image.GetSize()}); "
                              "a 3D volume or a 2D image is needed")
    return from_sitk(image)


def _existing(path: str | os.PathLike) -> Path:
    """A regular file or a folder: a FIFO, a device or a socket would hang the reader or never end."""
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise InputImageError(f"{path} is a link to nothing (its target is gone, or it is a link loop)")
        raise InputImageError(f"no such file or folder: {path}")
    if not (path.is_file() or path.is_dir()):
        raise InputImageError(f"{path} is not a regular file or a folder (a pipe, device or socket)")
    return path


def _unreadable(path: Path, error: Exception) -> InputImageError:
    """ITK's message, cut to its telling line (a truncation's byte counts first) and without object addresses."""
    lines = [re.sub(r"(?i)(itk::|itk )?error: \w+\(0x[0-9a-f]+\): ", "", line).strip()
             for line in str(error).splitlines()]
    telling = [line for line in lines if "expected" in line or "not read completely" in line]
    telling += [line for line in lines if "ERROR" in line.upper() or "unable" in line.lower() or "cannot" in line]
    reason = telling[0] if telling else ""
    return InputImageError(f"cannot read {path.name} as an image{': ' + reason if reason else ''}")


def write_label_image(labels: np.ndarray, reference: Volume, path: str | os.PathLike,
                      outputs: StagedOutputs | None = None) -> Path:
    """A plain label map (NIfTI, NRRD, MHA) on the reference grid."""
    import SimpleITK as sitk

    path = Path(path)
    image = to_sitk(reference.with_array(np.ascontiguousarray(labels)))
    return write_atomically(path, lambda temporary: sitk.WriteImage(image, str(temporary), useCompression=True),
                            outputs)

