"""Which files can take a run's results, checked before the run: an output is never an input, its format can hold
the result, its folder can be written, and no two outputs of a run share a name."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from MedSegEfficientLib.errors import OutputError
from MedSegEfficientLib.files import resolved

SEGMENTATION_SUFFIX = ".seg.nrrd"
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")  # label maps of any number of slices
SLICE_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")  # pictures: one slice only
PICTURE_SUFFIXES = (".png",)
REPORT_SUFFIXES = (".json",)


def suffix_of(path: Path, known: tuple[str, ...]) -> str | None:
    name = path.name.lower()
    return next((suffix for suffix in sorted(known, key=len, reverse=True) if name.endswith(suffix)), None)


@dataclass(frozen=True)
class RunOutputs:
    """The files one ``medseg segment`` run writes: labels, and optionally a picture and a JSON report."""

    labels: Path
    overlay: Path | None = None
    report: Path | None = None

    def all(self) -> list[Path]:
        return [path for path in (self.labels, self.overlay, self.report) if path is not None]


def refuse_inputs_as_outputs(inputs: list[Path], outputs: list[Path]) -> None:
    """An input is never an output: not the same file (through links too), nor a file inside an input folder."""
    for source in inputs:
        source_resolved = resolved(source)
        for path in outputs:
            target = resolved(path)
            if target == source_resolved or (source_resolved.is_dir() and source_resolved in target.parents):
                raise OutputError(f"{path} is the input (or inside it); choose another output name")


def check_outputs(inputs: list[Path], outputs: RunOutputs) -> None:
    """Everything about the outputs that can be known before the image is read. Raises OutputError."""
    label_suffixes = (SEGMENTATION_SUFFIX, *VOLUME_SUFFIXES, *SLICE_SUFFIXES)
    _check_suffix(outputs.labels, label_suffixes, "-o")
    if outputs.overlay is not None:
        _check_suffix(outputs.overlay, PICTURE_SUFFIXES, "--overlay")
    if outputs.report is not None:
        _check_suffix(outputs.report, REPORT_SUFFIXES, "--json")
    paths = outputs.all()
    targets = [resolved(path) for path in paths]
    if len(set(targets)) != len(targets):
        raise OutputError("two outputs have the same name: " + ", ".join(str(path) for path in paths))
    refuse_inputs_as_outputs(inputs, paths)
    for path in paths:
        check_writable(path)


def check_result_fits(outputs: RunOutputs, slices: int) -> None:
    """A picture format holds one slice: a volume must go to a volume format."""
    if slices > 1 and suffix_of(outputs.labels, SLICE_SUFFIXES):
        raise OutputError(f"{outputs.labels.name}: a picture holds one slice, the result has {slices}; use "
                          f"{SEGMENTATION_SUFFIX} or {VOLUME_SUFFIXES[0]}")


def check_writable(path: Path) -> None:
    """The output's folder exists (or can be made) and takes a new file; the output is not a folder."""
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name such as {path / ('segmentation' + SEGMENTATION_SUFFIX)}")
    folder = path.parent
    existing = next((parent for parent in (folder, *folder.parents) if parent.exists()), None)
    if existing is None or not existing.is_dir():
        raise OutputError(f"cannot write {path}: {existing} is not a folder")
    if existing != folder:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write {path}: {existing} is not writable")
        return  # the missing folders are made when the outputs are written
    try:  # the one reliable test (permissions, read-only mounts, quotas): make a file there
        handle, name = tempfile.mkstemp(dir=folder, prefix=".medseg-write-check.")
    except OSError as error:
        raise OutputError(f"cannot write into {folder}: {error.strerror or error}") from None
    os.close(handle)
    os.unlink(name)


def _check_suffix(path: Path, known: tuple[str, ...], option: str) -> None:
    if suffix_of(path, known) is None:
        given = "".join(path.suffixes) or "no extension"
        raise OutputError(f"{option} {path.name}: {given} is not a format it can write (use {', '.join(known)})")


__all__ = ["RunOutputs", "check_outputs", "check_result_fits", "check_writable", "suffix_of"]
