"""The user's own training cases: corrected segmentations kept beside the user models, one folder per model, in
the nnU-Net/MSD layout ``medseg train`` reads (``dataset.json``, ``imagesTr/<case>_0000.nii.gz``,
``labelsTr/<case>.nii.gz``). The labels are in the model's numbering, checked against its card; ``dataset.json``
lists the card's labels (with their codes) and each case's name, SHA-256 sums and when it was added. The files are
the user's; nothing leaves the machine.

A case is written whole or not at all: image and labels are staged and renamed together, then ``dataset.json``
is replaced atomically; an existing case is never overwritten.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.files import StagedOutputs, sha256_of, write_atomically
from MedSegEfficientLib.model.card import LabelInfo, ModelCard
from MedSegEfficientLib.model.library import user_models_folder
from MedSegEfficientLib.volume import Volume, to_sitk

MAX_CASES = 10_000


@dataclasses.dataclass(frozen=True)
class StoredCase:
    name: str
    image: Path
    labels: Path
    image_sha256: str
    labels_sha256: str


def cases_root() -> Path:
    """``$MEDSEG_CASES_DIR``, else ``cases`` beside the user model folder (``~/.medsegefficient/cases``)."""
    root = os.environ.get("MEDSEG_CASES_DIR")
    return Path(root) if root else user_models_folder().parent / "cases"


def cases_folder(model_path: Path, card: ModelCard) -> Path:
    """A model's case folder; a fine-tuned model keeps adding to the folder of the model it came from."""
    return cases_root() / _safe_name(str(card.training.get("user_cases") or Path(model_path).stem))


def labels_from_segment_names(names_and_masks: Iterable[tuple[str, np.ndarray]], card: ModelCard,
                              shape: tuple[int, ...]) -> np.ndarray:
    """One label map in the card's numbering from named binary masks (a segmentation's segments); a name the
    model does not know is refused by name, before anything is written."""
    pairs = list(names_and_masks)
    check_segment_names([name for name, _ in pairs], card)
    by_name = {label.name: label.value for label in card.labels}
    labels = np.zeros(shape, dtype=np.uint8 if max(by_name.values()) < 256 else np.uint16)
    for name, mask in pairs:
        labels[np.asarray(mask, dtype=bool)] = by_name[name]  # a later segment over an earlier one, as Slicer draws
    return labels


def check_segment_names(names: list[str], card: ModelCard) -> None:
    """Every name is a label of the model; the others are named in the refusal."""
    known = [label.name for label in card.labels]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise MedSegError(f"segment(s) {', '.join(repr(n) for n in unknown)} are not labels of model "
                          f"'{card.name}' ({', '.join(known)}): rename or remove them first")


def add_case(image: Volume, labels: np.ndarray, card: ModelCard, folder: Path, name: str | None = None,
             source: str = "") -> StoredCase:
    """Keep one corrected case in ``folder``; ``labels`` are on the image's grid, in the card's numbering."""
    labels = np.asarray(labels)
    if labels.shape != image.grid_shape:
        raise MedSegError(f"the labels {labels.shape} are not on the image's grid {image.grid_shape}")
    check_numbering(labels, card)
    if not (labels != 0).any():
        raise MedSegError("the labels are empty: a case needs at least one labelled voxel")
    folder.mkdir(parents=True, exist_ok=True)
    meta = _read_meta(folder, card)
    existing = {entry["name"] for entry in meta["cases"]}
    if len(existing) >= MAX_CASES:
        raise MedSegError(f"{folder} already holds {len(existing)} cases")
    case = _free_name(_safe_name(name or "case"), existing, folder)
    image_path = folder / "imagesTr" / f"{case}_0000.nii.gz"
    labels_path = folder / "labelsTr" / f"{case}.nii.gz"
    import SimpleITK as sitk

    dtype = np.uint8 if labels.max() < 256 else np.uint16
    with StagedOutputs() as outputs:
        outputs.stage(image_path, lambda path: sitk.WriteImage(to_sitk(image), str(path), useCompression=True))
        outputs.stage(labels_path, lambda path: sitk.WriteImage(to_sitk(image.with_array(labels.astype(dtype))),
                                                                str(path), useCompression=True))
    stored = StoredCase(case, image_path, labels_path, sha256_of(image_path), sha256_of(labels_path))
    meta["cases"].append({"name": case, "image_sha256": stored.image_sha256, "labels_sha256": stored.labels_sha256,
                          "added": datetime.now(timezone.utc).isoformat(timespec="seconds"), "source": source})
    meta["numTraining"] = len(meta["cases"])
    try:
        write_atomically(folder / "dataset.json", lambda path: path.write_text(json.dumps(meta, indent=1) + "\n"))
    except Exception:
        image_path.unlink(missing_ok=True)  # a case the listing does not name is not kept
        labels_path.unlink(missing_ok=True)
        raise
    return stored


