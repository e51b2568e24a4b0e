"""Import a TotalSegmentator task whose classes are split over several nnU-Net models (its ``total`` task is
five: organs, vertebrae, cardiac, muscles, ribs) into one multi-part model file (model/multi_part.py), from the
weights folder TotalSegmentator keeps (``~/.totalsegmentator/nnunet/results`` or ``$TOTALSEG_WEIGHTS_PATH``):
``Dataset<id>_<name>/<Trainer>__<Plans>__3d_fullres/{plans.json, dataset.json, fold_0/checkpoint_final.pth}``.

Each part runs as TotalSegmentator runs it (``totalsegmentator/nnunet.py``): the image turned to RAS (nibabel's
``as_closest_canonical``), nnU-Net's pipeline without mirroring (TotalSegmentator passes ``tta=False``), tile step
0.5; the parts' labels merge by name in part order, a later part writing over an earlier one. TotalSegmentator
itself resamples the image to 1.5 mm before nnU-Net and its labels back by nearest neighbour; here nnU-Net's own
resampling does both (class scores back, then the argmax), so borders are smoother and a few border voxels differ.

The merged numbering is TotalSegmentator's: the parts' labels in part order, from 1 (``class_map['total']``).
Labels carry the SNOMED codes and colours of the TotalSegmentator Slicer extension's mapping
(``importers/data/totalsegmentator_snomed_mapping.csv``, Apache-2.0, lassoan/SlicerTotalSegmentator). Nothing is
downloaded: the weights are the user's, under TotalSegmentator's licence for each task.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from functools import lru_cache
from pathlib import Path

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.importers.nnunet_results import read_results_folder
from MedSegEfficientLib.importers.nnunet_v2 import nnunet_model
from MedSegEfficientLib.model.card import LabelInfo, ModelCard, NetworkInfo
from MedSegEfficientLib.model.multi_part import MAX_PARTS, MULTI_PART_NETWORK, merged_label_values
from MedSegEfficientLib.model.weights import save_model
from MedSegEfficientLib.networks.multi_part import MultiPartNetwork
from MedSegEfficientLib.training.datasets import PALETTE

# TotalSegmentator's multi-part tasks and their nnU-Net dataset ids, in merge order (map_tasks_config.py, default
# sub-mode). Its single-model tasks (e.g. ``total --fast``, 297) import with ``medseg import nnunet``.
TASKS = {
    "total": (291, 292, 293, 294, 295),
    "total_v3": (831, 832, 833, 834, 835),
    "total_mr": (850, 851),
    "headneck_muscles": (778, 779),
}
ORIENTATION = "RAS"  # nibabel's canonical orientation, in DICOMOrient's letters
TERMINOLOGY_FILE = Path(__file__).resolve().parent / "data" / "totalsegmentator_snomed_mapping.csv"


def import_totalsegmentator(weights: str | Path, output: str | Path, task: str = "total",
                            name: str | None = None) -> Path:
    weights = Path(weights)
    if not weights.is_dir():
        raise MedSegError(f"not a folder: {weights} (TotalSegmentator's weights: ~/.totalsegmentator/nnunet/results)")
    ids = task_dataset_ids(task)
    cards, networks, folders = [], [], []
    for dataset_id in ids:
        folder = trained_model_folder(dataset_folder(weights, dataset_id))
        part_card, network = nnunet_model(read_results_folder(folder), mirroring=False)
        cards.append(dataclasses.replace(part_card, orientation=ORIENTATION,
                                         labels=[coded(label) for label in part_card.labels]))
        networks.append(network)
        folders.append(f"{folder.parent.name}/{folder.name}")
    values = merged_label_values([[label.name for label in card.labels] for card in cards])
    card = ModelCard(
        name=name or f"TotalSegmentator {task} (imported)", network=NetworkInfo(MULTI_PART_NETWORK),
        spatial_dims=3, in_channels=cards[0].in_channels,
        labels=[coded(LabelInfo(value, label)) for label, value in values.items()], modality=cards[0].modality,
        description=f"TotalSegmentator's '{task}' task: {len(cards)} nnU-Net models run in turn, their labels "
                    "merged in TotalSegmentator's numbering.",
        orientation="none", parts=cards,
        training={"source": "TotalSegmentator weights folder", "task": task, "datasets": folders,
                  "licence": "the weights' own (TotalSegmentator's licence for the task)"})
    return save_model(output, card, MultiPartNetwork(networks))


def task_dataset_ids(task: str) -> tuple[int, ...]:
    """A task's parts: one of ``TASKS``, or dataset ids in merge order (``291,292``)."""
    if task in TASKS:
        return TASKS[task]
    if re.fullmatch(r"\d{1,4}(,\d{1,4})*", task.replace(" ", "")):
        ids = tuple(int(part) for part in task.replace(" ", "").split(","))
        if len(ids) <= MAX_PARTS and len(set(ids)) == len(ids):
            return ids
    raise MedSegError(f"unknown TotalSegmentator task '{task}': one of {', '.join(TASKS)}, or up to {MAX_PARTS} "
                      "different dataset ids in merge order, e.g. 291,292")


def dataset_folder(weights: Path, dataset_id: int) -> Path:
    found = sorted(path for path in weights.glob(f"Dataset{dataset_id:03d}_*") if path.is_dir())
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise MedSegError(f"{what} Dataset{dataset_id:03d}_* folder in {weights}: TotalSegmentator's weights for "
                          "that part are needed (TotalSegmentator downloads them with totalseg_download_weights)")
    return found[0]


def trained_model_folder(dataset: Path) -> Path:
    """The dataset's one 3d_fullres trained model (``<Trainer>__<Plans>__3d_fullres``)."""
    found = sorted(path for path in dataset.glob("*__*__3d_fullres") if path.is_dir())
    if len(found) != 1:
        listed = ", ".join(path.name for path in found) or "none"
        raise MedSegError(f"{dataset} must hold one <Trainer>__<Plans>__3d_fullres folder, not {listed}")
    return found[0]


def coded(label: LabelInfo) -> LabelInfo:
    """The label with the SNOMED codes and colour TotalSegmentator's Slicer extension gives its name, where listed."""
    entry = dict(_terminology().get(label.name, {}))  # a copy: the table is cached
    if not entry:
        return label
    colour = entry.pop("color", None) or PALETTE[(label.value - 1) % len(PALETTE)]
    return dataclasses.replace(label, color=colour, **entry)


@lru_cache(maxsize=1)
def _terminology() -> dict[str, dict]:
    with open(TERMINOLOGY_FILE, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    table = {}
    for row in rows:
        codes = {}
        for field, prefix in (("category", "Category"), ("type", "Type"), ("modifier", "TypeModifier")):
            parts = [row.get(f"{prefix}_{key}", "").strip() for key in ("CodingScheme", "CodeValue", "CodeMeaning")]
            if all(parts):
                codes[field] = parts
        colour = [row.get(f"Color_{c}", "").strip() for c in "RGB"]
        if all(value.isdigit() for value in colour):
            codes["color"] = tuple(int(value) for value in colour)
        if "category" in codes and "type" in codes:
            table[row["Name"].strip()] = codes
    return table


__all__ = ["ORIENTATION", "TASKS", "coded", "import_totalsegmentator", "task_dataset_ids"]
