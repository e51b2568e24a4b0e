"""DICOM series folders: which series a folder holds, which one to segment (and saying so), and a check that its
slices are evenly spaced, since a missing slice would otherwise stretch the spacing of the whole volume."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from MedSegEfficientLib.errors import InputImageError

VOLUME_MODALITIES = ("CT", "MR")
SPACING_TOLERANCE = 0.05  # a slice gap may differ from the median by this share (rounding in the headers)


@dataclass(frozen=True)
class DicomSeries:
    uid: str
    files: tuple[str, ...]
    modality: str
    description: str
    voxels: int  # files x rows x columns: a scout of many small slices is not the largest series
    localizer: bool  # ImageType says LOCALIZER (a scout)

    def name(self) -> str:
        return self.uid or "(no series UID)"

    def line(self, number: int) -> str:
        """One line of ``--list-series``: its number (what ``--series`` takes where there is no UID), UID, kind."""
        kind = "scout" if self.localizer else self.modality or "?"
        return f"{number:>2}  {self.name()}  {kind:<5} {len(self.files):>5} files  {self.description}"


def list_series(folder: Path) -> list[DicomSeries]:
    """Every series in the folder, largest first (by voxels, scouts last)."""
    import SimpleITK as sitk

    found = []
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or ():
        files = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
        modality, description, rows, columns, image_type = _tags(
            files[0], ("0008|0060", "0008|103e", "0028|0010", "0028|0011", "0008|0008"))
        voxels = len(files) * _number(rows) * _number(columns)
        found.append(DicomSeries(uid, files, modality, description, voxels, "LOCALIZER" in image_type.upper()))
    return sorted(found, key=lambda series: (series.localizer, -series.voxels))


def choose_series(folder: Path, uid: str | None = None) -> tuple[DicomSeries, str | None]:
    """The series asked for, or the largest CT or MR series; with a notice naming it when there was a choice."""
    series = list_series(folder)
    if not series:
        raise InputImageError(f"{folder} holds no DICOM series")
    if uid is not None:
        match = next((s for s in series if s.uid == uid), None)
        if match is None and uid.isdigit() and 1 <= int(uid) <= len(series):  # the number --list-series printed
            match = series[int(uid) - 1]
        if match is None:
            raise InputImageError(f"{folder} has no series {uid} (medseg segment {folder} --list-series lists them)")
        return match, None
    volumes = [s for s in series if s.modality in VOLUME_MODALITIES and not s.localizer] or series
    chosen = volumes[0]
    if len(series) == 1:
        return chosen, None
    return chosen, (f"{folder.name} holds {len(series)} series; segmenting the largest {chosen.modality or ''} one, "
                    f"{chosen.name()} ({len(chosen.files)} files, '{chosen.description}'); --series UID or NUMBER picks "
                    "another (--list-series lists them)")


def check_slice_spacing(series: DicomSeries) -> float | None:
    """The series' slice spacing in mm (None where the headers do not say); refuses a series whose slices are not
    evenly spaced (a missing slice, or slices of two acquisitions)."""
    if len(series.files) < 2:
        return None
    positions, normals = [], None
    for name in series.files:
        position, orientation = _tags(name, ("0020|0032", "0020|0037"))
        if not position or not orientation:
            return None  # no geometry in the headers: nothing to check against
        if normals is None:
            row, column = np.array(orientation.split("\\"), float).reshape(2, 3)
            normals = np.cross(row, column)
        positions.append(float(np.dot(np.array(position.split("\\"), float), normals)))
    gaps = np.diff(np.sort(positions))
    median = float(np.median(gaps))
    if median <= 0:
        raise InputImageError(f"series {series.uid}: several slices share one position; it is not one volume")
    uneven = np.flatnonzero(np.abs(gaps - median) > SPACING_TOLERANCE * median)
    if uneven.size:
        first = int(uneven[0])
        raise InputImageError(f"series {series.uid}: slices are not evenly spaced (a {gaps[first]:.2f} mm gap after "
                              f"slice {first + 1}, {median:.2f} mm elsewhere): a slice is missing? Segmenting it "
                              f"would stretch the volume")
    return median


def read_series(folder: Path, uid: str | None = None, notices: list[str] | None = None,
                check_spacing: bool = True):
    import SimpleITK as sitk

    series, notice = choose_series(folder, uid)
    if notice and notices is not None:
        notices.append(notice)
    if check_spacing:
        check_slice_spacing(series)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(series.files))
    return reader.Execute()


def _number(text: str) -> int:
    try:
        return max(1, int(float(text)))
    except ValueError:
        return 1


def _tags(path: str, keys: tuple[str, ...]) -> tuple[str, ...]:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return tuple("" for _ in keys)
    return tuple(reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else "" for key in keys)


__all__ = ["DicomSeries", "check_slice_spacing", "choose_series", "list_series", "read_series"]
