"""Training data: the nnU-Net / Medical Segmentation Decathlon folder layout, or explicit image/label pairs.

Layout: ``dataset.json`` + ``imagesTr/`` + ``labelsTr/`` (nnU-Net v2 names ``case_0000.nii.gz`` for channel 0,
MSD names ``case.nii.gz``), optional ``imagesVal/`` + ``labelsVal/`` or a ``validation`` list in dataset.json.
dataset.json labels in either convention: ``{"background": 0, "liver": 1}`` or ``{"0": "background", "1": "liver"}``.
An optional ``medseg_labels`` list in dataset.json gives colours and terminology codes (model-card label form).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from MedSegEfficientLib.model.card import LabelInfo, Normalization
from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.io.images import read_image
from MedSegEfficientLib.inference.preprocessing import resample_labels
from MedSegEfficientLib.training.user_cases import unknown_label_values
from MedSegEfficientLib.volume import Volume

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
# A qualitative palette for labels that come without colours (Slicer's GenericAnatomyColors feel).
PALETTE = [(221, 130, 101), (157, 108, 162), (185, 102, 83), (185, 102, 99), (216, 132, 105), (249, 180, 111),
           (224, 97, 76), (0, 151, 206), (244, 214, 49), (241, 214, 145), (253, 232, 158), (128, 174, 128),
           (111, 184, 210), (183, 156, 220), (230, 220, 70), (145, 60, 66)]


@dataclass
class CasePaths:
    image: Path
    label: Path
    # The label names this map annotates, where it annotates only some ("labelled" in a dataset.json listing
    # entry); None: all. The others are unknown there, not background: training folds them into background in its
    # loss (training/partial_labels.py), distillation takes them from the teacher.
    labelled: list[str] | None = None


@dataclass
class TrainingCase:
    name: str
    image: Volume
    labels: Volume
    labelled: list[str] | None = None  # as CasePaths.labelled


@dataclass
class DatasetDescription:
    training: list[CasePaths]
    validation: list[CasePaths]
    labels: list[LabelInfo]
    modality: str


def describe_folder(folder: Path, need_training: bool = True) -> DatasetDescription:
    """``need_training=False``: a folder of validation cases only (medseg tune) is fine."""
    folder = Path(folder)
    meta_path = folder / "dataset.json"
    if not meta_path.is_file():
        raise MedSegError(f"{folder} has no dataset.json (nnU-Net / MSD layout expected)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MedSegError(f"{meta_path} is not valid JSON: {error}") from None
    if not isinstance(meta, dict):
        raise MedSegError(f"{meta_path} must hold a JSON object")
    labels = parse_labels(meta)
    training = _pairs_from_listing(folder, meta.get("training")) or _pairs_from_folders(folder, "Tr")
    validation = _pairs_from_listing(folder, meta.get("validation")) or _pairs_from_folders(folder, "Val")
    if not training and need_training:
        raise MedSegError(f"{folder} has no training cases (imagesTr/labelsTr)")
    return DatasetDescription(training, validation, labels, dataset_modality(meta))


def describe_pairs(pairs: list[tuple[str, str]], label_names: dict[int, str] | None = None,
                   modality: str = "CT") -> DatasetDescription:
    cases = [CasePaths(Path(image), Path(label)) for image, label in pairs]
    names = label_names or {}
    if not names:  # labels named after their values, found in the first label map
        values = np.unique(label_array(read_image(cases[0].label).array, cases[0].label))
        names = {int(v): f"label_{int(v)}" for v in values if v > 0}
    labels = [LabelInfo(value=v, name=n, color=PALETTE[(v - 1) % len(PALETTE)]) for v, n in sorted(names.items())]
    return DatasetDescription(cases, [], labels, modality)


def parse_labels(meta: dict[str, Any]) -> list[LabelInfo]:
    if isinstance(meta.get("medseg_labels"), list):
        return [LabelInfo(**{**entry, "color": tuple(entry.get("color", PALETTE[0]))}) for entry in meta["medseg_labels"]]
    raw = meta.get("labels")
    if not isinstance(raw, dict) or not raw:
        raise MedSegError("dataset.json has no 'labels' object")
    pairs = []
    for key, value in raw.items():
        if str(key).isdigit():  # MSD: {"1": "liver"}
            pairs.append((int(key), str(value)))
        elif isinstance(value, int):  # nnU-Net v2: {"liver": 1}
            pairs.append((value, str(key)))
        else:
            raise MedSegError(f"dataset.json label entry {key!r}: {value!r} is not understood")
    return [LabelInfo(value=v, name=n, color=PALETTE[(v - 1) % len(PALETTE)])
            for v, n in sorted(pairs) if v > 0]


def dataset_modality(meta: dict[str, Any]) -> str:
    channels = meta.get("channel_names") or meta.get("modality") or {"0": "CT"}
    first = str(next(iter(channels.values())))
    return "CT" if first.upper() == "CT" else first


def _pairs_from_listing(folder: Path, listing: Any) -> list[CasePaths]:
    if not isinstance(listing, list):
        return []
    return [CasePaths(folder / entry["image"], folder / entry["label"], entry.get("labelled")) for entry in listing]


def _pairs_from_folders(folder: Path, split: str) -> list[CasePaths]:
    images, labels = folder / f"images{split}", folder / f"labels{split}"
    if not labels.is_dir():
        return []
    cases = []
    for label in sorted(p for p in labels.iterdir() if p.name.endswith(IMAGE_SUFFIXES)):
        stem = image_stem(label.name)
        candidates = [images / f"{stem}_0000{_suffix(label.name)}", images / label.name]
        image = next((c for c in candidates if c.is_file()), None)
        if image is None:
            raise MedSegError(f"no image for label {label.name} in {images}")
        cases.append(CasePaths(image, label))
    if images.is_dir():  # an image without its label map would be dropped without a word
        paired = {image_stem(case.image.name) for case in cases} | {image_stem(case.label.name) for case in cases}
        unpaired = sorted(p.name for p in images.iterdir() if p.name.endswith(IMAGE_SUFFIXES)
                          and re.sub(r"_\d{4}$", "", image_stem(p.name)) not in paired
                          and image_stem(p.name) not in paired)
        if unpaired:
            raise MedSegError(f"{len(unpaired)} image(s) in {images} have no label map in {labels}: "
                              f"{', '.join(unpaired[:5])}{' ...' if len(unpaired) > 5 else ''} (add their labels, or "
                              "move them out)")
    return cases


def _suffix(name: str) -> str:
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), "")  # "" for a DICOM folder


def image_stem(name: str) -> str:
    return re.sub(re.escape(_suffix(name)) + "$", "", name)


MAX_LABEL_VALUES = 1000  # a label map with more distinct values is an image given in its place


def load_cases(paths: list[CasePaths]) -> list[TrainingCase]:
    cases = []
    for pair in paths:
        image, labels = read_image(pair.image), read_image(pair.label)
        labels = labels.with_array(label_array(labels.array, pair.label))
        if (min(labels.grid_shape) == 1) != (min(image.grid_shape) == 1):
            raise MedSegError(f"{pair.label.name} is {labels.grid_shape} and {pair.image.name} is "
                              f"{image.grid_shape}: a label map must cover its image (2D with 2D, 3D with 3D)")
        if not labels.same_grid(image, tolerance=1e-3):  # e.g. a mask stored with another axis order
            labels = image.with_array(resample_labels(labels.array, labels, image))
        cases.append(TrainingCase(image_stem(pair.image.name), image, labels, pair.labelled))
    return cases


def check_label_values(cases: list[TrainingCase], labels: list[LabelInfo]) -> None:
    """Every value of every label map is a label of the dataset or 0: a value that is not (a map numbered for
    another dataset) would train as background or crash mid-training."""
    for case in cases:
        strange = unknown_label_values(case.labels.array, labels)
        if strange:
            raise MedSegError(f"{case.name}'s label map has value(s) {', '.join(map(str, strange[:8]))} that the "
                              f"dataset's labels ({', '.join(f'{label.value} {label.name}' for label in labels[:12])}"
                              f"{' ...' if len(labels) > 12 else ''}) do not name")


def label_array(array: np.ndarray, path: Path) -> np.ndarray:
    """The label map as uint8/uint16; refuses what cannot be one (negative, fractional, or thousands of values:
    an image given in its place), before anything sized by the values is allocated."""
    if array.ndim == 4:
        raise MedSegError(f"{path.name} has {array.shape[-1]} channels; a label map has one")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
            raise MedSegError(f"{path.name} has fractional voxel values: it is not a label map")
    elif not np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        raise MedSegError(f"{path.name} has voxels of type {array.dtype}: it is not a label map")
    low, high = (array.min(), array.max()) if array.size else (0, 0)
    if low < 0 or high > 65535:
        raise MedSegError(f"{path.name} has values {low:g}..{high:g}: a label map has 0..65535: it is an image, not a label map")
    values = np.unique(array)
    if values.size > MAX_LABEL_VALUES:
        raise MedSegError(f"{path.name} has {values.size} different values: it is an image, not a label map")
    return array.astype(np.uint16 if high > 255 else np.uint8)


def median_spacing(cases: list[TrainingCase]) -> list[float]:
    return [float(s) for s in np.median([case.image.spacing for case in cases], axis=0)]


def normalization_from_data(cases: list[TrainingCase], modality: str) -> Normalization:
    """CT: clip to the 0.5/99.5 percentiles of foreground HU, then the foreground mean and std (as nnU-Net does).
    Other modalities: per-image z-score. A partly labelled case's foreground is only the structures it labels (a
    contrast-filled aorta, say), so the fully labelled cases alone set the statistics where there are any."""
    if modality.upper() != "CT":
        return Normalization(kind="zscore")
    fully = [case for case in cases if case.labelled is None] or cases
    samples = np.concatenate([case.image.array[case.labels.array > 0][::10].astype(np.float32) for case in fully])
    if samples.size == 0:
        return Normalization(kind="ct", lower=-1000.0, upper=1000.0, mean=0.0, std=500.0)
    lower, upper = np.percentile(samples, [0.5, 99.5])
    clipped = np.clip(samples, lower, upper)
    return Normalization(kind="ct", lower=float(lower), upper=float(upper), mean=float(clipped.mean()),
                         std=float(max(clipped.std(), 1e-3)))
