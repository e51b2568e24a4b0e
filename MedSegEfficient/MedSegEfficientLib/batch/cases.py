"""The cases of a batch: inputs given as files, DICOM folders, folders of images, globs or a CSV of paths, each
with the output it gets in the output folder (its name without the image extension, plus the chosen one)."""

from __future__ import annotations

import csv
import glob
from dataclasses import dataclass
from pathlib import Path

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.files import resolved
from MedSegEfficientLib.io.outputs import SEGMENTATION_SUFFIX, VOLUME_SUFFIXES, suffix_of


@dataclass(frozen=True)
class Case:
    input: Path
    output: Path


def collect_cases(inputs: list[str], out_dir: Path, suffix: str = ".nii.gz",
                  earlier_outputs: set[str] | frozenset[str] = frozenset()) -> list[Case]:
    """Every case once, in a stable order; two inputs that would write one output are refused. Files a folder
    holds that an earlier run wrote (``earlier_outputs``, from the manifest) and Slicer segmentations are never
    taken as inputs; entries named like images that cannot be read (dangling links, link loops) are cases, so that
    they are reported as failed rather than skipped without a word."""
    paths: list[Path] = []
    skip = {str(resolved(Path(output))) for output in earlier_outputs} | {str(resolved(out_dir))}
    for given in inputs:
        paths += [path for path in _expand(given) if str(resolved(path)) not in skip]
    seen, cases = {}, []
    # A link to nothing keeps its own name (its target's would be a name the user never gave).
    for path in dict.fromkeys(resolved(path) if path.exists() else path.absolute() for path in paths):
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
        entries = sorted(path.iterdir())
        images = [p for p in entries if _is_image(p) and not p.name.startswith(".")]
        series = [p for p in entries if p.is_dir() and not p.name.startswith(".")]  # DICOM series folders
        if images or series:
            return images + series
        return [path]  # one DICOM series
    if path.is_file():
        return [path]
    matches = sorted(Path(match) for match in glob.glob(given))
    if not matches:
        raise MedSegError(f"no such file, folder or pattern: {given}")
    return matches


def _from_csv(path: Path) -> list[Path]:
    """The first column of each row (a header row named 'input' or 'image' is skipped); relative to the CSV."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
        if "\0" in text:
            raise ValueError("a NUL byte")
        rows = list(csv.reader(text.splitlines()))
    except (ValueError, csv.Error):
        raise MedSegError(f"{path} is not a text CSV of image paths (one path in the first column of each row)") \
            from None
    except OSError as error:
        raise MedSegError(f"cannot read {path}: {error.strerror or error}") from None
    if rows and rows[0] and rows[0][0].strip().lower() in ("input", "image", "path"):
        rows = rows[1:]
    return [(path.parent / row[0].strip()) for row in rows if row and row[0].strip()]


def _is_image(path: Path) -> bool:
    """An image by its name (a segmentation is an output, never an input), whatever the entry turns out to be."""
    return suffix_of(path, VOLUME_SUFFIXES) is not None and suffix_of(path, (SEGMENTATION_SUFFIX,)) is None



def _stem(path: Path) -> str:
    suffix = suffix_of(path, (SEGMENTATION_SUFFIX, *VOLUME_SUFFIXES))
    return path.name[: -len(suffix)] if suffix else path.name


__all__ = ["Case", "collect_cases"]
