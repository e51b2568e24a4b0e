"""The cases of a batch: inputs given as files, DICOM folders, folders of images, globs or a CSV of paths, each
with the output it gets in the output folder (its name without the image extension, plus the chosen one)."""

from __future__ import annotations

import csv
import glob
from dataclasses import dataclass
from pathlib import Path

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.io.outputs import SEGMENTATION_SUFFIX, VOLUME_SUFFIXES, suffix_of


@dataclass(frozen=True)
class Case:
    input: Path
    output: Path


def collect_cases(inputs: list[str], out_dir: Path, suffix: str = ".nii.gz") -> list[Case]:
    """Every case once, in a stable order; two inputs that would write one output are refused."""
    paths: list[Path] = []
    for given in inputs:
        paths += _expand(given)
    seen, cases = {}, []
    for path in dict.fromkeys(path.resolve() for path in paths):
        output = out_dir / (_stem(path) + suffix)
        if output in seen:
            raise MedSegError(f"{path} and {seen[output]} would both write {output.name}; rename one")
        seen[output] = path
        cases.append(Case(path, output))
    if not cases:
        raise MedSegError("no images found in " + ", ".join(inputs))
    return cases


def _expand(given: str) -> list[Path]:
    path = Path(given)
    if path.suffix.lower() == ".csv" and path.is_file():
        return _from_csv(path)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and _is_image(p))
        if images:
            return images
        if any(p.is_dir() for p in path.iterdir()):  # a folder of DICOM series folders
            return sorted(p for p in path.iterdir() if p.is_dir())
        return [path]  # one DICOM series
    if path.is_file():
        return [path]
    matches = sorted(Path(match) for match in glob.glob(given))
    if not matches:
        raise MedSegError(f"no such file, folder or pattern: {given}")
    return matches


def _from_csv(path: Path) -> list[Path]:
    """The first column of each row (a header row named 'input' or 'image' is skipped); relative to the CSV."""
    rows = list(csv.reader(path.read_text().splitlines()))
    if rows and rows[0] and rows[0][0].strip().lower() in ("input", "image", "path"):
        rows = rows[1:]
    return [(path.parent / row[0].strip()) for row in rows if row and row[0].strip()]


def _is_image(path: Path) -> bool:
    return suffix_of(path, VOLUME_SUFFIXES) is not None


def _stem(path: Path) -> str:
    suffix = suffix_of(path, (SEGMENTATION_SUFFIX, *VOLUME_SUFFIXES))
    return path.name[: -len(suffix)] if suffix else path.name


__all__ = ["Case", "collect_cases"]