def unknown_label_values(array: np.ndarray, labels: list[LabelInfo]) -> list[int]:
    """The values of a label map that are neither 0 nor one of ``labels``, in order (torch-free: Slicer's process
    checks corrections with it)."""
    return sorted(set(np.unique(array).tolist()) - ({0} | {label.value for label in labels}))


def check_numbering(labels: np.ndarray, card: ModelCard) -> None:
    strange = unknown_label_values(labels, card.labels)
    if strange:
        raise MedSegError(f"label value(s) {', '.join(map(str, strange[:8]))} are not labels of model '{card.name}' "
                          f"({', '.join(f'{label.value} {label.name}' for label in card.labels[:12])})")


def stored_cases(folder: Path, card: ModelCard | None = None) -> list[StoredCase]:
    """The cases ``dataset.json`` lists, each file present; with a card, its labels must be the folder's."""
    meta = _read_meta(folder, card, must_exist=True)
    cases = []
    for entry in meta["cases"]:
        name = entry["name"]
        image, labels = folder / "imagesTr" / f"{name}_0000.nii.gz", folder / "labelsTr" / f"{name}.nii.gz"
        if not image.is_file() or not labels.is_file():
            raise MedSegError(f"case {name} of {folder} is listed in dataset.json but its files are missing")
        cases.append(StoredCase(name, image, labels, entry.get("image_sha256", ""), entry.get("labels_sha256", "")))
    return cases


def _read_meta(folder: Path, card: ModelCard | None, must_exist: bool = False) -> dict[str, Any]:
    path = folder / "dataset.json"
    if not path.is_file():
        if must_exist:
            raise MedSegError(f"{folder} holds no cases (no dataset.json): add some with 'medseg cases add'")
        assert card is not None
        return {"name": folder.name, "description": f"corrected cases for model '{card.name}'",
                "channel_names": {str(i): card.modality for i in range(card.in_channels)},
                "labels": {"background": 0, **{label.name: label.value for label in card.labels}},
                "medseg_labels": [_label_entry(label) for label in card.labels], "file_ending": ".nii.gz",
                "numTraining": 0, "cases": []}
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MedSegError(f"cannot read {path}: {error}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("cases"), list):
        raise MedSegError(f"{path} is not a MedSegEfficient case list (no 'cases')")
    if card is not None:
        theirs = {str(k): v for k, v in meta.get("labels", {}).items() if k != "background"}
        ours = {label.name: label.value for label in card.labels}
        if theirs != ours:
            raise MedSegError(f"{folder}'s cases are numbered {theirs}, model '{card.name}' {ours}: they are "
                              "another model's cases")
    return meta


def _label_entry(label: LabelInfo) -> dict[str, Any]:
    entry = dataclasses.asdict(label)
    entry["color"] = list(label.color)
    return {key: value for key, value in entry.items() if value is not None}


def _safe_name(name: str) -> str:
    """Letters, digits, '-' and '_' only: a case or folder name never leaves its folder."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:80]
    return cleaned or "case"


def _free_name(stem: str, taken: set[str], folder: Path) -> str:
    for index in range(1, MAX_CASES + 1):
        name = f"{stem}_{index:03d}"
        if name not in taken and not (folder / "labelsTr" / f"{name}.nii.gz").exists() \
                and not (folder / "imagesTr" / f"{name}_0000.nii.gz").exists():
            return name
    raise MedSegError(f"no free case name for '{stem}' in {folder}")


__all__ = ["StoredCase", "add_case", "cases_folder", "cases_root", "check_numbering", "check_segment_names",
           "labels_from_segment_names", "stored_cases", "unknown_label_values"]
